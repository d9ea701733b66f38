# Private to the dockyard.registry collection: not a public API, may change at any time.
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Operations of the Registry HTTP API v2, as Distribution 2.8 implements them.

Quirks handled here so that nothing above has to know them:
- ``_catalog`` and ``tags/list`` paginate through ``Link: <...>; rel="next"`` headers;
- a repository whose tags were all deleted lists ``"tags": null``;
- manifests come in four media types; the Accept header must name them all or the
  registry rewrites (schema1) or hides (index) what it stores;
- a manifest fetched by digest must hash to that digest, whatever ``Docker-Content-Digest``
  says; a ``Docker-Content-Digest`` that is present must match the bytes too (by tag as well);
- blob GETs may be redirected to a storage backend, which must not see our credentials.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import typing as t
import urllib.parse

from .auth import Authenticator, unauthorized
from .errors import InvalidInput, RegistryDigestMismatch, RegistryError, RegistryNotFound, http_error
from .transport import Body, Response, Transport
from .validation import digest_algorithm

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = frozenset((OCI_INDEX, DOCKER_MANIFEST_LIST))
ACCEPT = ", ".join(MANIFEST_TYPES)
PAGE_SIZE = 1000
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;[^,]*rel="?next"?')


class Manifest:
    """A manifest as stored: its exact bytes, media type and digest."""

    def __init__(self, body: bytes, media_type: str, digest: str) -> None:
        self.body = body
        self.media_type = media_type
        self.digest = digest
        try:
            document = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise RegistryError("manifest %s is not JSON" % digest) from None
        self.document: dict[str, t.Any] = document if isinstance(document, dict) else {}
        if not media_type or media_type not in MANIFEST_TYPES:
            declared = self.document.get("mediaType")
            if declared in MANIFEST_TYPES:
                self.media_type = declared
            elif "manifests" in self.document:
                self.media_type = OCI_INDEX
            elif media_type not in MANIFEST_TYPES:
                raise RegistryError("manifest %s has unsupported media type %r" % (digest, media_type))

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def children(self) -> list[dict[str, t.Any]]:
        entries = self.document.get("manifests") if self.is_index else None
        return [entry for entry in entries or [] if isinstance(entry, dict) and entry.get("digest")]

    @property
    def config(self) -> dict[str, t.Any] | None:
        config = self.document.get("config") if not self.is_index else None
        return config if isinstance(config, dict) and config.get("digest") else None

    @property
    def layers(self) -> list[dict[str, t.Any]]:
        layers = self.document.get("layers") if not self.is_index else None
        return [layer for layer in layers or [] if isinstance(layer, dict) and layer.get("digest")]

    @property
    def image_size(self) -> int:
        """Config plus layers, as stored (compressed); 0 for an index."""
        parts = ([self.config] if self.config else []) + self.layers
        return sum(int(part.get("size") or 0) for part in parts)


def sha256_digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def digest_for(body: bytes, algorithm: str) -> str:
    return "%s:%s" % (algorithm, hashlib.new(algorithm, body).hexdigest())


def file_digest(handle: t.BinaryIO, algorithm: str) -> str:
    """The digest of a seekable file's whole content, read in chunks."""
    hasher = hashlib.new(algorithm)
    handle.seek(0)
    for chunk in iter(lambda: handle.read(1024 * 1024), b""):
        hasher.update(chunk)
    return "%s:%s" % (algorithm, hasher.hexdigest())


def verified_digest(body: bytes, repository: str, reference: str, announced: str) -> str:
    """The sha256 digest of manifest bytes, after checking them against what was asked and announced.

    By digest, the bytes must hash to the digest asked for, whatever ``Docker-Content-Digest``
    says. A ``Docker-Content-Digest`` that is present must match the bytes as well, by tag too;
    without one, a manifest fetched by tag is taken as received (its digest is its bytes' own).
    """
    digest = sha256_digest(body)
    claims = ([(reference, "digest requested")] if ":" in reference else []) + (
        [(announced, "Docker-Content-Digest")] if announced else [])
    for expected, source in claims:
        algorithm = digest_algorithm(expected)
        if algorithm is None:
            raise RegistryError("manifest %s of %s: cannot verify the %s %r: only sha256, sha384 and sha512 "
                                "digests (lowercase hex) can be checked" % (reference, repository, source, expected))
        computed = digest if algorithm == "sha256" else digest_for(body, algorithm)
        if computed != expected:
            raise RegistryDigestMismatch(repository, reference, expected, computed, source)
    return digest


