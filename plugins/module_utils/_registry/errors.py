# Private to the dockyard.registry collection: not a public API, may change at any time.
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception hierarchy of the registry client and the modules built on it."""
from __future__ import annotations

import json
import typing as t


class RegistryError(Exception):
    """Base of every error the collection's registry code raises on purpose."""


class InvalidInput(RegistryError):
    """A module argument is outside what the registry or the policy can accept."""


class RegistryConnectionError(RegistryError):
    """The registry could not be reached (refused, timed out, DNS, reset)."""


class RegistryTLSError(RegistryConnectionError):
    """The TLS handshake failed (unknown CA, wrong host name, protocol)."""


class RegistryDigestMismatch(RegistryError):
    """Bytes received do not hash to the digest asked for or announced.

    Raised for a manifest fetched by digest whose bytes hash to something else (whatever
    ``Docker-Content-Digest`` says) and for a ``Docker-Content-Digest`` the bytes do not match.
    """

    def __init__(self, repository: str, reference: str, expected: str, computed: str, source: str) -> None:
        self.repository = repository
        self.reference = reference
        self.expected = expected
        self.computed = computed
        super().__init__("manifest %s of %s: the bytes received hash to %s, not to the %s %s; refusing them"
                         % (reference, repository, computed, source, expected))


class RegistryHTTPError(RegistryError):
    """The registry answered with an HTTP error status.

    The message names the method, the URL path, the status and the registry's own
    error codes (``NAME_UNKNOWN``, ``UNSUPPORTED``, ...) when its body carried any.
    """

    def __init__(self, method: str, path: str, status: int, body: bytes = b"", hint: str = "") -> None:
        self.method = method
        self.path = path
        self.status = status
        self.codes, self.details = parse_error_body(body)
        message = "%s %s returned HTTP %d" % (method, path, status)
        if self.codes:
            message += " " + ", ".join(self.codes)
        if self.details:
            message += ": " + "; ".join(self.details)
        if hint:
            message += " (%s)" % hint
        super().__init__(message)


class RegistryAuthError(RegistryHTTPError):
    """401 or 403: missing, wrong or insufficient credentials."""


class RegistryNotFound(RegistryHTTPError):
    """404: unknown repository, tag, manifest or blob."""


class RegistryDeleteDisabled(RegistryHTTPError):
    """405 on DELETE: the registry runs without storage.delete.enabled."""


def parse_error_body(body: bytes) -> tuple[list[str], list[str]]:
    """Return the ``errors[].code`` and ``errors[].message`` of a registry error body.

    Bodies that are not the registry's JSON (an nginx HTML page) give no codes.
    """
    try:
        document = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError):
        return [], []
    errors: t.Any = document.get("errors") if isinstance(document, dict) else None
    codes: list[str] = []
    details: list[str] = []
    for entry in errors if isinstance(errors, list) else []:
        if isinstance(entry, dict):
            if entry.get("code"):
                codes.append(str(entry["code"]))
            if entry.get("message"):
                details.append(str(entry["message"]))
    return codes, details


def http_error(method: str, path: str, status: int, body: bytes = b"", hint: str = "") -> RegistryHTTPError:
    """Build the most specific ``RegistryHTTPError`` for a status."""
    if status in (401, 403):
        return RegistryAuthError(method, path, status, body, hint)
    if status == 404:
        return RegistryNotFound(method, path, status, body, hint)
    if status == 405 and method == "DELETE":
        return RegistryDeleteDisabled(
            method, path, status, body, hint or "deletes are disabled on the registry (storage.delete.enabled)")
    return RegistryHTTPError(method, path, status, body, hint)
