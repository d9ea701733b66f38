# Private to the dockyard.registry collection: not a public API, may change at any time.
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One HTTP exchange with the registry over ``ansible.module_utils.urls``, with retries.

Only 408, 429, 5xx and connection errors are retried; ``Retry-After`` (seconds or an
HTTP date) is honoured up to ``max_wait``.  Large blobs are streamed both ways: ``data`` may be
a seekable file object (rewound before every attempt; the caller sets ``Content-Length``), and
``sink`` receives a 200 answer's body in chunks instead of ``Response.body`` (emptied before
every attempt), so a retry never sends or keeps half a blob.  Every other status is handed back to the
caller as a ``Response``: deciding what a 401 or a 404 means is the upper layers' job.
"""
from __future__ import annotations

import email.utils
import http.client
import socket
import ssl
import threading
import time
import typing as t
import urllib.error

from ansible.module_utils.urls import Request, make_context

from .errors import RegistryConnectionError, RegistryTLSError

RETRY_STATUSES = frozenset((408, 429))
CHUNK = 1024 * 1024
Body = t.Union[bytes, t.BinaryIO, None]
USER_AGENT = "dockyard.registry"


class Response:
    """Status, headers (case-insensitive) and body of one answer."""

    def __init__(self, status: int, headers: t.Mapping[str, str], body: bytes, url: str) -> None:
        self.status = status
        self.headers = {key.lower(): value for key, value in headers.items()}
        self.body = body
        self.url = url

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def __repr__(self) -> str:
        return "Response(%d, %s)" % (self.status, self.url)


def retry_after(value: str, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or None when it says nothing usable."""
    value = (value or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Transport:
    """Send requests; count them; retry what is worth retrying.

    ``opener`` is the seam tests script: a callable with ``Request.open``'s signature
    (``method, url, data=..., headers=...``) returning a response object or raising
    like ``urllib`` does.
    """

    def __init__(self, validate_certs: bool = True, ca_path: str | None = None, timeout: float = 30,
                 retries: int = 3, backoff: float = 0.5, max_wait: float = 30,
                 sleep: t.Callable[[float], None] = time.sleep,
                 opener: t.Callable[..., t.Any] | None = None) -> None:
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.sleep = sleep
        self.requests = 0
        self._lock = threading.Lock()
        if opener is None:
            context = make_context(cafile=ca_path, validate_certs=validate_certs)
            request = Request(validate_certs=validate_certs, ca_path=ca_path, timeout=timeout,
                              http_agent=USER_AGENT, follow_redirects="none", use_netrc=False,
                              context=context)
            opener = request.open
        self._open = opener

    def request(self, method: str, url: str, headers: dict[str, str] | None = None,
                data: Body = None, sink: t.BinaryIO | None = None) -> Response:
        attempt = 0
        while True:
            with self._lock:
                self.requests += 1
            if data is not None and not isinstance(data, bytes):
                data.seek(0)
            if sink is not None:
                sink.seek(0)
                sink.truncate()
            try:
                response = self._once(method, url, headers or {}, data, sink)
            except RegistryTLSError:
                raise
            except RegistryConnectionError:
                if attempt >= self.retries:
                    raise
                wait = None
            else:
                if not (response.status in RETRY_STATUSES or response.status >= 500) or attempt >= self.retries:
                    return response
                wait = retry_after(response.header("Retry-After"))
            if wait is None:
                wait = self.backoff * (2 ** attempt)
            self.sleep(min(wait, self.max_wait))
            attempt += 1

    def _once(self, method: str, url: str, headers: dict[str, str], data: Body,
              sink: t.BinaryIO | None) -> Response:
        try:
            raw = self._open(method, url, data=data, headers=dict(headers))
            try:
                status = raw.status if hasattr(raw, "status") else raw.getcode()
                if sink is not None and status == 200 and method != "HEAD":
                    for chunk in iter(lambda: raw.read(CHUNK), b""):
                        sink.write(chunk)
                    body = b""
                else:
                    body = b"" if method == "HEAD" else raw.read()
                return Response(status, dict(raw.headers.items()), body, url)
            finally:
                raw.close()
        except urllib.error.HTTPError as error:
            try:
                body = error.read() if method != "HEAD" else b""
            except (OSError, http.client.HTTPException, AttributeError):
                body = b""
            headers_in = dict(error.headers.items()) if error.headers is not None else {}
            return Response(error.code, headers_in, body or b"", url)
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, ssl.SSLError):
                raise RegistryTLSError("TLS failure talking to %s: %s" % (url, reason)) from None
            raise RegistryConnectionError("cannot reach %s: %s" % (url, reason)) from None
        except ssl.SSLError as error:
            raise RegistryTLSError("TLS failure talking to %s: %s" % (url, error)) from None
        except (socket.timeout, TimeoutError) as error:
            raise RegistryConnectionError("timed out talking to %s: %s" % (url, error)) from None
        except (ConnectionError, http.client.HTTPException, OSError) as error:
            raise RegistryConnectionError("connection to %s failed: %s" % (url, error)) from None
