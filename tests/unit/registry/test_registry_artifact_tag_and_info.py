"""Artifacts in repository_info (grouped under their subject) and in tag promotion (carried along)."""
from __future__ import annotations

import json

from registry_fakes import FakeRegistry, make_client
from test_registry_tag_and_info import promote

from ansible_collections.dockyard.registry.plugins.module_utils._registry.artifacts import tag_for
from ansible_collections.dockyard.registry.plugins.modules import repository_info


def platform_manifests(fake: FakeRegistry, repository: str, digest: str) -> list[str]:
    return [entry["digest"] for entry in json.loads(fake.manifests[repository][digest][0])["manifests"]]


def describe(fake: FakeRegistry, details: bool = True) -> dict:
    result = repository_info.describe(make_client(fake), {"repositories": ["apps/web"], "pattern": None,
                                                          "details": details})
    return result["repositories"][0]


def test_info_groups_artifacts_under_their_subject(fake: FakeRegistry) -> None:
    one = fake.image("apps/web", "1.0", "2024-01-01T00:00:00Z")
    fake.tag_links["apps/web"]["stable"] = one
    multi = fake.index("apps/web", "multi", "2024-02-01T00:00:00Z", "m")
    arm = platform_manifests(fake, "apps/web", multi)[1]
    sig = fake.attach("apps/web", one, "signature")
    sbom = fake.attach("apps/web", one, "sbom")
    referrers = fake.attach("apps/web", multi, "referrers")
    arm_sig = fake.attach("apps/web", arm, "signature")
    orphan_subject = fake.image("apps/web", None, None, seed="untagged")
    orphan = fake.attach("apps/web", orphan_subject, "attestation")

    repo = describe(fake)
    tags = {entry["name"]: entry for entry in repo["tags"]}
    assert sorted(tags) == ["1.0", "multi", "stable"]  # artifact tags are no tags of their own
    expected_one = [{"tag": tag_for(one, "sbom"), "kind": "sbom", "subject": one, "digest": sbom},
                    {"tag": tag_for(one, "signature"), "kind": "signature", "subject": one, "digest": sig}]
    assert tags["1.0"]["artifacts"] == tags["stable"]["artifacts"] == expected_one
    assert tags["multi"]["artifacts"] == sorted([
        {"tag": tag_for(multi, "referrers"), "kind": "referrers", "subject": multi, "digest": referrers},
        {"tag": tag_for(arm, "signature"), "kind": "signature", "subject": arm, "digest": arm_sig}],
        key=lambda entry: entry["tag"])  # sorted by tag name
    assert repo["orphan_artifacts"] == [{"tag": tag_for(orphan_subject, "attestation"), "kind": "attestation",
                                         "subject": orphan_subject, "digest": orphan}]


def test_info_without_details_lists_artifacts_by_name_only(fake: FakeRegistry) -> None:
    one = fake.image("apps/web", "1.0", None)
    fake.attach("apps/web", one, "signature")
    fake.requests.clear()
    repo = describe(fake, details=False)
    assert repo["tags"] == [{"name": "1.0"}]
    assert repo["artifacts"] == [{"tag": tag_for(one, "signature"), "kind": "signature", "subject": one}]
    assert fake.count("GET", "/manifests/") == 0


def signed_rc(fake: FakeRegistry) -> tuple[str, list[str]]:
    """staging/web:rc, an index whose index and arm64 manifest are signed, with an attestation; and a
    signature of another image that must stay behind."""
    index = fake.index("staging/web", "rc", "2024-01-01T00:00:00Z", "m")
    arm = platform_manifests(fake, "staging/web", index)[1]
    fake.attach("staging/web", index, "signature")
    fake.attach("staging/web", index, "attestation")
    fake.attach("staging/web", arm, "signature")
    other = fake.image("staging/web", "other", None, seed="other")
    fake.attach("staging/web", other, "signature")
    return index, sorted([tag_for(index, "signature"), tag_for(index, "attestation"), tag_for(arm, "signature")])


def test_promotion_carries_the_artifacts_byte_for_byte(fake: FakeRegistry) -> None:
    index, carried = signed_rc(fake)
    checked = promote(fake, check_mode=True, repository="apps/web", tag="1.0", source="rc",
                      source_repository="staging/web")
    assert sorted(entry["tag"] for entry in checked["copied_artifacts"]) == carried
    assert fake.puts() == []
    result = promote(fake, repository="apps/web", tag="1.0", source="rc", source_repository="staging/web")
    assert result["changed"] is True and result["copied_artifacts"] == checked["copied_artifacts"]
    assert sorted(tag for tag in fake.tags("apps/web") if tag != "1.0") == carried
    for tag in carried:
        source = fake.manifests["staging/web"][fake.tag_links["staging/web"][tag]]
        assert fake.manifests["apps/web"][fake.tag_links["apps/web"][tag]] == source
        for layer in json.loads(source[0])["layers"]:
            assert layer["digest"] in fake.blob_links["apps/web"]
    again = promote(fake, repository="apps/web", tag="1.0", source="rc", source_repository="staging/web")
    assert again["changed"] is False and again["copied_artifacts"] == []
    assert promote(fake, check_mode=True, repository="apps/web", tag="1.0", source="rc",
                   source_repository="staging/web")["changed"] is False
    assert index == fake.tag_links["apps/web"]["1.0"]


def test_promotion_brings_a_signature_made_after_it_and_can_be_turned_off(fake: FakeRegistry) -> None:
    image = fake.image("staging/web", "rc", None)
    assert promote(fake, repository="apps/web", tag="1.0", source="rc", source_repository="staging/web",
                   artifacts=True)["copied_artifacts"] == []
    fake.attach("staging/web", image, "signature")
    off = promote(fake, repository="apps/web", tag="1.0", source="rc", source_repository="staging/web",
                  artifacts=False)
    assert off["changed"] is False and tag_for(image, "signature") not in fake.tags("apps/web")
    on = promote(fake, repository="apps/web", tag="1.0", source="rc", source_repository="staging/web")
    assert on["changed"] is True and on["previous_digest"] == on["digest"] == image
    assert tag_for(image, "signature") in fake.tags("apps/web")


def test_promotion_never_overwrites_a_signature_made_in_the_target(fake: FakeRegistry) -> None:
    image = fake.image("staging/web", "rc", None)
    fake.attach("staging/web", image, "signature")
    promote(fake, repository="apps/web", tag="1.0", source="rc", source_repository="staging/web")
    # someone re-signs in the target: another manifest under the same tag name
    mine = fake.store("apps/web", tag_for(image, "signature"), json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": []}).encode(),
        "application/vnd.oci.image.manifest.v1+json")
    warnings: list[str] = []
    from ansible_collections.dockyard.registry.plugins.modules import tag as tag_module
    params = {"repository": "apps/web", "tag": "1.0", "source": "rc", "source_repository": "staging/web",
              "artifacts": True}
    result = tag_module.TagReconciler(make_client(fake), params, False, warnings.append).run()
    assert result["changed"] is False and fake.tag_links["apps/web"][tag_for(image, "signature")] == mine
    assert "left as it is" in warnings[0]
