"""dockyard.registry.image_sync: plan, copy, incremental runs, checkpoint, deletions, artifacts, layouts."""
from __future__ import annotations

import json
import pathlib
import re
import typing as t

import pytest
from registry_fakes import OCI_INDEX, FakeRegistry, FakeResponse, digest_of, make_client, run_main

from ansible_collections.dockyard.registry.plugins.module_utils._registry import artifacts
from ansible_collections.dockyard.registry.plugins.module_utils._registry import transport as transport_module
from ansible_collections.dockyard.registry.plugins.module_utils._registry.client import DOCKER_MANIFEST
from ansible_collections.dockyard.registry.plugins.module_utils._registry.copy import RegistryStore, Store
from ansible_collections.dockyard.registry.plugins.module_utils._registry.layout import LayoutStore
from ansible_collections.dockyard.registry.plugins.module_utils._registry.replication import Checkpoint, Replicator
from ansible_collections.dockyard.registry.plugins.modules import image_sync

SOURCE = "http://source.test"
DESTINATION = "http://destination.test"
WRITES = ("PUT", "POST", "PATCH", "DELETE")


def store(fake: FakeRegistry, base: str, label: str, **auth: t.Any) -> RegistryStore:
    return RegistryStore(make_client(fake, base=base, **auth), label)


def replicate(source: FakeRegistry | Store, destination: FakeRegistry | Store, checkpoint: pathlib.Path | None = None,
              check_mode: bool = False, tags: t.Sequence[str] = (".*",), repositories: t.Sequence[str] = ("apps/.*",),
              **kwargs: t.Any) -> tuple[dict[str, t.Any], Replicator]:
    source_store = store(source, SOURCE, "source") if isinstance(source, FakeRegistry) else source
    destination_store = (store(destination, DESTINATION, "destination") if isinstance(destination, FakeRegistry)
                         else destination)
    state = Checkpoint(str(checkpoint) if checkpoint else None, source_store.identity, destination_store.identity,
                       enabled=not check_mode)
    replicator = Replicator(source_store, destination_store, list(repositories), [re.compile(tag) for tag in tags],
                            checkpoint=state, check_mode=check_mode, **kwargs)
    return replicator.run(), replicator


def tags_of(result: dict[str, t.Any], key: str = "copied") -> list[str]:
    return sorted("%s:%s" % (item["repository"], item["tag"]) for item in result[key])


@pytest.fixture()
def upstream() -> FakeRegistry:
    fake = FakeRegistry()
    fake.image("apps/web", "1.0", None, seed="web-1.0")
    fake.image("apps/web", "docker", None, seed="web-docker", media_type=DOCKER_MANIFEST)
    fake.index("apps/web", "multi", "2024-01-01T00:00:00Z", seed="web-multi")
    fake.image("apps/api", "1.0", None, seed="api-1.0")
    fake.image("other/db", "1.0", None, seed="db")
    return fake


def test_copies_images_and_indexes_byte_identical_children_first_tags_last(upstream: FakeRegistry) -> None:
    mirror = FakeRegistry()
    result, _replicator = replicate(upstream, mirror)
    assert tags_of(result) == ["apps/api:1.0", "apps/web:1.0", "apps/web:docker", "apps/web:multi"]
    assert result["failed_tags"] == [] and result["changed"] is True
    for repository in ("apps/web", "apps/api"):
        assert mirror.tag_links[repository] == upstream.tag_links[repository]
        assert mirror.manifests[repository] == upstream.manifests[repository]  # bytes and media types
        assert mirror.blob_links[repository] == upstream.blob_links[repository]
    assert "other/db" not in mirror.tag_links
    media = {item["tag"]: item["media_type"] for item in result["copied"]}
    assert media["docker"] == DOCKER_MANIFEST and media["multi"] == OCI_INDEX
    puts = [url.rsplit("/", 1)[1] for url in mirror.puts() if "/apps/web/" in url]
    assert puts.index("multi") > max(puts.index(child) for child in puts if child.startswith("sha256:"))
    assert result["blobs_sent"] == 10 and result["bytes_sent"] > 0  # 5 images x (config + layer)
    assert mirror.count("GET") == 0 or all("/tags/list" in url for m, url, _h in mirror.requests if m == "GET")


