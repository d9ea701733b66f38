"""A small Registry API v2 client for the gateway tests: every exchange is kept for comparison.

``Side`` talks to one endpoint (the registry itself, or the gateway in front of a twin
registry) and answers challenges as docker does: Basic with the password (sent up front
when ``basic`` is set), Bearer with a token asked at the challenge's realm for its scope,
kept per scope, the request then sent once more.  ``normalise`` turns an exchange into
what must be equal on both sides (absolute URLs, upload UUIDs and ``_state`` made neutral).
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import ssl
import typing as t
import urllib.parse

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
STATE_RE = re.compile(r"_state=[^&\s\"]+")
REALM_RE = re.compile(r'realm="([^"]*)"')
SCOPE_RE = re.compile(r'scope="([^"]*)"')
# The headers a client acts on; others (Date, Server, security headers) may differ.
COMPARED = ("location", "range", "content-range", "docker-content-digest", "docker-upload-uuid", "link",
            "www-authenticate", "content-type", "content-length", "docker-distribution-api-version")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Response(t.NamedTuple):
    method: str
    path: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> t.Any:
        return json.loads(self.body)


def challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _space, rest = header.partition(" ")
    return scheme, dict(re.findall(r'(\w+)="([^"]*)"', rest))


class Side:
    """One endpoint. ``origin`` is scheme://host:port; ``context`` the TLS context, if any."""

    def __init__(self, origin: str, context: ssl.SSLContext | None = None,
                 basic: tuple[str, str] | None = None, token_login: tuple[str, str] | None = None) -> None:
        self.origin = origin
        self.context = context
        self.basic = basic
        self.token_login = token_login
        self.tokens: dict[str, str] = {}
        self.exchanges: list[Response] = []
        self.token_requests = 0

    def _connection(self, origin: str) -> http.client.HTTPConnection:
        parts = urllib.parse.urlsplit(origin)
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.hostname, parts.port, context=self.context, timeout=30)
        return http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def raw(self, method: str, target: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> Response:
        """One request as given (``target``: a path, or an absolute URL of this side)."""
        origin, path = self.origin, target
        if "://" in target:
            parts = urllib.parse.urlsplit(target)
            origin = "%s://%s" % (parts.scheme, parts.netloc)
            path = parts.path + ("?" + parts.query if parts.query else "")
        connection = self._connection(origin)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            answer = connection.getresponse()
            return Response(method, path, answer.status, answer.getheaders(), answer.read())
        finally:
            connection.close()

    def request(self, method: str, target: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                authenticate: bool = True, keep: bool = True) -> Response:
        """Like a client: answer a challenge once. Every response (the 401 too) is kept."""
        headers = dict(headers or {})
        if authenticate and self.basic:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(self.basic).encode()).decode()
        response = self.raw(method, target, body, headers)
        if keep:
            self.exchanges.append(response)
        if response.status == 401 and authenticate and self.token_login:
            scheme, params = challenge(response.header("www-authenticate") or "")
            if scheme == "Bearer":
                headers["Authorization"] = "Bearer " + self.token(params)
                response = self.raw(method, target, body, headers)
                if keep:
                    self.exchanges.append(response)
        return response

    def token(self, params: dict[str, str]) -> str:
        key = params.get("scope", "")
        if key not in self.tokens:
            query = urllib.parse.urlencode({k: v for k, v in params.items() if k in ("service", "scope")})
            login = base64.b64encode(":".join(self.token_login).encode()).decode()
            self.token_requests += 1
            answer = self.raw("GET", params["realm"] + "?" + query, headers={"Authorization": "Basic " + login})
            assert answer.status == 200, answer
            self.tokens[key] = answer.json()["token"]
        return self.tokens[key]

    # --- the operations a client makes ---------------------------------------------------

    def push_blob(self, repository: str, data: bytes) -> str:
        """Monolithic upload (POST, then PUT with the digest); the digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        started = self.request("POST", "/v2/%s/blobs/uploads/" % repository)
        assert started.status == 202, started
        location = started.header("location") or ""
        done = self.request("PUT", location + ("&" if "?" in location else "?") + "digest=" + digest, data,
                            {"Content-Type": "application/octet-stream"})
        assert done.status == 201, done
        return digest

    def push_image(self, repository: str, tag: str, layer: bytes) -> tuple[str, str, bytes]:
        """A config and one layer, then the manifest under ``tag``: (manifest digest, layer digest, manifest)."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                             "tag": tag}).encode()
        config_digest = self.push_blob(repository, config)
        layer_digest = self.push_blob(repository, layer)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest,
                        "size": len(layer)}]}, sort_keys=True).encode()
        put = self.request("PUT", "/v2/%s/manifests/%s" % (repository, tag), manifest, {"Content-Type": OCI_MANIFEST})
        assert put.status == 201, put
        return "sha256:" + hashlib.sha256(manifest).hexdigest(), layer_digest, manifest


def sorted_scopes(scopes: str) -> str:
    """The registry lists scopes, and the actions of each, in random order (Go maps)."""
    def one(scope: str) -> str:
        kind, _colon, rest = scope.partition(":")
        name, _colon, actions = rest.rpartition(":")
        return "%s:%s:%s" % (kind, name, ",".join(sorted(actions.split(","))))
    return " ".join(sorted(one(scope) for scope in scopes.split()))


def normalise(response: Response, origin: str) -> dict[str, t.Any]:
    """What a client sees that must not depend on the endpoint: status, compared headers, body."""
    def neutral(text: str) -> str:
        text = text.replace(origin, "<origin>")
        return STATE_RE.sub("_state=<state>", UUID_RE.sub("<uuid>", text))

    headers: dict[str, list[str]] = {}
    for key, value in response.headers:
        if key.lower() in COMPARED:
            if key.lower() == "www-authenticate":
                value = REALM_RE.sub('realm="<realm>"', value)
                value = SCOPE_RE.sub(lambda match: 'scope="%s"' % sorted_scopes(match.group(1)), value)
            headers.setdefault(key.lower(), []).append(neutral(value))
    body: t.Any = response.body
    try:
        body = json.loads(neutral(response.body.decode()))
    except (UnicodeDecodeError, ValueError):
        pass
    if isinstance(body, dict) and isinstance(body.get("tags"), list):
        body["tags"] = sorted(body["tags"])  # Distribution 2.8 lists tags in storage order, not sorted
    if isinstance(body, dict):
        for error in body.get("errors") or []:
            if isinstance(error.get("detail"), list):  # the access list of a 401, in random order
                error["detail"] = sorted(error["detail"], key=lambda item: json.dumps(item, sort_keys=True))
    return {"request": "%s %s" % (response.method, neutral(response.path)), "status": response.status,
            "headers": headers, "body": body}