def scope_for(method: str, repository: str | None) -> str:
    """The token scope Distribution asks for when ``method`` touches ``repository``."""
    if repository is None:
        return "registry:catalog:*"
    if method in ("GET", "HEAD"):
        action = "pull"
    elif method == "DELETE":
        action = "delete"
    else:
        action = "pull,push"
    return "repository:%s:%s" % (repository, action)


class RegistryClient:
    def __init__(self, base_url: str, transport: Transport, auth: Authenticator) -> None:
        self.base_url = base_url.rstrip("/")
        self.transport = transport
        self.auth = auth

    def send(self, method: str, path: str, repository: str | None = None, headers: dict[str, str] | None = None,
             data: Body = None, ok: t.Collection[int] = (200,), scope: str | None = None,
             sink: t.BinaryIO | None = None) -> Response:
        """One authenticated request; statuses outside ``ok`` become exceptions."""
        url = path if "://" in path else self.base_url + path
        shown = urllib.parse.urlsplit(url).path
        scope = scope if scope is not None else scope_for(method, repository)
        sent = dict(headers or {})
        sent.update(self.auth.headers(scope))
        response = self.transport.request(method, url, sent, data, sink)
        if response.status == 401 and self.auth.answer(response, scope, sent):
            sent = dict(headers or {})
            sent.update(self.auth.headers(scope))
            response = self.transport.request(method, url, sent, data, sink)
        if response.status in ok:
            return response
        if response.status in (401, 403):
            raise unauthorized(method, shown, response, self.auth)
        raise http_error(method, shown, response.status, response.body)

    def ping(self) -> None:
        self.send("GET", "/v2/", scope="")

    def _paginate(self, path: str, key: str, repository: str | None) -> list[str]:
        items: list[str] = []
        seen = set()
        url: str | None = path
        while url and url not in seen:
            seen.add(url)
            response = self.send("GET", url, repository)
            try:
                document = json.loads(response.body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise RegistryError("GET %s did not return JSON" % urllib.parse.urlsplit(url).path) from None
            value = document.get(key) if isinstance(document, dict) else None
            items.extend(value or [])  # Distribution lists "tags": null once all are deleted
            match = _LINK_NEXT.search(response.header("Link"))
            url = urllib.parse.urljoin(self.base_url + "/", match.group(1)) if match else None
        return items

    def catalog(self) -> list[str]:
        return self._paginate("/v2/_catalog?n=%d" % PAGE_SIZE, "repositories", None)

    def tags(self, repository: str) -> list[str]:
        """Tag names; [] for a repository that exists without tags. RegistryNotFound if unknown."""
        return self._paginate("/v2/%s/tags/list?n=%d" % (repository, PAGE_SIZE), "tags", repository)

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """The manifest a tag or digest names, its bytes verified (see ``verified_digest``)."""
        if ":" in reference and digest_algorithm(reference) is None:
            raise InvalidInput("%r is not a digest that can be verified: sha256, sha384 or sha512 with lowercase "
                               "hex digits" % (reference,))
        path = "/v2/%s/manifests/%s" % (repository, reference)
        response = self.send("GET", path, repository, {"Accept": ACCEPT})
        digest = verified_digest(response.body, repository, reference,
                                 response.header("Docker-Content-Digest").strip())
        media_type = response.header("Content-Type").split(";")[0].strip()
        return Manifest(response.body, media_type, digest)

    def head_manifest(self, repository: str, reference: str) -> str | None:
        """The digest a tag points at, or None when the tag does not exist."""
        described = self.describe_manifest(repository, reference)
        return described[0] if described else None

    def describe_manifest(self, repository: str, reference: str) -> tuple[str, str] | None:
        """Digest and media type of what a tag points at (one HEAD), or None when it does not exist.

        A registry that sends no ``Docker-Content-Digest`` on HEAD costs a GET instead.
        """
        path = "/v2/%s/manifests/%s" % (repository, reference)
        try:
            response = self.send("HEAD", path, repository, {"Accept": ACCEPT})
        except RegistryNotFound:
            return None
        digest = response.header("Docker-Content-Digest").strip()
        if not digest:
            manifest = self.get_manifest(repository, reference)
            return manifest.digest, manifest.media_type
        return digest, response.header("Content-Type").split(";")[0].strip()

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> str:
        path = "/v2/%s/manifests/%s" % (repository, reference)
        response = self.send("PUT", path, repository, {"Content-Type": manifest.media_type},
                             manifest.body, ok=(200, 201))
        return response.header("Docker-Content-Digest") or manifest.digest

    def delete_manifest(self, repository: str, digest: str) -> bool:
        """Delete a manifest by digest (and so every tag on it); False if already gone."""
        try:
            self.send("DELETE", "/v2/%s/manifests/%s" % (repository, digest), repository, ok=(200, 202))
        except RegistryNotFound:
            return False
        return True

    def blob_exists(self, repository: str, digest: str) -> bool:
        try:
            self.send("HEAD", "/v2/%s/blobs/%s" % (repository, digest), repository, ok=(200, 307))
        except RegistryNotFound:
            return False
        return True

    def get_blob(self, repository: str, digest: str) -> bytes:
        sink = io.BytesIO()
        self.download_blob(repository, digest, sink)
        return sink.getvalue()

    def download_blob(self, repository: str, digest: str, sink: t.BinaryIO) -> int:
        """Stream a blob into ``sink`` (a seekable file) while hashing it; its size once verified."""
        path = "/v2/%s/blobs/%s" % (repository, digest)
        algorithm = digest_algorithm(digest)
        if algorithm is None:
            raise RegistryError("GET %s: cannot verify a blob digest that is not sha256, sha384 or sha512" % path)
        response = self.send("GET", path, repository, ok=(200, 301, 302, 303, 307, 308), sink=sink)
        if response.status != 200:
            # A storage backend's pre-signed URL: follow it without our Authorization.
            target = urllib.parse.urljoin(response.url, response.header("Location"))
            response = self.transport.request("GET", target, {}, sink=sink)
            if response.status != 200:
                raise http_error("GET", urllib.parse.urlsplit(target).path, response.status, response.body)
        if file_digest(sink, algorithm) != digest:
            raise RegistryError("GET %s: the blob's bytes do not hash to %s" % (path, digest))
        return sink.seek(0, io.SEEK_END)

    def get_blob_json(self, repository: str, digest: str) -> dict[str, t.Any]:
        try:
            document = json.loads(self.get_blob(repository, digest).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise RegistryError("blob %s of %s is not JSON" % (digest, repository)) from None
        return document if isinstance(document, dict) else {}

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Cross-repository mount; True when the registry linked the blob, False otherwise."""
        query = urllib.parse.urlencode({"mount": digest, "from": source})
        scope = "%s repository:%s:pull" % (scope_for("POST", repository), source)
        response = self.send("POST", "/v2/%s/blobs/uploads/?%s" % (repository, query), repository,
                             {"Content-Length": "0"}, b"", ok=(201, 202), scope=scope)
        if response.status == 202 and response.header("Location"):
            # The registry opened an upload instead of mounting: cancel it.
            location = urllib.parse.urljoin(self.base_url + "/", response.header("Location"))
            try:
                self.send("DELETE", location, repository, ok=(200, 202, 204, 404), scope=scope_for("POST", repository))
            except RegistryError:
                pass
        return response.status == 201

    def upload_blob(self, repository: str, digest: str, data: bytes | t.BinaryIO, size: int | None = None) -> None:
        """Monolithic upload: POST to open a session, PUT the bytes (or a seekable file of ``size``) with the digest."""
        response = self.send("POST", "/v2/%s/blobs/uploads/" % repository, repository,
                             {"Content-Length": "0"}, b"", ok=(202,))
        location = urllib.parse.urljoin(self.base_url + "/", response.header("Location"))
        location += ("&" if "?" in location else "?") + urllib.parse.urlencode({"digest": digest})
        headers = {"Content-Type": "application/octet-stream"}
        if not isinstance(data, bytes):
            headers["Content-Length"] = str(size)
        self.send("PUT", location, repository, headers, data, ok=(201,))