def test_a_second_run_with_a_checkpoint_costs_one_head_per_tag(upstream: FakeRegistry, tmp_path: pathlib.Path) -> None:
    mirror = FakeRegistry()
    checkpoint = tmp_path / "job.json"
    first, _replicator = replicate(upstream, mirror, checkpoint)
    assert len(first["copied"]) == 4 and json.loads(checkpoint.read_text())["repositories"]["apps/web"]["multi"][
        "children"]
    upstream.requests.clear()
    mirror.requests.clear()
    second, _replicator = replicate(upstream, mirror, checkpoint)
    assert second["copied"] == [] and second["unchanged"] == 4 and second["changed"] is False
    # one HEAD per tag, one tag list per repository and side, the catalog (for the pattern): 9 for 4 tags in
    # 2 repositories, and at most 2 per tag as soon as repositories have 2 tags or more
    assert second["requests"] == {"source": 4 + 2 + 1, "destination": 2}
    assert mirror.count("HEAD") == 0  # the destination is only asked for its tag lists
    # without a checkpoint each tag costs a HEAD on both sides: still nothing sent
    third, _replicator = replicate(upstream, mirror)
    assert third["unchanged"] == 4 and third["blobs_sent"] == 0 and mirror.count("HEAD", "/manifests/") == 4


def test_a_moved_tag_sends_only_the_new_blobs_and_shared_layers_are_mounted(upstream: FakeRegistry,
                                                                            tmp_path: pathlib.Path) -> None:
    mirror = FakeRegistry()
    replicate(upstream, mirror, tmp_path / "job.json")
    upstream.image("apps/web", "1.0", None, seed="web-1.1")  # 1.0 moves to a new image
    upstream.image("apps/web", "shared", None, seed="common")
    upstream.image("apps/api", "shared", None, seed="common")  # the same blobs in another repository
    result, _replicator = replicate(upstream, mirror, tmp_path / "job.json", workers=1)
    assert tags_of(result) == ["apps/api:shared", "apps/web:1.0", "apps/web:shared"]
    assert result["blobs_sent"] == 4 and result["blobs_mounted"] == 2  # common: sent once, mounted once
    assert mirror.count("POST", "mount=") == 2
    assert mirror.tag_links["apps/web"]["1.0"] == upstream.tag_links["apps/web"]["1.0"]


def test_blobs_the_destination_has_are_not_sent(upstream: FakeRegistry) -> None:
    mirror = FakeRegistry()
    mirror.image("apps/web", None, None, seed="web-1.0")  # the same blobs, untagged
    result, _replicator = replicate(upstream, mirror, repositories=["apps/web"], tags=["1.0"])
    assert tags_of(result) == ["apps/web:1.0"] and result["blobs_skipped"] == 2 and result["blobs_sent"] == 0


def test_an_interrupted_run_resumes_from_the_checkpoint(upstream: FakeRegistry, tmp_path: pathlib.Path) -> None:
    mirror = FakeRegistry()
    uploads = []

    def crash(method: str, url: str, _headers: dict[str, str]) -> FakeResponse | None:
        if method == "PUT" and "/blobs/uploads/" in url:
            uploads.append(url)
            if len(uploads) == 6:
                raise KeyboardInterrupt  # the controller dies in the middle of a blob upload
        return None

    mirror.before = crash
    with pytest.raises(KeyboardInterrupt):
        replicate(upstream, mirror, tmp_path / "job.json", workers=1)
    done = json.loads((tmp_path / "job.json").read_text())["repositories"]
    assert sorted("%s:%s" % (repo, tag) for repo, tags in done.items() for tag in tags) == [
        "apps/api:1.0", "apps/web:1.0"]
    assert mirror.tags("apps/web") == ["1.0"]  # the tag being copied is not there: no half image
    mirror.before = None
    mirror.requests.clear()
    result, _replicator = replicate(upstream, mirror, tmp_path / "job.json", workers=1)
    assert tags_of(result) == ["apps/web:docker", "apps/web:multi"] and result["unchanged"] == 2
    assert result["blobs_sent"] + result["blobs_skipped"] == 6  # docker: 2, multi: 2 x 2
    assert result["blobs_skipped"] >= 1  # what was uploaded before the crash is not sent again
    assert mirror.count("HEAD", "/manifests/1.0") == 0  # checkpointed tags cost no destination HEAD


def test_per_tag_errors_are_reported_and_the_other_tags_copied(upstream: FakeRegistry) -> None:
    mirror = FakeRegistry()

    def refuse(method: str, url: str, _headers: dict[str, str]) -> FakeResponse | None:
        if method == "PUT" and url.endswith("/apps/api/manifests/1.0"):
            return FakeRegistry.error(403, "DENIED", "requested access to the resource is denied")
        return None

    def missing(method: str, url: str, _headers: dict[str, str]) -> FakeResponse | None:
        if method == "GET" and url.endswith("/apps/web/manifests/docker"):
            return FakeRegistry.error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        return None

    mirror.before = refuse
    upstream.before = missing
    destination = store(mirror, DESTINATION, "destination", username="ci", password="pw")
    result, _replicator = replicate(upstream, destination)
    assert tags_of(result) == ["apps/web:1.0", "apps/web:multi"]
    messages = {item["tag"]: item["msg"] for item in result["failed_tags"]}
    assert messages["docker"] == ("apps/web:docker: source: GET /v2/apps/web/manifests/docker returned HTTP 404 "
                                  "MANIFEST_UNKNOWN: manifest unknown")
    assert messages["1.0"].startswith("apps/api:1.0: destination: PUT /v2/apps/api/manifests/1.0 returned HTTP 403")
    assert "user ci may not do this" in messages["1.0"]


