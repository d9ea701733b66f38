"""Signatures, attestations, SBOMs and referrers indexes follow their image through retention."""
from __future__ import annotations

import json

from registry_fakes import FakeRegistry
from test_registry_repository import iso, run

from ansible_collections.dockyard.registry.plugins.module_utils._registry.artifacts import tag_for

REPO = "apps/web"


def signed(fake: FakeRegistry) -> dict[str, str]:
    """apps/web: v1..v4, 40/30/20/10 days old, each with a .sig and an .att."""
    digests = {}
    for number, age in enumerate([40, 30, 20, 10], start=1):
        digest = fake.image(REPO, "v%d" % number, iso(age), seed="v%d" % number)
        fake.attach(REPO, digest, "signature")
        fake.attach(REPO, digest, "attestation")
        digests["v%d" % number] = digest
    return digests


def artifact_tags(digest: str, kinds: tuple[str, ...] = ("attestation", "signature")) -> list[str]:
    return sorted(tag_for(digest, kind) for kind in kinds)


def test_keep_last_keeps_exactly_the_signatures_of_kept_images(fake: FakeRegistry) -> None:
    digests = signed(fake)
    signature_digests = {tag: digest for tag, digest in fake.tag_links[REPO].items() if tag.startswith("sha256-")}
    result, warnings = run(fake, keep_last=2)
    # Eight artifact tags in the repository: still only v3 and v4 are kept, not the 2 newest "tags".
    assert [entry["tag"] for entry in result["deleted"]] == ["v1", "v2"]
    expected = sorted(artifact_tags(digests["v3"]) + artifact_tags(digests["v4"]) + ["v3", "v4"])
    assert fake.tags(REPO) == result["tags"] == expected
    gone = artifact_tags(digests["v1"]) + artifact_tags(digests["v2"])
    assert sorted(entry["tag"] for entry in result["deleted_artifacts"]) == sorted(gone)
    for entry in result["deleted_artifacts"]:
        assert entry["subject"] in (digests["v1"], digests["v2"])
        assert entry["digest"] == signature_digests[entry["tag"]]
        assert entry["kind"] in ("signature", "attestation")
    # deleted by their own manifest digests: one DELETE per image and per artifact
    assert fake.count("DELETE") == 6
    assert sorted(result["deleted_digests"]) == sorted(
        [digests["v1"], digests["v2"]] + [signature_digests[tag] for tag in gone])
    assert result["orphan_artifacts"] == [] and warnings == []


def test_check_mode_reports_what_the_real_run_deletes(fake: FakeRegistry) -> None:
    signed(fake)
    before = fake.tags(REPO)
    checked, _warnings = run(fake, check_mode=True, keep_last=2)
    assert fake.count("DELETE") == 0 and fake.tags(REPO) == before
    assert checked["changed"] is True
    real, _warnings = run(fake, keep_last=2)
    for key in ("deleted", "deleted_artifacts", "deleted_digests", "orphan_artifacts", "tags", "diff"):
        assert checked[key] == real[key], key
    again, _warnings = run(fake, keep_last=2)
    assert again["changed"] is False and again["deleted_artifacts"] == []


def test_artifacts_are_never_candidates_and_never_protect(fake: FakeRegistry) -> None:
    digests = signed(fake)
    # keep_patterns matching the artifact tags' names keeps no image; older_than ignores them too
    result, _warnings = run(fake, keep_last=1, keep_patterns=["sha256-.*"], check_mode=True)
    assert [entry["tag"] for entry in result["deleted"]] == ["v1", "v2", "v3"]
    assert result["protected"] == []
    assert sorted(result["tags"]) == sorted(["v4"] + artifact_tags(digests["v4"]))


