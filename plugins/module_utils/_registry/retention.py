# Private to the dockyard.registry collection: not a public API, may change at any time.
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decide which tags go: retention rules, then the shared-digest rule.

Retention rules each *keep* tags; a tag is deleted only when no rule keeps it:
``keep_last`` keeps the newest N (by image creation time, or by version), each
``keep_patterns`` entry keeps the tags it matches in full, and ``older_than`` keeps
the tags created less than that long ago (and those whose age is unknown).

Distribution deletes by digest, and deleting a digest removes every tag on it.  So a
tag marked for deletion whose digest a kept tag still uses - directly, or as a platform
of a kept index - is kept too, and reported as protected.

Artifact tags (signatures, attestations, SBOMs, referrers indexes: see ``artifacts``) are no
candidates: the rules see image tags only, and ``ArtifactPlan`` makes artifacts follow their subject.
"""
from __future__ import annotations

import re
import typing as t

from . import artifacts
from .inventory import TagInfo

_VERSION = re.compile(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?", re.IGNORECASE)


def version_key(tag: str) -> tuple[t.Any, ...] | None:
    """A sort key following semantic-version precedence, or None when the tag is no version."""
    match = _VERSION.fullmatch(tag)
    if not match:
        return None
    numbers = tuple(int(part or 0) for part in match.group(1, 2, 3))
    pre = match.group(4)
    if not pre:
        return numbers + (1, ())
    identifiers = tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in pre.split("."))
    return numbers + (0, identifiers)


def newest(infos: list[TagInfo], order: str) -> list[TagInfo]:
    """Tags newest first; with order=version only the tags that are versions."""
    if order == "version":
        versioned = [(version_key(info.name), info) for info in infos]
        ranked = [(key, info) for key, info in versioned if key is not None]
        ranked.sort(key=lambda pair: (pair[0], pair[1].name), reverse=True)
        return [info for _key, info in ranked]
    known = [info for info in infos if info.created is not None]
    unknown = [info for info in infos if info.created is None]
    known.sort(key=lambda info: (info.created, info.name), reverse=True)
    unknown.sort(key=lambda info: info.name, reverse=True)
    return known + unknown


def select_by_policy(infos: list[TagInfo], keep_last: int | None, keep_patterns: list[t.Pattern[str]],
                     older_than: float | None, order: str, now: float) -> set[str]:
    """Names of the tags no retention rule keeps."""
    kept: set[str] = set()
    if keep_last is not None:
        kept.update(info.name for info in newest(infos, order)[:keep_last])
    for pattern in keep_patterns:
        kept.update(info.name for info in infos if pattern.fullmatch(info.name))
    if older_than is not None:
        cutoff = now - older_than
        kept.update(info.name for info in infos if info.created is None or info.created >= cutoff)
    return {info.name for info in infos} - kept


class Plan:
    def __init__(self, infos: list[TagInfo], doomed: set[str]) -> None:
        users: dict[str, list[str]] = {}
        via_index: dict[str, list[str]] = {}
        for info in infos:
            if info.name not in doomed:
                users.setdefault(info.digest, []).append(info.name)
                for child in info.children:
                    via_index.setdefault(child, []).append(info.name)
        self.delete: list[TagInfo] = []
        self.keep: list[TagInfo] = []
        self.protected: list[dict[str, t.Any]] = []
        for info in sorted(infos, key=lambda item: item.name):
            if info.name not in doomed:
                self.keep.append(info)
            elif info.digest in users or info.digest in via_index:
                kept_by = sorted(set(users.get(info.digest, []) + via_index.get(info.digest, [])))
                how = "is the digest of" if info.digest in users else "is a platform manifest of the index of"
                self.keep.append(info)
                self.protected.append({
                    "tag": info.name,
                    "digest": info.digest,
                    "kept_by": kept_by,
                    "reason": "not deleted: %s %s kept tag(s) %s, and deleting by digest would remove them too"
                              % (info.digest, how, ", ".join(kept_by)),
                })
            else:
                self.delete.append(info)

    @property
    def digests(self) -> list[str]:
        return sorted({info.digest for info in self.delete})


def subjects_in_use(infos: t.Iterable[TagInfo]) -> set[str]:
    """Digests that tags reach: their own and, for an index, its platform manifests."""
    return {digest for info in infos for digest in [info.digest, *info.children]}


class ArtifactPlan:
    """Which artifact tags go with the tags a ``Plan`` deletes.

    An artifact goes when its subject is a deleted digest, or a platform manifest of a deleted
    index that no kept tag still reaches. Artifacts of kept digests stay. Artifacts whose subject
    no tag reached before the run (orphans: signed by digest only, or left behind by an earlier
    deletion) are left alone and reported, unless ``delete_orphans`` (state=absent of a whole
    repository). Artifact tags never count as tags and never keep anything.
    """

    def __init__(self, infos: list[TagInfo], plan: Plan, found: t.Iterable[artifacts.ArtifactTag],
                 delete_orphans: bool = False, named: t.Iterable[str] = ()) -> None:
        present = subjects_in_use(infos)
        kept = subjects_in_use(plan.keep)
        gone = subjects_in_use(plan.delete) - kept
        explicit = set(named)
        self.delete: list[artifacts.ArtifactTag] = []
        self.orphans: list[artifacts.ArtifactTag] = []
        for artifact in sorted(found, key=lambda item: item.tag):
            if artifact.tag in explicit or artifact.subject in gone:
                self.delete.append(artifact)
            elif artifact.subject not in present:
                (self.delete if delete_orphans else self.orphans).append(artifact)