def test_check_mode_lists_what_would_happen_and_writes_nothing(upstream: FakeRegistry,
                                                               tmp_path: pathlib.Path) -> None:
    mirror = FakeRegistry()
    mirror.image("apps/web", "old", None, seed="old")
    result, _replicator = replicate(upstream, mirror, tmp_path / "job.json", check_mode=True, delete=True)
    assert tags_of(result) == ["apps/api:1.0", "apps/web:1.0", "apps/web:docker", "apps/web:multi"]
    assert tags_of(result, "deleted") == ["apps/web:old"]
    assert {item["digest"] for item in result["copied"] if item["tag"] == "multi"} == {
        upstream.tag_links["apps/web"]["multi"]}
    assert not [request for request in mirror.requests if request[0] in WRITES]
    assert not [request for request in upstream.requests if request[0] in WRITES]
    assert not (tmp_path / "job.json").exists() and mirror.tags("apps/web") == ["old"]


def test_deletions_follow_the_source_within_the_selection_only(upstream: FakeRegistry) -> None:
    mirror = FakeRegistry()
    replicate(upstream, mirror)
    gone = mirror.image("apps/web", "gone", None, seed="gone")
    mirror.image("apps/web", "gone-sig", None, seed="sig")
    mirror.tag_links["apps/web"][artifacts.tag_for(gone, "signature")] = mirror.tag_links["apps/web"].pop("gone-sig")
    mirror.tag_links["apps/web"]["alias"] = upstream.tag_links["apps/web"]["1.0"]  # shares a kept digest
    mirror.image("apps/web", "nightly-1", None, seed="nightly")  # does not match tags: kept
    mirror.image("other/db", "stale", None, seed="stale")  # repository not selected: kept
    multi = json.loads(mirror.manifests["apps/web"][mirror.tag_links["apps/web"]["multi"]][0])
    kept_attestation = artifacts.tag_for(multi["manifests"][0]["digest"], "attestation")
    mirror.image("apps/web", kept_attestation, None, seed="att")  # its subject, a platform of multi, stays
    result, replicator = replicate(upstream, mirror, delete=True, tags=[r"\d.*", "docker", "multi", "alias", "gone"])
    assert tags_of(result, "deleted") == ["apps/web:gone", "apps/web:" + artifacts.tag_for(gone, "signature")]
    assert {"alias", "nightly-1", kept_attestation} <= set(mirror.tags("apps/web"))
    assert any("alias" in warning and "kept tag" in warning for warning in replicator.warnings)
    assert mirror.tags("other/db") == ["stale"] and result["failed_tags"] == []


def test_artifacts_follow_their_subject_only(upstream: FakeRegistry) -> None:
    web = upstream.tag_links["apps/web"]
    child = json.loads(upstream.manifests["apps/web"][web["multi"]][0])["manifests"][0]["digest"]
    for subject, kind, seed in ((web["1.0"], "signature", "sig-1.0"), (child, "attestation", "att-child"),
                                (web["docker"], "signature", "sig-docker")):
        upstream.image("apps/web", artifacts.tag_for(subject, kind), None, seed=seed)
    result, _replicator = replicate(upstream, FakeRegistry(), tags=["1.0", "multi"], repositories=["apps/web"])
    assert tags_of(result) == sorted(["apps/web:1.0", "apps/web:multi", "apps/web:" + artifacts.tag_for(
        web["1.0"], "signature"), "apps/web:" + artifacts.tag_for(child, "attestation")])
    without, _replicator = replicate(upstream, FakeRegistry(), tags=["1.0", "multi"], repositories=["apps/web"],
                                     copy_artifacts=False)
    assert tags_of(without) == ["apps/web:1.0", "apps/web:multi"]


