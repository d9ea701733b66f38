# Private to the dockyard.registry collection: not a public API, may change at any time.
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An OCI image layout root as one side of a copy: one layout per repository.

``<root>/<repository>/`` holds ``oci-layout``, ``index.json`` and ``blobs/<algorithm>/<hex>``;
each tag is an entry of ``index.json`` whose ``org.opencontainers.image.ref.name`` annotation
is the tag, so ``skopeo inspect oci:<root>/<repository>:<tag>`` reads it.  Child manifests of
an index are blobs only, as the specification wants.

Everything is written atomically: a blob goes to a temporary file in its directory, is hashed
while written, checked against its digest and renamed; ``index.json`` is rewritten to a
temporary file and renamed.  Blobs read are hashed and refused when they do not match.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import threading
import typing as t

from . import validation
from .client import Manifest, file_digest
from .copy import Store
from .errors import RegistryError

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_FILE = {"imageLayoutVersion": "1.0.0"}
CHUNK = 1024 * 1024


class LayoutStore(Store):
    def __init__(self, root: str, label: str = "") -> None:
        self.root = os.path.abspath(root)
        self.label = label
        self.identity = "oci:" + self.root
        self._lock = threading.Lock()

    # -- paths ---------------------------------------------------------------------------
    def _dir(self, repository: str) -> str:
        return os.path.join(self.root, *validation.repository(repository).split("/"))

    def _blob_path(self, repository: str, digest: str) -> str:
        algorithm = validation.digest_algorithm(digest)
        if algorithm is None:
            raise RegistryError("%s: cannot verify the digest %r" % (repository, digest))
        return os.path.join(self._dir(repository), "blobs", algorithm, digest.partition(":")[2])

    def _index(self, repository: str) -> list[dict[str, t.Any]] | None:
        path = os.path.join(self._dir(repository), "index.json")
        if not os.path.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as handle:
                document = json.load(handle)
        except ValueError:
            raise RegistryError("%s is not JSON" % path) from None
        entries = document.get("manifests") if isinstance(document, dict) else None
        return [entry for entry in entries or [] if isinstance(entry, dict) and entry.get("digest")]

    def _entry(self, repository: str, tag: str) -> dict[str, t.Any] | None:
        for entry in self._index(repository) or []:
            if (entry.get("annotations") or {}).get(REF_NAME) == tag:
                return entry
        return None

    # -- reading -------------------------------------------------------------------------
    def repositories(self) -> list[str]:
        found = []
        for directory, subdirs, files in os.walk(self.root):
            if "oci-layout" in files:
                found.append(os.path.relpath(directory, self.root).replace(os.sep, "/"))
            subdirs[:] = [name for name in subdirs if name != "blobs"]
        return sorted(name for name in found if validation.REPOSITORY.fullmatch(name))

    def tags(self, repository: str) -> list[str] | None:
        entries = self._wrap(self._index, repository)
        if entries is None:
            return None
        names = {(entry.get("annotations") or {}).get(REF_NAME) for entry in entries}
        return sorted(name for name in names if isinstance(name, str) and validation.TAG.fullmatch(name))

    def describe(self, repository: str, reference: str) -> tuple[str, str] | None:
        if ":" in reference:
            if not os.path.exists(self._wrap(self._blob_path, repository, reference)):
                return None
            manifest = self.manifest(repository, reference)
            return manifest.digest, manifest.media_type
        entry = self._wrap(self._entry, repository, reference)
        return (str(entry["digest"]), str(entry.get("mediaType") or "")) if entry else None

    def has_manifest(self, repository: str, digest: str) -> bool:
        return self.has_blob(repository, digest)

    def manifest(self, repository: str, reference: str, media_type: str = "") -> Manifest:
        digest = reference
        if ":" not in reference:
            entry = self._wrap(self._entry, repository, reference)
            if entry is None:
                raise self.fail(RegistryError("%s has no tag %s in %s" % (repository, reference, self.root)))
            digest, media_type = str(entry["digest"]), str(entry.get("mediaType") or "")
        with self.open_blob(repository, digest) as (handle, _size):
            body = handle.read()
        return self._wrap(Manifest, body, media_type, digest)

    def has_blob(self, repository: str, digest: str) -> bool:
        return os.path.exists(self._wrap(self._blob_path, repository, digest))

    @contextlib.contextmanager
    def open_blob(self, repository: str, digest: str) -> t.Iterator[tuple[t.BinaryIO, int]]:
        path = self._wrap(self._blob_path, repository, digest)
        try:
            handle = open(path, "rb")
        except OSError as error:
            raise self.fail(RegistryError("blob %s of %s: %s" % (digest, repository, error))) from None
        with handle:
            if file_digest(handle, digest.partition(":")[0]) != digest:
                raise self.fail(RegistryError("%s: the bytes do not hash to %s" % (path, digest)))
            size = handle.tell()
            handle.seek(0)
            yield t.cast(t.BinaryIO, handle), size

    # -- writing -------------------------------------------------------------------------
    def _prepare(self, repository: str) -> str:
        directory = self._dir(repository)
        os.makedirs(directory, exist_ok=True)
        marker = os.path.join(directory, "oci-layout")
        if not os.path.exists(marker):
            self._write_atomically(marker, [json.dumps(LAYOUT_FILE).encode()])
        return directory

    @staticmethod
    def _write_atomically(path: str, chunks: t.Iterable[bytes], digest: str | None = None) -> None:
        """Write to a temporary file beside ``path``, fsync, check ``digest`` if given, rename."""
        handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            hasher = hashlib.new(digest.partition(":")[0]) if digest else None
            with os.fdopen(handle, "wb") as out:
                for chunk in chunks:
                    if hasher is not None:
                        hasher.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if hasher is not None and "%s:%s" % (digest.partition(":")[0], hasher.hexdigest()) != digest:
                raise RegistryError("blob %s: the bytes received do not hash to it" % digest)
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def put_blob(self, repository: str, digest: str, handle: t.BinaryIO, size: int) -> None:
        try:
            self._prepare(repository)
            path = self._blob_path(repository, digest)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            handle.seek(0)
            self._write_atomically(path, iter(lambda: handle.read(CHUNK), b""), digest)
        except (RegistryError, OSError) as error:
            raise self.fail(error) from None

    def mount(self, repository: str, digest: str, from_repository: str) -> bool:
        """A hard link to the blob another repository of this root already has (a copy across filesystems)."""
        source = self._wrap(self._blob_path, from_repository, digest)
        if not os.path.exists(source):
            return False
        with open(source, "rb") as handle:
            self.put_blob(repository, digest, handle, os.path.getsize(source))
        return True

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None:
        self.put_blob(repository, manifest.digest, io.BytesIO(manifest.body), len(manifest.body))
        if ":" not in reference:
            self._set_tag(repository, reference, {"mediaType": manifest.media_type, "digest": manifest.digest,
                                                  "size": len(manifest.body)})

    def delete(self, repository: str, tag: str, digest: str) -> None:
        """Drop the tag from index.json; its blobs stay (they may be shared; nothing collects them)."""
        self._set_tag(repository, tag, None)

    def _set_tag(self, repository: str, tag: str, descriptor: dict[str, t.Any] | None) -> None:
        try:
            with self._lock:
                directory = self._prepare(repository)
                entries = [entry for entry in self._index(repository) or []
                           if (entry.get("annotations") or {}).get(REF_NAME) != tag]
                if descriptor is not None:
                    entries.append(dict(descriptor, annotations={REF_NAME: tag}))
                document = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": entries}
                self._write_atomically(os.path.join(directory, "index.json"),
                                       [json.dumps(document, indent=2, sort_keys=True).encode()])
        except (RegistryError, OSError) as error:
            raise self.fail(error) from None

    def _wrap(self, function: t.Callable[..., t.Any], *args: t.Any) -> t.Any:
        try:
            return function(*args)
        except (RegistryError, OSError) as error:
            raise self.fail(error) from None


def check_writable(root: str) -> None:
    """Fail before any request when the layout root cannot be created or written."""
    probe = os.path.abspath(root)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        raise RegistryError("destination path %s cannot be written (%s is not a writable directory)" % (root, probe))
