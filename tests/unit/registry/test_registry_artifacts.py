"""Artifact tag names: which tags are signatures, attestations, SBOMs or referrers indexes."""
from __future__ import annotations

import pytest

from ansible_collections.dockyard.registry.plugins.module_utils._registry import artifacts

HEX = "ab" * 32
SUBJECT = "sha256:" + HEX


@pytest.mark.parametrize("tag, kind", [("sha256-%s.sig" % HEX, "signature"), ("sha256-%s.att" % HEX, "attestation"),
                                       ("sha256-%s.sbom" % HEX, "sbom"), ("sha256-%s" % HEX, "referrers")])
def test_artifact_tags_name_their_subject(tag: str, kind: str) -> None:
    assert artifacts.parse(tag) == artifacts.ArtifactTag(tag, SUBJECT, kind)
    assert artifacts.tag_for(SUBJECT, kind) == tag


@pytest.mark.parametrize("tag", ["latest", "sha256-%s.sig" % HEX[:-1], "sha256-%s.pem" % HEX, "md5-%s" % HEX,
                                 "sha256-%s.sig" % HEX.upper(), "sha512-%s.sig" % HEX, "x-sha256-%s" % HEX,
                                 "sha256-%s.sig.sig" % HEX])
def test_ordinary_tags_are_not_artifacts(tag: str) -> None:
    assert artifacts.parse(tag) is None


def test_sha512_subjects() -> None:
    tag = "sha512-%s.att" % ("cd" * 64)
    assert artifacts.parse(tag) == artifacts.ArtifactTag(tag, "sha512:" + "cd" * 64, "attestation")


def test_split_groups_and_selects_by_subject() -> None:
    other = "sha256:" + "ef" * 32
    tags = ["v1", "latest", "sha256-%s.sig" % HEX, "sha256-%s.att" % HEX, "sha256-%s.sig" % ("ef" * 32), "v1"]
    images, found = artifacts.split(tags)
    assert images == ["latest", "v1"]
    assert [item.tag for item in found] == sorted(tags[2:5])
    grouped = artifacts.by_subject(found)
    assert sorted(grouped) == sorted([SUBJECT, other])
    assert [item.kind for item in grouped[SUBJECT]] == ["attestation", "signature"]
    assert [item.tag for item in artifacts.attached_to(found, [other, "sha256:" + "00" * 32])] == [
        "sha256-%s.sig" % ("ef" * 32)]