def test_export_to_a_layout_and_import_keep_every_digest(upstream: FakeRegistry, tmp_path: pathlib.Path) -> None:
    export = LayoutStore(str(tmp_path / "export"), "destination")
    first, _replicator = replicate(upstream, export, repositories=["apps/web"])
    assert len(first["copied"]) == 3 and first["requests"]["destination"] == 0
    index = json.loads((tmp_path / "export/apps/web/index.json").read_text())
    names = {entry["annotations"]["org.opencontainers.image.ref.name"]: entry for entry in index["manifests"]}
    assert {name: entry["digest"] for name, entry in names.items()} == upstream.tag_links["apps/web"]
    assert names["docker"]["mediaType"] == DOCKER_MANIFEST
    assert (tmp_path / "export/apps/web/oci-layout").exists()
    again, _replicator = replicate(upstream, export, repositories=["apps/web"])
    assert again["copied"] == [] and again["blobs_sent"] == 0 and again["unchanged"] == 3

    isolated = FakeRegistry()
    imported, _replicator = replicate(LayoutStore(str(tmp_path / "export"), "source"), isolated,
                                      repositories=[".*"])
    assert len(imported["copied"]) == 3 and imported["requests"]["source"] == 0
    assert isolated.manifests["apps/web"] == upstream.manifests["apps/web"]
    assert isolated.tag_links["apps/web"] == upstream.tag_links["apps/web"]

    blob = next(iter(upstream.blob_links["apps/web"]))
    (tmp_path / "export/apps/web/blobs/sha256" / blob.partition(":")[2]).write_bytes(b"tampered")
    broken, _replicator = replicate(LayoutStore(str(tmp_path / "export"), "source"), FakeRegistry(),
                                    repositories=["apps/web"])
    assert broken["failed_tags"] and all("do not hash to" in item["msg"] for item in broken["failed_tags"])


@pytest.mark.parametrize("overrides, message", [
    ({"source": {"registry_url": "ftp://x"}}, "must be an http:// or https:// URL"),
    ({"tags": ["("]}, "tags: '\\(' is not a valid regular expression"),
    ({"source": {"registry_url": SOURCE, "path": "/srv"}}, "mutually exclusive: registry_url\\|path"),
    ({"source": {"path": "/nonexistent/export"}}, "is not a directory"),
    ({"destination": {"path": "/etc/hostname/export"}}, "cannot be written"),
])
def test_bad_input_fails_before_any_request(overrides: dict[str, t.Any], message: str, upstream: FakeRegistry,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    class FakeRequest:
        def __init__(self, **_kwargs: t.Any) -> None:
            self.open = upstream

    monkeypatch.setattr(transport_module, "Request", FakeRequest)
    args = dict({"source": {"registry_url": SOURCE}, "destination": {"registry_url": DESTINATION},
                 "repositories": ["apps/.*"]}, **overrides)
    result = run_main(image_sync.main, args, capsys)
    assert result["failed"] is True and re.search(message, result["msg"]), result["msg"]
    assert "Traceback" not in str(result.get("exception", "")) and upstream.requests == []


def test_main_fails_the_task_naming_each_failed_tag(upstream: FakeRegistry, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    class FakeRequest:
        def __init__(self, **_kwargs: t.Any) -> None:
            self.open = upstream

    monkeypatch.setattr(transport_module, "Request", FakeRequest)
    upstream.before = lambda method, url, _h: (FakeRegistry.error(404, "MANIFEST_UNKNOWN")
                                               if url.endswith("/manifests/docker") else None)
    result = run_main(image_sync.main, {"source": {"registry_url": SOURCE}, "destination": {"registry_url": SOURCE},
                                        "repositories": ["apps/web"]}, capsys)
    assert result["failed"] is True
    assert result["msg"] == "1 tag(s) failed: apps/web:docker: source: the tag disappeared during the run"
    assert [item["tag"] for item in result["failed_tags"]] == ["docker"] and result["unchanged"] == 2


def test_artifact_tags_stay_when_a_tag_of_their_repository_failed(upstream: FakeRegistry) -> None:
    mirror = FakeRegistry()
    replicate(upstream, mirror)
    orphan = artifacts.tag_for(digest_of(b"unknown"), "signature")
    mirror.image("apps/web", orphan, None, seed="orphan")
    mirror.image("apps/web", "gone", None, seed="gone")
    upstream.before = lambda method, url, _h: (FakeRegistry.error(403, "DENIED")
                                               if method == "HEAD" and url.endswith("/apps/web/manifests/1.0") else None)
    result, _replicator = replicate(upstream, mirror, delete=True)
    assert [item["tag"] for item in result["failed_tags"]] == ["1.0"]
    assert tags_of(result, "deleted") == ["apps/web:gone"]  # its subject may be what 1.0 points at now
    assert orphan in mirror.tags("apps/web")
    upstream.before = None
    again, _replicator = replicate(upstream, mirror, delete=True)
    assert tags_of(again, "deleted") == ["apps/web:" + orphan]
