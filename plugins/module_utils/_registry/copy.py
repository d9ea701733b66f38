# Private to the dockyard.registry collection: not a public API, may change at any time.
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copy an image (manifest, index children, blobs) from one store to another, digests unchanged.

A store is a registry (``RegistryStore``) or an OCI image layout root (``layout.LayoutStore``);
both offer the few operations a copy needs.  ``Copier`` makes everything a manifest refers to
exist in the target repository, children before their index, and never writes the manifest
itself: the caller PUTs it (and so the tag) last, which is what makes an interrupted copy safe
to resume (at most orphan blobs are left, and the next run finds them with a HEAD).

Blobs: a blob the target already has is not sent (HEAD); otherwise it is mounted from the
source repository when both sides are the same registry, or from a target repository it was
sent to earlier in this run (shared base layers), and only then streamed through a temporary
file (downloaded while hashed, verified, uploaded from the file).
"""
from __future__ import annotations

import contextlib
import tempfile
import threading
import typing as t

from .client import Manifest, RegistryClient
from .errors import RegistryError, RegistryNotFound
from .inventory import parallel

# Layers a registry must not (and Distribution will not) serve: their bytes live at their "urls".
_FOREIGN = ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd")


class SideError(RegistryError):
    """An error of one side of a copy, its message prefixed with the side (``source:``/``destination:``)."""


class Store:
    """What a copy needs of either side. ``label`` prefixes its errors; ``requests`` counts HTTP requests."""

    label = ""
    identity = ""

    @property
    def requests(self) -> int:
        return 0

    def repositories(self) -> list[str]:
        raise NotImplementedError

    def tags(self, repository: str) -> list[str] | None:
        """Tag names, or None when the repository does not exist."""
        raise NotImplementedError

    def describe(self, repository: str, reference: str) -> tuple[str, str] | None:
        """Digest and media type of a tag (or digest), None when absent."""
        raise NotImplementedError

    def manifest(self, repository: str, reference: str, media_type: str = "") -> Manifest:
        raise NotImplementedError

    def has_manifest(self, repository: str, digest: str) -> bool:
        return self.describe(repository, digest) is not None

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None:
        raise NotImplementedError

    def delete(self, repository: str, tag: str, digest: str) -> None:
        raise NotImplementedError

    def has_blob(self, repository: str, digest: str) -> bool:
        raise NotImplementedError

    def open_blob(self, repository: str, digest: str) -> t.ContextManager[tuple[t.BinaryIO, int]]:
        """The blob's verified bytes as a seekable file (at 0) and its size."""
        raise NotImplementedError

    def put_blob(self, repository: str, digest: str, handle: t.BinaryIO, size: int) -> None:
        raise NotImplementedError

    def mount(self, repository: str, digest: str, from_repository: str) -> bool:
        return False

    def fail(self, error: Exception) -> SideError:
        return SideError("%s: %s" % (self.label, error) if self.label else str(error))


