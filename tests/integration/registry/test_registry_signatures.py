"""Signatures made by a real client follow their image: retention and promotion on a real registry.

skopeo signs with a sigstore key (tools/sigstore.py) and stores the signature as the
``sha256-<hex>.sig`` tag (use-sigstore-attachments); verification is a pull with a policy.json
``sigstoreSigned`` requirement. Attestations, SBOMs and referrers indexes are built to their
published formats (tools/oci_image.py) and pushed over HTTP.
"""
from __future__ import annotations

import typing as t

import pytest
from conftest import Images, Registry, Sigstore, days_ago

Run = t.Callable[..., t.Any]


def module(playbook: Run, registry: Registry, module_name: str, *flags: str, **args: t.Any) -> t.Any:
    result = playbook("module.yml", {"module": module_name, "module_args": args, "registry_url": registry.url}, *flags)
    assert result.returncode == 0, result.output
    return result


def artifact_tag(digest: str, suffix: str) -> str:
    return digest.replace(":", "-") + suffix


@pytest.fixture()
def signed_repo(registry: Registry, images: Images, signer: Sigstore) -> dict[str, str]:
    """sig/app:v1..v4 (40, 30, 20, 10 days old), each signed by skopeo, each with an attestation;
    SBOMs on v1 and v4, referrers indexes on v2 and v3."""
    digests = {}
    for number, age in enumerate([40, 30, 20, 10], start=1):
        name = "signed%d" % number
        digests["v%d" % number] = images.build(name, days_ago(age), seed="signatures")
        signer.sign("oci:%s:%s" % (images.root / name, name), "docker://%s/sig/app:v%d" % (registry.host, number))
        registry.attach("sig/app", "v%d" % number, "attestation")
    for number, kind in [(1, "sbom"), (4, "sbom"), (2, "referrers"), (3, "referrers")]:
        registry.attach("sig/app", "v%d" % number, kind)
    return digests


def test_retention_keeps_exactly_the_signatures_of_kept_images(registry: Registry, images: Images,
                                                               signer: Sigstore, signed_repo: dict[str, str],
                                                               playbook: Run) -> None:
    digests = signed_repo
    scope = "%s/sig/app" % registry.host
    before = registry.tags("sig/app")
    assert artifact_tag(digests["v1"], ".sig") in before  # skopeo stored the signature by tag
    assert signer.verify("docker://%s:v1" % scope, scope).returncode == 0

    info = module(playbook, registry, "repository_info", repositories=["sig/app"])["repositories"][0]
    assert [tag["name"] for tag in info["tags"]] == ["v1", "v2", "v3", "v4"]
    v1 = next(tag for tag in info["tags"] if tag["name"] == "v1")
    assert sorted(entry["kind"] for entry in v1["artifacts"]) == ["attestation", "sbom", "signature"]

    checked = module(playbook, registry, "repository", "--check", name="sig/app", keep_last=2)
    assert registry.tags("sig/app") == before
    real = module(playbook, registry, "repository", name="sig/app", keep_last=2)
    for key in ("deleted", "deleted_artifacts", "deleted_digests", "tags"):
        assert checked[key] == real[key], key
    assert [entry["tag"] for entry in real["deleted"]] == ["v1", "v2"]

    kept = {"v3", "v4", artifact_tag(digests["v4"], ".sbom"), artifact_tag(digests["v3"], "")} | {
        artifact_tag(digests[tag], suffix) for tag in ("v3", "v4") for suffix in (".sig", ".att")}
    assert registry.tags("sig/app") == sorted(kept) == real["tags"]
    gone = {artifact_tag(digests["v1"], suffix) for suffix in (".sig", ".att", ".sbom")} | {
        artifact_tag(digests["v2"], suffix) for suffix in (".sig", ".att", "")}
    assert {entry["tag"] for entry in real["deleted_artifacts"]} == gone
    assert {entry["subject"] for entry in real["deleted_artifacts"]} == {digests["v1"], digests["v2"]}

    # the kept images still verify; v1 pushed again (same digest, its signature deleted) does not
    for tag in ("v3", "v4"):
        done = signer.verify("docker://%s:%s" % (scope, tag), scope)
        assert done.returncode == 0, done.stderr
    assert images.push(registry, "signed1", "sig/app", "v1") == digests["v1"]
    refused = signer.verify("docker://%s:v1" % scope, scope)
    assert refused.returncode != 0 and "signature" in refused.stderr.lower()

    again = module(playbook, registry, "repository", name="sig/app", keep_last=3)
    assert again["changed"] is False and again["deleted_artifacts"] == []


def test_promotion_carries_the_signature_and_verifies_in_the_target(registry: Registry, images: Images,
                                                                    signer: Sigstore, playbook: Run) -> None:
    digest = images.build("promoted", days_ago(1), seed="promotion")
    signer.sign("oci:%s:promoted" % (images.root / "promoted"), "docker://%s/stage/app:rc" % registry.host)
    registry.attach("stage/app", "rc", "attestation")
    images.push(registry, "img2", "stage/app", "unsigned")

    args = {"repository": "prod/app", "tag": "rc", "source_repository": "stage/app", "source": "rc"}
    checked = module(playbook, registry, "tag", "--check", **args)
    assert sorted(entry["tag"] for entry in checked["copied_artifacts"]) == sorted(
        artifact_tag(digest, suffix) for suffix in (".att", ".sig"))
    promoted = module(playbook, registry, "tag", **args)
    assert promoted["changed"] is True and promoted["copied_artifacts"] == checked["copied_artifacts"]
    assert registry.tags("prod/app") == sorted(["rc", artifact_tag(digest, ".att"), artifact_tag(digest, ".sig")])
    assert registry.digest("prod/app", artifact_tag(digest, ".sig")) == registry.digest(
        "stage/app", artifact_tag(digest, ".sig"))
    assert module(playbook, registry, "tag", **args)["changed"] is False

    # The signature names stage/app:rc; a policy that maps prod/app onto stage/app accepts it there.
    prod, stage = "%s/prod/app" % registry.host, "%s/stage/app" % registry.host
    identity = {"type": "remapIdentity", "prefix": prod, "signedPrefix": stage}
    done = signer.verify("docker://%s:rc" % prod, prod, identity)
    assert done.returncode == 0, done.stderr
    module(playbook, registry, "tag", repository="prod/app", tag="unsigned", source_repository="stage/app",
           source="unsigned")
    assert signer.verify("docker://%s:unsigned" % prod, prod, identity).returncode != 0
