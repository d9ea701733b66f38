# Private to the dockyard.registry collection: not a public API, may change at any time.
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Replicate repositories and tags from one store to another (the ``image_sync`` module).

Per selected repository: one tag list on each side, then per tag

- a tag the destination does not list is copied straight away: GET the source manifest,
  copy what it refers to (``copy.Copier``), PUT it under the tag, last;
- a tag the destination lists costs one HEAD on the source; it is unchanged when that digest is
  the one the checkpoint says this job wrote to that tag (no destination request), else when a
  HEAD on the destination gives the same digest.  Trade-off: with a checkpoint, a tag changed
  on the destination by someone else behind the job's back is not noticed until the source
  moves; without one, every run costs a HEAD on each side per tag.

Artifact tags (``artifacts.py``) of the digests selected (an image, an index or its platform
manifests) follow, whatever ``tags`` says.  Deletions (``delete``) honour Distribution's
delete-by-digest: a tag whose digest a kept tag (or a kept index) still needs is kept, with a
warning.  Each tag's failure is recorded and the others go on.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import typing as t

from . import artifacts
from .client import INDEX_TYPES
from .copy import Copier, RegistryStore, Store
from .errors import RegistryError
from .inventory import parallel
from .validation import REPOSITORY

CHECKPOINT_VERSION = 1


