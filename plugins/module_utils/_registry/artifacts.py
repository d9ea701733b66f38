# Private to the dockyard.registry collection: not a public API, may change at any time.
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tags that are not images but things attached to one: signatures, attestations, SBOMs.

Distribution 2.8 has no referrers API, so clients attach artifacts by tag name:

- cosign (and skopeo/podman with sigstore attachments): ``sha256-<hex>.sig``, ``.att`` and
  ``.sbom`` in the subject's repository, each an image manifest whose layers are the payloads;
- the OCI 1.1 referrers tag schema: ``sha256-<hex>``, an index whose entries are the
  (untagged) manifests that refer to the subject.

The subject is the digest spelled in the tag. Such tags are never images of their own:
retention does not count them, and they go (or stay) with their subject.
"""
from __future__ import annotations

import re
import typing as t

from .validation import DIGEST_HEX_LENGTHS

KINDS = {".sig": "signature", ".att": "attestation", ".sbom": "sbom", "": "referrers"}
_SUFFIX_OF_KIND = {kind: suffix for suffix, kind in KINDS.items()}
_ARTIFACT_TAG = re.compile(r"(sha256|sha384|sha512)-([0-9a-f]+)(\.sig|\.att|\.sbom)?")


class ArtifactTag(t.NamedTuple):
    tag: str
    subject: str
    kind: str


def parse(tag: str) -> ArtifactTag | None:
    """The artifact a tag name stands for, or None for an ordinary tag."""
    match = _ARTIFACT_TAG.fullmatch(tag)
    if not match:
        return None
    algorithm, encoded, suffix = match.group(1), match.group(2), match.group(3) or ""
    if len(encoded) != DIGEST_HEX_LENGTHS[algorithm]:
        return None
    return ArtifactTag(tag, "%s:%s" % (algorithm, encoded), KINDS[suffix])


def tag_for(subject: str, kind: str) -> str:
    """The tag name of an artifact of ``kind`` attached to the digest ``subject``."""
    algorithm, _colon, encoded = subject.partition(":")
    return "%s-%s%s" % (algorithm, encoded, _SUFFIX_OF_KIND[kind])


def split(tags: t.Iterable[str]) -> tuple[list[str], list[ArtifactTag]]:
    """Ordinary tags and artifact tags, each sorted by name."""
    images: list[str] = []
    artifacts: list[ArtifactTag] = []
    for tag in sorted(set(tags)):
        artifact = parse(tag)
        if artifact is None:
            images.append(tag)
        else:
            artifacts.append(artifact)
    return images, artifacts


def by_subject(artifacts: t.Iterable[ArtifactTag]) -> dict[str, list[ArtifactTag]]:
    """Artifact tags grouped by the digest they are attached to."""
    grouped: dict[str, list[ArtifactTag]] = {}
    for artifact in artifacts:
        grouped.setdefault(artifact.subject, []).append(artifact)
    return grouped


def attached_to(artifacts: t.Iterable[ArtifactTag], digests: t.Iterable[str]) -> list[ArtifactTag]:
    """The artifact tags whose subject is one of ``digests`` (an image, an index or its platforms)."""
    wanted = set(digests)
    return sorted((artifact for artifact in artifacts if artifact.subject in wanted), key=lambda item: item.tag)
