# Private to the dockyard.registry collection: not a public API, may change at any time.
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Answer the registry's ``WWW-Authenticate`` challenges: Basic, and the Bearer token flow.

Bearer: the challenge names a ``realm`` (the token endpoint), a ``service`` and the
``scope`` the request needs; the token fetched for it is cached per scope until it
expires, and sent up front to later requests that need the same scope, so only the
first request of each kind pays for the 401.
"""
from __future__ import annotations

import base64
import json
import re
import threading
import time
import typing as t
import urllib.parse

from .errors import RegistryAuthError, RegistryError, http_error
from .transport import Response, Transport

_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')
EXPIRY_MARGIN = 10.0


class Challenge:
    def __init__(self, scheme: str, params: dict[str, str]) -> None:
        self.scheme = scheme
        self.params = params

    @classmethod
    def parse(cls, header: str) -> Challenge | None:
        header = (header or "").strip()
        if not header:
            return None
        scheme, _sep, rest = header.partition(" ")
        params = {}
        for match in _PARAM.finditer(rest):
            value = match.group(2) if match.group(2) is not None else match.group(3)
            params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        return cls(scheme.lower(), params)


class Authenticator:
    """Holds the credentials and whatever the registry told us about how to use them."""

    def __init__(self, transport: Transport, username: str | None = None, password: str | None = None,
                 token: str | None = None, clock: t.Callable[[], float] = time.time) -> None:
        self.transport = transport
        self.username = username
        self.password = password
        self.static_token = token
        self.clock = clock
        self.basic = False
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _basic_header(self) -> str:
        raw = "%s:%s" % (self.username or "", self.password or "")
        return "Basic " + base64.b64encode(raw.encode("utf-8")).decode("ascii")

    def headers(self, scope: str) -> dict[str, str]:
        """Authorization for a request that will need ``scope``, if we already know it."""
        if self.static_token:
            return {"Authorization": "Bearer " + self.static_token}
        if self.basic:
            return {"Authorization": self._basic_header()}
        with self._lock:
            cached = self._tokens.get(scope)
        if cached and cached[1] > self.clock():
            return {"Authorization": "Bearer " + cached[0]}
        return {}

    def answer(self, response: Response, scope: str, sent: dict[str, str]) -> bool:
        """Learn from a 401; True when resending the request may now succeed."""
        if self.static_token:
            return False
        challenge = Challenge.parse(response.header("WWW-Authenticate"))
        if challenge is None:
            return False
        if challenge.scheme == "basic":
            if self.basic or self.username is None:
                return False
            self.basic = True
            return True
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            return False
        wanted = challenge.params.get("scope", "")
        with self._lock:
            cached = self._tokens.get(wanted)
            if cached and cached[1] > self.clock() and sent.get("Authorization") != "Bearer " + cached[0]:
                self._tokens[scope] = cached
                return True
            if sent.get("Authorization", "").startswith("Bearer ") and "error" in challenge.params:
                # The token we sent was refused outright (expired, revoked, wrong scope).
                self._tokens.pop(scope, None)
                self._tokens.pop(wanted, None)
            token, expires = self._fetch(challenge.params["realm"], challenge.params.get("service"), wanted)
            self._tokens[wanted] = (token, expires)
            self._tokens[scope] = (token, expires)
        return True

    def _fetch(self, realm: str, service: str | None, scope: str) -> tuple[str, float]:
        query: list[tuple[str, str]] = []
        if service:
            query.append(("service", service))
        for item in scope.split():
            query.append(("scope", item))
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query) if query else realm
        headers = {}
        if self.username is not None:
            headers["Authorization"] = self._basic_header()
        response = self.transport.request("GET", url, headers)
        path = urllib.parse.urlsplit(realm).path or "/"
        if response.status != 200:
            hint = "the token service refused the credentials" if response.status in (401, 403) else ""
            raise http_error("GET", path, response.status, response.body, hint)
        try:
            document = json.loads(response.body.decode("utf-8"))
            token = document.get("token") or document.get("access_token")
            lifetime = float(document.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            token, lifetime = None, 0.0
        if not token:
            raise RegistryError("GET %s returned HTTP 200 without a token" % path)
        return str(token), self.clock() + max(lifetime - EXPIRY_MARGIN, 1.0)


def unauthorized(method: str, path: str, response: Response, auth: Authenticator) -> RegistryAuthError:
    if auth.static_token:
        hint = "the registry refused the token"
    elif auth.username is None:
        hint = "the registry needs credentials: set username and password"
    elif response.status == 401 and (Challenge.parse(response.header("WWW-Authenticate")) or Challenge(
            "", {})).params.get("error") != "insufficient_scope":
        hint = "the registry refused the credentials of user %s" % auth.username
    else:
        hint = "user %s may not do this" % auth.username
    return t.cast(RegistryAuthError, http_error(method, path, response.status, response.body, hint))