def _wrapped(method: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    def call(self: Store, *args: t.Any, **kwargs: t.Any) -> t.Any:
        try:
            return method(self, *args, **kwargs)
        except SideError:
            raise
        except (RegistryError, OSError) as error:
            if not self.label:
                raise  # no side to name: the error as it is
            raise self.fail(error) from None
    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


class RegistryStore(Store):
    """A registry through the collection's client (its own transport, credentials and counter)."""

    def __init__(self, client: RegistryClient, label: str = "") -> None:
        self.client = client
        self.label = label
        self.identity = client.base_url

    @property
    def requests(self) -> int:
        return self.client.transport.requests

    @_wrapped
    def repositories(self) -> list[str]:
        return self.client.catalog()

    @_wrapped
    def tags(self, repository: str) -> list[str] | None:
        try:
            return self.client.tags(repository)
        except RegistryNotFound:
            return None

    @_wrapped
    def describe(self, repository: str, reference: str) -> tuple[str, str] | None:
        return self.client.describe_manifest(repository, reference)

    @_wrapped
    def manifest(self, repository: str, reference: str, media_type: str = "") -> Manifest:
        return self.client.get_manifest(repository, reference)

    @_wrapped
    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None:
        stored = self.client.put_manifest(repository, reference, manifest)
        if stored != manifest.digest:
            raise RegistryError("PUT /v2/%s/manifests/%s stored digest %s, not %s"
                                % (repository, reference, stored, manifest.digest))

    @_wrapped
    def delete(self, repository: str, tag: str, digest: str) -> None:
        self.client.delete_manifest(repository, digest)

    @_wrapped
    def has_blob(self, repository: str, digest: str) -> bool:
        return self.client.blob_exists(repository, digest)

    @contextlib.contextmanager
    def open_blob(self, repository: str, digest: str) -> t.Iterator[tuple[t.BinaryIO, int]]:
        with tempfile.TemporaryFile(prefix="dockyard-blob-") as handle:
            try:
                size = self.client.download_blob(repository, digest, handle)
            except (RegistryError, OSError) as error:
                raise self.fail(error) from None
            handle.seek(0)
            yield handle, size

    @_wrapped
    def put_blob(self, repository: str, digest: str, handle: t.BinaryIO, size: int) -> None:
        self.client.upload_blob(repository, digest, handle, size)

    @_wrapped
    def mount(self, repository: str, digest: str, from_repository: str) -> bool:
        return self.client.mount_blob(repository, digest, from_repository)


class BlobStats:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.mounted: list[str] = []
        self.skipped = 0
        self.bytes_sent = 0


class Copier:
    """Copies what manifests refer to from ``source`` to ``target``; safe to share between threads."""

    def __init__(self, source: Store, target: Store, same_registry: bool = False, workers: int = 4) -> None:
        self.source = source
        self.target = target
        self.same_registry = same_registry
        self.workers = workers
        self.stats = BlobStats()
        self._lock = threading.Lock()
        self._busy: dict[tuple[str, str], threading.Lock] = {}
        self._present: set[tuple[str, str]] = set()  # (target repository, digest) known to be there
        self._sent_to: dict[str, str] = {}  # digest -> a target repository that has it since this run

    def copy_references(self, source_repository: str, repository: str, manifest: Manifest) -> list[Manifest]:
        """Make what ``manifest`` refers to exist in ``repository``; returns the child manifests (of an index)."""
        if not manifest.is_index:
            parallel(lambda descriptor: self._blob(source_repository, repository, descriptor),
                     self._blobs_of(manifest), self.workers)
            return []
        children = []
        for descriptor in manifest.children:
            digest = str(descriptor["digest"])
            child = None
            if not self.target.has_manifest(repository, digest):
                child = self.source.manifest(source_repository, digest, str(descriptor.get("mediaType") or ""))
                children.extend([child] + self.copy_references(source_repository, repository, child))
                self.target.put_manifest(repository, digest, child)
        return children

    @staticmethod
    def _blobs_of(manifest: Manifest) -> list[dict[str, t.Any]]:
        parts = ([manifest.config] if manifest.config else []) + manifest.layers
        unique = {str(part["digest"]): part for part in parts if part.get("mediaType") not in _FOREIGN}
        return [unique[digest] for digest in sorted(unique)]

    def _blob(self, source_repository: str, repository: str, descriptor: dict[str, t.Any]) -> None:
        digest = str(descriptor["digest"])
        key = (repository, digest)
        with self._lock:
            busy = self._busy.setdefault(key, threading.Lock())
        with busy:  # two tags sharing a layer: one sends it, the other finds it there
            if key in self._present:
                return
            if self.target.has_blob(repository, digest):
                with self._lock:
                    self.stats.skipped += 1
            elif self._mount(source_repository, repository, digest):
                with self._lock:
                    self.stats.mounted.append(digest)
            else:
                with self.source.open_blob(source_repository, digest) as (handle, size):
                    self.target.put_blob(repository, digest, handle, size)
                with self._lock:
                    self.stats.sent.append(digest)
                    self.stats.bytes_sent += size
            with self._lock:
                self._present.add(key)
                self._sent_to.setdefault(digest, repository)

    def _mount(self, source_repository: str, repository: str, digest: str) -> bool:
        if self.same_registry and source_repository != repository:
            if self.target.mount(repository, digest, source_repository):
                return True
        with self._lock:
            other = self._sent_to.get(digest)
        return other is not None and other != repository and self.target.mount(repository, digest, other)