class Checkpoint:
    """Which source digest this job wrote to which destination tag; written atomically after each tag."""

    def __init__(self, path: str | None, source: str, destination: str, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled and path is not None
        self.identity = {"source": source, "destination": destination}
        self.entries: dict[str, dict[str, dict[str, t.Any]]] = {}
        self._lock = threading.Lock()
        if path and os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as handle:
                    document = json.load(handle)
            except (OSError, ValueError) as error:
                raise RegistryError("checkpoint %s cannot be read: %s" % (path, error)) from None
            if isinstance(document, dict) and document.get("version") == CHECKPOINT_VERSION and all(
                    document.get(key) == value for key, value in self.identity.items()):
                self.entries = document.get("repositories") or {}

    def get(self, repository: str, tag: str) -> dict[str, t.Any] | None:
        with self._lock:
            return self.entries.get(repository, {}).get(tag)

    def children(self) -> dict[str, list[str]]:
        with self._lock:
            return {entry["digest"]: list(entry.get("children") or []) for tags in self.entries.values()
                    for entry in tags.values() if entry.get("children")}

    def record(self, repository: str, tag: str, digest: str | None, media_type: str = "",
               children: list[str] | None = None) -> None:
        with self._lock:
            tags = self.entries.setdefault(repository, {})
            if digest is None:
                tags.pop(tag, None)
            else:
                previous = tags.get(tag) or {}
                if children is None and previous.get("digest") == digest:
                    children = previous.get("children")
                tags[tag] = {"digest": digest, "media_type": media_type, "children": children or []}
            if not self.enabled:
                return
            document = dict(self.identity, version=CHECKPOINT_VERSION, repositories=self.entries)
            directory = os.path.dirname(os.path.abspath(str(self.path)))
            os.makedirs(directory, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=directory, prefix=".checkpoint-")
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as out:
                    json.dump(document, out, sort_keys=True)
                os.replace(temporary, str(self.path))
            except BaseException:
                if os.path.exists(temporary):
                    os.unlink(temporary)
                raise


class Replicator:
    def __init__(self, source: Store, destination: Store, repositories: list[str], tags: list[t.Pattern[str]],
                 copy_artifacts: bool = True, delete: bool = False, workers: int = 4,
                 checkpoint: Checkpoint | None = None, check_mode: bool = False) -> None:
        self.source = source
        self.destination = destination
        self.repository_names = [name for name in repositories if _is_name(name)]
        self.repository_patterns = [re.compile(name) for name in repositories if not _is_name(name)]
        self.tag_patterns = tags
        self.copy_artifacts = copy_artifacts
        self.delete = delete
        self.workers = workers
        self.check_mode = check_mode
        self.checkpoint = checkpoint or Checkpoint(None, source.identity, destination.identity, enabled=False)
        self.copier = Copier(source, destination, same_registry=source.identity == destination.identity,
                             workers=workers)
        self.copied: list[dict[str, str]] = []
        self.deleted: list[dict[str, str]] = []
        self.failed: list[dict[str, t.Any]] = []
        self.warnings: list[str] = []
        self.unchanged = 0
        self._children = self.checkpoint.children()
        self._lock = threading.Lock()

    # -- selection -----------------------------------------------------------------------
    def repositories(self) -> list[str]:
        selected = set(self.repository_names)
        if self.repository_patterns:
            for name in self.source.repositories():
                if any(pattern.fullmatch(name) for pattern in self.repository_patterns):
                    selected.add(name)
        return sorted(selected)

    def _wanted(self, tag: str) -> bool:
        return any(pattern.fullmatch(tag) for pattern in self.tag_patterns)

    # -- the run -------------------------------------------------------------------------
    def run(self) -> dict[str, t.Any]:
        for repository in self.repositories():
            self._repository(repository)
        stats = self.copier.stats
        return {
            "changed": bool(self.copied or self.deleted),
            "copied": sorted(self.copied, key=lambda item: (item["repository"], item["tag"])),
            "unchanged": self.unchanged,
            "deleted": sorted(self.deleted, key=lambda item: (item["repository"], item["tag"])),
            "failed_tags": sorted(self.failed, key=lambda item: (item["repository"], item["tag"] or "")),
            "blobs_sent": len(stats.sent),
            "bytes_sent": stats.bytes_sent,
            "blobs_mounted": len(stats.mounted),
            "blobs_skipped": stats.skipped,
            "requests": {"source": self.source.requests, "destination": self.destination.requests},
        }

    def _fail(self, repository: str, tag: str | None, error: Exception) -> None:
        where = "%s:%s" % (repository, tag) if tag else repository
        with self._lock:
            self.failed.append({"repository": repository, "tag": tag, "msg": "%s: %s" % (where, error)})

    def _repository(self, repository: str) -> None:
        try:
            source_tags = self.source.tags(repository)
            if source_tags is None:
                raise RegistryError("source: no such repository")
            ordinary, artifact_tags = artifacts.split(source_tags)
            selected = [tag for tag in ordinary if self._wanted(tag)]
            if not selected and not self.delete:
                return  # nothing to copy, nothing to delete: no request to the destination
            destination_tags = set(self.destination.tags(repository) or [])
        except RegistryError as error:
            self._fail(repository, None, error)
            return
        heads = parallel(lambda tag: self._tag(repository, tag, destination_tags), selected, self.workers)
        known = {tag: head for tag, head in zip(selected, heads) if head is not None}
        asked = {artifact.subject for artifact in artifact_tags}
        if self.delete:  # the subjects of the destination's artifact tags decide which of them stay
            asked.update(artifact.subject for artifact in artifacts.split(destination_tags)[1])
        subjects = self._subjects(repository, known.values(), asked)
        if self.copy_artifacts:
            attached = [artifact.tag for artifact in artifacts.attached_to(artifact_tags, subjects)]
            heads = parallel(lambda tag: self._tag(repository, tag, destination_tags), attached, self.workers)
            known.update((tag, head) for tag, head in zip(attached, heads) if head is not None)
        if self.delete:
            with self._lock:  # a tag that failed may be the subject of artifacts: keep them all then
                sure = not any(item["repository"] == repository for item in self.failed)
            self._deletions(repository, set(source_tags), destination_tags, known, subjects if sure else None)

    def _subjects(self, repository: str, heads: t.Iterable[tuple[str, str]], wanted: set[str]) -> set[str]:
        """The digests of the selected tags, with the platform manifests of their indexes when asked about."""
        heads = list(heads)
        subjects = {digest for digest, _media_type in heads}
        if wanted - subjects:
            for digest, media_type in heads:
                if media_type in INDEX_TYPES:
                    subjects.update(self._children_of(repository, digest))
        return subjects

    def _children_of(self, repository: str, digest: str) -> list[str]:
        with self._lock:
            cached = self._children.get(digest)
        if cached is None:
            try:
                cached = [str(child["digest"]) for child in self.source.manifest(repository, digest).children]
            except RegistryError as error:
                self._fail(repository, None, error)
                cached = []
            with self._lock:
                self._children[digest] = cached
        return cached

    def _tag(self, repository: str, tag: str, destination_tags: set[str]) -> tuple[str, str] | None:
        """Bring one tag up to date; its (digest, media type) at the source, None when it failed."""
        try:
            if tag in destination_tags or self.check_mode:
                described = self.source.describe(repository, tag)
                if described is None:
                    raise RegistryError("source: the tag disappeared during the run")
                digest, media_type = described
                entry = self.checkpoint.get(repository, tag)
                if tag in destination_tags and (
                        (entry is not None and entry.get("digest") == digest)
                        or (self.destination.describe(repository, tag) or ("",))[0] == digest):
                    with self._lock:
                        self.unchanged += 1
                    if entry is None or entry.get("digest") != digest:
                        self.checkpoint.record(repository, tag, digest, media_type)
                    return digest, media_type
                if self.check_mode:
                    self._copied(repository, tag, digest, media_type)
                    return digest, media_type
            manifest = self.source.manifest(repository, tag)
            self.copier.copy_references(repository, repository, manifest)
            self.destination.put_manifest(repository, tag, manifest)
        except RegistryError as error:
            self._fail(repository, tag, error)
            return None
        children = [str(child["digest"]) for child in manifest.children]
        with self._lock:
            self._children[manifest.digest] = children
        self._copied(repository, tag, manifest.digest, manifest.media_type)
        self.checkpoint.record(repository, tag, manifest.digest, manifest.media_type, children)
        return manifest.digest, manifest.media_type

    def _copied(self, repository: str, tag: str, digest: str, media_type: str) -> None:
        with self._lock:
            self.copied.append({"repository": repository, "tag": tag, "digest": digest, "media_type": media_type})

    # -- deletions -----------------------------------------------------------------------
    def _deletions(self, repository: str, source_tags: set[str], destination_tags: set[str],
                   known: dict[str, tuple[str, str]], subjects: set[str] | None) -> None:
        """``subjects``: the digests whose artifact tags stay; None to keep every artifact tag."""
        def doomed(tag: str) -> bool:
            if tag in source_tags:
                return False
            artifact = artifacts.parse(tag)
            if artifact is None:
                return self._wanted(tag)
            return subjects is not None and artifact.subject not in subjects

        victims = sorted(tag for tag in destination_tags if doomed(tag))
        if not victims:
            return
        kept = sorted(destination_tags - set(victims))
        by_delete_digest = isinstance(self.destination, RegistryStore)
        digests: dict[str, str] = {}
        for tag in victims + (kept if by_delete_digest else []):
            if tag in known and tag not in victims:
                digests[tag] = known[tag][0]
                continue
            try:
                described = self.destination.describe(repository, tag)
            except RegistryError as error:
                self._fail(repository, tag, error)
                continue
            if described is not None:
                digests[tag] = described[0]
        needed = {digests[tag] for tag in kept if tag in digests}
        if by_delete_digest:
            for tag in kept:
                if tag in known and known[tag][1] in INDEX_TYPES:
                    needed.update(self._children_of(repository, known[tag][0]))
        done: set[str] = set()
        for tag in victims:
            digest = digests.get(tag)
            if digest is None:
                continue
            if by_delete_digest and digest in needed:
                self.warnings.append("%s: tag %s not deleted: %s is still needed by a kept tag, and Distribution "
                                     "deletes by digest" % (repository, tag, digest))
                continue
            try:
                if not self.check_mode and not (by_delete_digest and digest in done):
                    self.destination.delete(repository, tag, digest)
                    done.add(digest)
            except RegistryError as error:
                self._fail(repository, tag, error)
                continue
            with self._lock:
                self.deleted.append({"repository": repository, "tag": tag, "digest": digest})
            if not self.check_mode:
                self.checkpoint.record(repository, tag, None)


def _is_name(value: str) -> bool:
    """A plain repository name is taken literally (no catalog needed); anything else is a pattern."""
    return bool(REPOSITORY.fullmatch(value))


def summary(failed: list[dict[str, t.Any]]) -> str:
    return "%d tag(s) failed: %s" % (len(failed), "; ".join(item["msg"] for item in failed))
