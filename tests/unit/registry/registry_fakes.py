"""A scripted HTTP conversation partner for the registry client and modules.

``FakeRegistry`` answers the Registry API v2 requests the client makes (enough of
Distribution 2.8's behaviour: ``Link`` pagination, ``"tags": null``, delete by digest
removes every tag on it, 405 when deletes are disabled) and records every request, so
tests assert on the conversation: which DELETEs were sent, how many requests a run took.
It is plugged in where ``ansible.module_utils.urls`` would be: the transport's opener.
"""
from __future__ import annotations

import email.message
import hashlib
import io
import json
import threading
import typing as t
import urllib.error
import urllib.parse

from ansible_collections.dockyard.registry.plugins.module_utils._registry.auth import Authenticator
from ansible_collections.dockyard.registry.plugins.module_utils._registry.client import RegistryClient
from ansible_collections.dockyard.registry.plugins.module_utils._registry.transport import Transport

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
BASE = "http://registry.test"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeResponse:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = email.message.Message()
        for key, value in headers.items():
            self.headers[key] = value
        self._body = body
        self._stream = io.BytesIO(body)

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def close(self) -> None:
        pass


class FakeRegistry:
    def __init__(self, delete_enabled: bool = True, page_size: int | None = None) -> None:
        self.blobs: dict[str, bytes] = {}
        self.blob_links: dict[str, set[str]] = {}  # repo -> digests linked into it
        self.manifests: dict[str, dict[str, tuple[bytes, str]]] = {}  # repo -> digest -> (body, type)
        self.tag_links: dict[str, dict[str, str]] = {}  # repo -> tag -> digest
        self.delete_enabled = delete_enabled
        self.page_size = page_size
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.before: t.Callable[[str, str, dict[str, str]], FakeResponse | None] | None = None

    # -- building content -------------------------------------------------------------
    def image(self, repository: str, tag: str | None, created: str | None, seed: str = "",
              arch: str = "amd64", media_type: str = OCI_MANIFEST) -> str:
        config = {"architecture": arch, "os": "linux", "seed": seed or tag or ""}
        if created is not None:
            config["created"] = created
        config_bytes = json.dumps(config).encode()
        layer = ("layer " + (seed or tag or "")).encode()
        self.blobs[digest_of(config_bytes)] = config_bytes
        self.blobs[digest_of(layer)] = layer
        self.blob_links.setdefault(repository, set()).update((digest_of(config_bytes), digest_of(layer)))
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": media_type,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": digest_of(config_bytes), "size": len(config_bytes)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": digest_of(layer), "size": len(layer)}],
        }).encode()
        return self.store(repository, tag, manifest, media_type)

    def index(self, repository: str, tag: str | None, created: str, seed: str) -> str:
        children = []
        for arch in ("amd64", "arm64"):
            child = self.image(repository, None, created, seed=seed + arch, arch=arch)
            body = self.manifests[repository][child][0]
            children.append({"mediaType": OCI_MANIFEST, "digest": child, "size": len(body),
                             "platform": {"os": "linux", "architecture": arch}})
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).encode()
        return self.store(repository, tag, body, OCI_INDEX)

    def store(self, repository: str, tag: str | None, body: bytes, media_type: str) -> str:
        digest = digest_of(body)
        self.manifests.setdefault(repository, {})[digest] = (body, media_type)
        self.tag_links.setdefault(repository, {})
        if tag is not None:
            self.tag_links[repository][tag] = digest
        return digest

    def tags(self, repository: str) -> list[str]:
        return sorted(self.tag_links.get(repository, {}))

    def forge(self, reference: str, body: bytes, digest_header: str | None,
              media_type: str = OCI_MANIFEST) -> None:
        """Answer GETs of manifest ``reference`` with ``body`` (and this Docker-Content-Digest, if any)."""
        def answer(method: str, url: str, _headers: dict[str, str]) -> FakeResponse | None:
            if method != "GET" or not urllib.parse.urlsplit(url).path.endswith("/manifests/" + reference):
                return None
            headers = {"Content-Type": media_type}
            if digest_header is not None:
                headers["Docker-Content-Digest"] = digest_header
            return FakeResponse(200, headers, body)

        self.before = answer

    def puts(self) -> list[str]:
        """URLs of every manifest PUT sent."""
        return [url for method, url, _headers in self.requests if method == "PUT" and "/manifests/" in url]

    # -- the conversation --------------------------------------------------------------
    def count(self, method: str, fragment: str = "") -> int:
        return sum(1 for m, url, _h in self.requests if m == method and fragment in url)

    def __call__(self, method: str, url: str, data: bytes | None = None,
                 headers: dict[str, str] | None = None, **_kwargs: t.Any) -> FakeResponse:
        headers = headers or {}
        if data is not None and not isinstance(data, bytes):
            data = data.read()  # a blob streamed from a file
        with self.lock:
            self.requests.append((method, url, dict(headers)))
        if self.before is not None:
            scripted = self.before(method, url, headers)
            if scripted is not None:
                return self._answer(url, scripted)
        return self._answer(url, self.route(method, url, data, headers))

    @staticmethod
    def _answer(url: str, response: FakeResponse) -> FakeResponse:
        if response.status >= 300:
            raise urllib.error.HTTPError(url, response.status, "status", response.headers,
                                         io.BytesIO(response._body))
        return response

    @staticmethod
    def error(status: int, code: str, message: str = "", headers: dict[str, str] | None = None) -> FakeResponse:
        body = json.dumps({"errors": [{"code": code, "message": message or code.lower()}]}).encode()
        return FakeResponse(status, dict(headers or {}, **{"Content-Type": "application/json"}), body)

    def _page(self, items: list[str], query: dict[str, list[str]], path: str, key: str,
              extra: dict[str, t.Any]) -> FakeResponse:
        size = int(query.get("n", ["0"])[0] or 0)
        if self.page_size:
            size = min(size or self.page_size, self.page_size)
        last = query.get("last", [""])[0]
        rest = [item for item in items if item > last] if last else items
        page = rest[:size] if size else rest
        headers = {"Content-Type": "application/json"}
        if size and len(rest) > size:
            headers["Link"] = '<%s?n=%d&last=%s>; rel="next"' % (path, size, urllib.parse.quote(page[-1]))
        document = dict(extra)
        document[key] = page if page or key == "repositories" else None
        return FakeResponse(200, headers, json.dumps(document).encode())

    def route(self, method: str, url: str, data: bytes | None, headers: dict[str, str]) -> FakeResponse:
        parts = urllib.parse.urlsplit(url)
        path, query = parts.path, urllib.parse.parse_qs(parts.query)
        if path == "/v2/":
            return FakeResponse(200, {}, b"{}")
        if path == "/v2/_catalog":
            return self._page(sorted(self.tag_links), query, path, "repositories", {})
        rest = path[len("/v2/"):]
        for kind in ("/tags/list", "/manifests/", "/blobs/uploads/", "/blobs/"):
            if kind in rest:
                repository, _kind, reference = rest.partition(kind)
                break
        else:
            return self.error(404, "NOT_FOUND")
        if kind == "/tags/list":
            if repository not in self.tag_links:
                return self.error(404, "NAME_UNKNOWN", "repository name not known to registry")
            return self._page(self.tags(repository), query, path, "tags", {"name": repository})
        if kind == "/manifests/":
            return self._manifest(method, repository, reference, data, headers)
        if kind == "/blobs/uploads/":
            source = query.get("from", [""])[0]
            if method == "PUT" and data is not None and query.get("digest") == [digest_of(data)]:
                self.blobs[digest_of(data)] = data
                self.blob_links.setdefault(repository, set()).add(digest_of(data))
                return FakeResponse(201, {"Docker-Content-Digest": digest_of(data)}, b"")
            if method == "DELETE":
                return FakeResponse(204, {}, b"")
            mount = query.get("mount", [""])[0] if getattr(self, "mountable", True) else ""
            if mount and mount in self.blob_links.get(source, set()):
                self.blob_links.setdefault(repository, set()).add(mount)
                return FakeResponse(201, {"Location": "/v2/%s/blobs/%s" % (repository, mount)}, b"")
            return FakeResponse(202, {"Location": "/v2/%s/blobs/uploads/uuid?x=1" % repository}, b"")
        if reference not in self.blob_links.get(repository, set()):
            return self.error(404, "BLOB_UNKNOWN")
        body = self.blobs[reference]
        return FakeResponse(200, {"Content-Length": str(len(body)), "Docker-Content-Digest": reference},
                            b"" if method == "HEAD" else body)

    def _manifest(self, method: str, repository: str, reference: str, data: bytes | None,
                  headers: dict[str, str]) -> FakeResponse:
        stored = self.manifests.get(repository, {})
        links = self.tag_links.get(repository, {})
        if method == "PUT":
            assert data is not None
            digest = self.store(repository, None if reference.startswith("sha256:") else reference,
                                data, headers["Content-Type"])
            return FakeResponse(201, {"Docker-Content-Digest": digest}, b"")
        digest = reference if reference.startswith("sha256:") else links.get(reference)
        if digest is None or digest not in stored:
            return self.error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        if method == "DELETE":
            if not self.delete_enabled:
                return self.error(405, "UNSUPPORTED", "The operation is unsupported.")
            if not reference.startswith("sha256:"):
                return self.error(400, "DIGEST_INVALID")
            with self.lock:
                del stored[digest]
                for tag in [tag for tag, target in links.items() if target == digest]:
                    del links[tag]
            return FakeResponse(202, {}, b"")
        body, media_type = stored[digest]
        return FakeResponse(200, {"Content-Type": media_type, "Docker-Content-Digest": digest,
                                  "Content-Length": str(len(body))}, b"" if method == "HEAD" else body)


def make_client(fake: FakeRegistry, base: str = BASE, **auth: t.Any) -> RegistryClient:
    transport = Transport(opener=fake, sleep=lambda _seconds: None)
    return RegistryClient(base, transport, Authenticator(transport, **auth))


def run_main(main: t.Callable[[], None], args: dict[str, t.Any], capsys: t.Any) -> dict[str, t.Any]:
    """Run a module's main() with these arguments; its JSON result (exit_json or fail_json)."""
    from ansible.module_utils.testing import patch_module_args

    try:
        with patch_module_args(args):
            main()
    except SystemExit:
        pass
    return json.loads(capsys.readouterr().out)