def test_a_digest_shared_with_a_kept_tag_keeps_its_signature(fake: FakeRegistry) -> None:
    digests = signed(fake)
    fake.tag_links[REPO]["stable"] = digests["v1"]
    result, warnings = run(fake, keep_last=2, keep_patterns=["stable"])
    assert [entry["tag"] for entry in result["protected"]] == ["v1"]
    assert [entry["tag"] for entry in result["deleted"]] == ["v2"]
    assert set(artifact_tags(digests["v1"])) <= set(fake.tags(REPO))
    assert not set(artifact_tags(digests["v2"])) & set(fake.tags(REPO))
    assert len(warnings) == 1


def test_orphans_are_left_alone_and_reported(fake: FakeRegistry) -> None:
    digests = signed(fake)
    untagged = fake.image(REPO, None, iso(50), seed="by-digest-only")
    fake.attach(REPO, untagged, "signature")
    fake.tag_links[REPO][tag_for("sha256:" + "0" * 64, "sbom")] = digests["v4"]  # subject never pushed
    result, _warnings = run(fake, keep_last=2)
    orphans = sorted(entry["tag"] for entry in result["orphan_artifacts"])
    assert orphans == sorted([tag_for(untagged, "signature"), tag_for("sha256:" + "0" * 64, "sbom")])
    assert set(orphans) <= set(fake.tags(REPO))
    assert all(entry["tag"] not in orphans for entry in result["deleted_artifacts"])


def test_absent_without_tags_deletes_artifacts_and_orphans(fake: FakeRegistry) -> None:
    signed(fake)
    untagged = fake.image(REPO, None, iso(50), seed="by-digest-only")
    fake.attach(REPO, untagged, "signature")
    result, _warnings = run(fake, state="absent")
    assert fake.tags(REPO) == [] == result["tags"]
    assert len(result["deleted_artifacts"]) == 9 and result["orphan_artifacts"] == []


def test_absent_with_tags_takes_the_tags_artifacts_and_listed_artifact_tags(fake: FakeRegistry) -> None:
    digests = signed(fake)
    result, _warnings = run(fake, state="absent", tags=["v2", tag_for(digests["v3"], "attestation")])
    assert sorted(entry["tag"] for entry in result["deleted_artifacts"]) == sorted(
        artifact_tags(digests["v2"]) + [tag_for(digests["v3"], "attestation")])
    assert tag_for(digests["v3"], "signature") in fake.tags(REPO) and "v3" in fake.tags(REPO)


def children(fake: FakeRegistry, repository: str, tag: str) -> list[str]:
    body = fake.manifests[repository][fake.tag_links[repository][tag]][0]
    return [entry["digest"] for entry in json.loads(body)["manifests"]]


def test_index_subject_with_signed_children_and_referrers(fake: FakeRegistry) -> None:
    old = fake.index(REPO, "multi-1", iso(30), "one")
    new = fake.index(REPO, "multi-2", iso(5), "two")
    old_children = children(fake, REPO, "multi-1")
    for digest in [old, new, *old_children, *children(fake, REPO, "multi-2")]:
        fake.attach(REPO, digest, "signature")
    fake.attach(REPO, old, "referrers")
    referrer = children(fake, REPO, tag_for(old, "referrers"))[0]
    # amd64 of the old index is also tagged on its own, and that tag is kept: its signature stays
    fake.tag_links[REPO]["amd64-pinned"] = old_children[0]
    result, _warnings = run(fake, keep_last=1, keep_patterns=["amd64-pinned"])
    assert [entry["tag"] for entry in result["deleted"]] == ["multi-1"]
    deleted = {entry["tag"]: entry for entry in result["deleted_artifacts"]}
    assert sorted(deleted) == sorted([tag_for(old, "signature"), tag_for(old, "referrers"),
                                      tag_for(old_children[1], "signature")])
    assert deleted[tag_for(old, "referrers")]["referrers"] == [referrer]
    assert referrer in result["deleted_digests"] and referrer not in fake.manifests[REPO]
    assert tag_for(old_children[0], "signature") in fake.tags(REPO)
    assert all(tag_for(digest, "signature") in fake.tags(REPO) for digest in [new, *children(fake, REPO, "multi-2")])
