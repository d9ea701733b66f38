"""dockyard.registry.image_sync between real docker-registry processes and OCI layout directories."""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import time
import typing as t

from conftest import ROOT, TOKEN_USERS, Images, Registry, days_ago, playbook_command

Run = t.Callable[..., t.Any]
REF_NAME = "org.opencontainers.image.ref.name"


def sync_vars(source: dict[str, t.Any], destination: dict[str, t.Any], **args: t.Any) -> dict[str, t.Any]:
    args.setdefault("repositories", ["sync/.*"])
    return {"module": "image_sync", "registry_url": "http://unused.invalid",
            "module_args": dict(args, source=source, destination=destination)}


def sync(playbook: Run, source: dict[str, t.Any], destination: dict[str, t.Any], *flags: str, **args: t.Any) -> t.Any:
    return playbook("module.yml", sync_vars(source, destination, **args), *flags)


def side(registry: Registry) -> dict[str, str]:
    return {"registry_url": registry.url}


def assert_same_manifests(source: Registry, destination: Registry, repository: str, tags: list[str]) -> None:
    """Every tag, and every platform manifest of an index, has the same bytes and media type on both sides."""
    for reference in tags:
        status, headers, body = source.manifest(repository, reference)
        assert status == 200, (reference, body)
        copied = destination.manifest(repository, reference)
        assert copied[0] == 200, (reference, copied[2])
        assert copied[2] == body and copied[1]["content-type"] == headers["content-type"]
        for child in json.loads(body).get("manifests", []):
            assert_same_manifests(source, destination, repository, [child["digest"]])


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the module may run in a session of its own)."""
    parents = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        children = [child for child, parent in parents.items() if parent == current]
        found.extend(children)
        queue.extend(children)
    return found


def skopeo_raw(reference: str) -> bytes:
    return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", reference],
                          capture_output=True, check=True).stdout


def cosign_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".sig"


def test_copies_oci_docker_and_index_then_only_what_is_new(images: Images, new_registry: t.Callable[[], Registry],
                                                           playbook: Run, tmp_path: pathlib.Path) -> None:
    source, destination = new_registry(), new_registry()
    oci = images.push(source, "img0", "sync/app", "oci")
    images.push(source, "img1", "sync/app", "docker", docker=True)
    images.push(source, "multi", "sync/app", "multi")
    images.push(source, "img2", "sync/app", cosign_tag(oci))  # a "signature" of the OCI image
    images.push(source, "img3", "sync/app", "skipped")
    images.push(source, "img4", "sync/app", cosign_tag(images.digests["img3"]))  # signs a tag not selected
    images.push(source, "img5", "sync/other", "x")
    checkpoint = tmp_path / "state" / "job.json"
    args = {"tags": ["oci", "docker", "multi", "new"], "checkpoint": str(checkpoint)}

    check = sync(playbook, side(source), side(destination), "--check", **args)
    assert check.returncode == 0, check.output
    assert [item["tag"] for item in check["copied"]] == ["docker", "multi", "oci", cosign_tag(oci)]
    assert destination.get("/v2/_catalog")[2] == b'{"repositories":[]}\n' and not checkpoint.exists()

    first = sync(playbook, side(source), side(destination), **args)
    assert first.returncode == 0, first.output
    copied = {item["tag"]: item for item in first["copied"]}
    assert sorted(copied) == ["docker", "multi", "oci", cosign_tag(oci)]
    assert copied["docker"]["media_type"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert copied["multi"]["media_type"] == "application/vnd.oci.image.index.v1+json"
    assert destination.tags("sync/app") == sorted(copied)
    assert destination.get("/v2/sync/other/tags/list")[0] == 404  # not selected
    assert_same_manifests(source, destination, "sync/app", sorted(copied))
    assert first["blobs_sent"] > 0 and first["failed_tags"] == []
    print("image_sync first run, 4 tags:", first["requests"], "blobs sent", first["blobs_sent"])

    second = sync(playbook, side(source), side(destination), **args)
    assert second.returncode == 0 and second["changed"] is False, second.output
    assert second["copied"] == [] and second["unchanged"] == 4 and second["blobs_sent"] == 0
    print("image_sync requests, second run, 4 tags:", second["requests"])
    assert sum(second["requests"].values()) <= 2 * 4

    images.push(source, "img6", "sync/app", "new")
    third = sync(playbook, side(source), side(destination), **args)
    assert [item["tag"] for item in third["copied"]] == ["new"]
    assert third["blobs_sent"] == 3  # its config and two layers, nothing else
    assert destination.digest("sync/app", "new") == images.digests["img6"]


def test_export_to_a_layout_and_import_elsewhere_keeps_every_digest(
        images: Images, new_registry: t.Callable[[], Registry], playbook: Run, tmp_path: pathlib.Path) -> None:
    source, isolated = new_registry(), new_registry()
    images.push(source, "multi", "sync/web", "multi")
    docker = images.push(source, "img1", "sync/web", "docker", docker=True)
    export = tmp_path / "export"

    out = sync(playbook, side(source), {"path": str(export)})
    assert out.returncode == 0, out.output
    layout = "oci:%s:multi" % (export / "sync" / "web")
    assert skopeo_raw(layout) == source.manifest("sync/web", "multi")[2]
    assert json.loads(subprocess.run(["skopeo", "inspect", layout], capture_output=True, check=True,
                                     text=True).stdout)["Digest"] == images.digests["multi"]
    # skopeo's oci: transport only lists OCI media types; the Docker manifest is kept as it is, by digest
    index = json.loads((export / "sync" / "web" / "index.json").read_text())
    entry = [item for item in index["manifests"] if item["annotations"][REF_NAME] == "docker"][0]
    assert entry["digest"] == docker
    assert (export / "sync/web/blobs/sha256" / docker.partition(":")[2]).read_bytes() == source.manifest(
        "sync/web", "docker")[2]
    again = sync(playbook, side(source), {"path": str(export)})
    assert again["copied"] == [] and again["blobs_sent"] == 0, again.output

    imported = sync(playbook, {"path": str(export)}, side(isolated), repositories=[".*"])
    assert imported.returncode == 0, imported.output
    assert sorted(item["tag"] for item in imported["copied"]) == ["docker", "multi"]
    assert_same_manifests(source, isolated, "sync/web", ["docker", "multi"])
    assert skopeo_raw("docker://%s/sync/web:multi" % isolated.host) == skopeo_raw(
        "oci:%s:multi" % (export / "sync" / "web"))


def test_a_broken_tag_is_reported_the_others_copied_and_the_next_run_resumes(
        images: Images, new_registry: t.Callable[[], Registry], playbook: Run) -> None:
    source, destination = new_registry(), new_registry()
    images.push(source, "img0", "sync/app", "good")
    images.push(source, "img4", "sync/app", "gone")
    assert sync(playbook, side(source), side(destination)).returncode == 0
    subprocess.run(["skopeo", "delete", "--tls-verify=false", "docker://%s/sync/app:gone" % source.host], check=True)
    subprocess.run(["skopeo", "delete", "--tls-verify=false", "docker://%s/sync/app:good" % destination.host],
                   check=True)  # the destination lost a tag: the run puts it back
    images.push(source, "img1", "sync/app", "later")
    images.push(source, "img5", "sync/app", "broken")
    # Break "broken" at the source: its first layer's bytes vanish from the storage (the links stay).
    layer = json.loads(source.manifest("sync/app", "broken")[2])["layers"][0]["digest"].partition(":")[2]
    data = source.storage / "docker/registry/v2/blobs/sha256" / layer[:2] / layer / "data"
    saved = data.read_bytes()
    data.unlink()

    failed = sync(playbook, side(source), side(destination), delete=True)
    assert failed["failed"] is True
    assert [item["tag"] for item in failed["failed_tags"]] == ["broken"]
    message = failed["failed_tags"][0]["msg"]
    assert message.startswith("sync/app:broken: source: ") and layer in message
    assert failed["msg"] == "1 tag(s) failed: " + message
    assert sorted(item["tag"] for item in failed["copied"]) == ["good", "later"]
    assert [item["tag"] for item in failed["deleted"]] == ["gone"]
    assert destination.tags("sync/app") == ["good", "later"]  # no tag for what is incomplete

    data.write_bytes(saved)
    resumed = sync(playbook, side(source), side(destination), delete=True)
    assert resumed.returncode == 0, resumed.output
    assert [item["tag"] for item in resumed["copied"]] == ["broken"] and resumed["unchanged"] == 2
    # what the failed run had sent already is not sent again
    assert resumed["blobs_sent"] + resumed["blobs_skipped"] == 3 and resumed["blobs_sent"] >= 1
    assert destination.digest("sync/app", "broken") == images.digests["img5"]


def test_bearer_on_both_sides_with_their_own_credentials(images: Images, new_registry: t.Callable[..., Registry],
                                                         token_service: t.Any, playbook: Run) -> None:
    plain = new_registry()
    first, second = new_registry(token_service.registry_auth()), new_registry(token_service.registry_auth())
    images.push(plain, "multi", "pub/app", "1.0")
    admin = {"username": "admin", "password": TOKEN_USERS["admin"]}
    reader = {"username": "reader", "password": TOKEN_USERS["reader"]}

    pushed = sync(playbook, side(plain), dict(side(first), **admin), repositories=["pub/app"])
    assert [item["tag"] for item in pushed["copied"]] == ["1.0"], pushed.output
    assert pushed["requests"]["destination"] > 0

    refused = sync(playbook, dict(side(first), **admin), dict(side(second), **reader), repositories=["pub/app"])
    assert refused["failed"] is True and refused["copied"] == []
    message = refused["failed_tags"][0]["msg"]
    assert message.startswith("pub/app:1.0: destination: ") and "user reader may not do this" in message, message

    copied = sync(playbook, dict(side(first), **admin), dict(side(second), **admin), repositories=["pub/app"])
    assert [item["digest"] for item in copied["copied"]] == [images.digests["multi"]], copied.output


def test_a_killed_run_resumes_where_it_stopped(images: Images, new_registry: t.Callable[..., Registry],
                                               playbook: Run, tmp_path: pathlib.Path) -> None:
    source, destination = new_registry(), new_registry()
    images.build("sync-big", days_ago(1), seed="big", layers=6, layer_size="6M")
    images.push(source, "sync-big", "sync/big", "1.0")
    args = {"workers": 1, "checkpoint": str(tmp_path / "job.json")}
    argv, env, _result = playbook_command("module.yml", sync_vars(side(source), side(destination), **args), tmp_path)
    process = subprocess.Popen(argv, env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    layers = destination.storage / "docker/registry/v2/repositories/sync/big/_layers/sha256"
    deadline = time.monotonic() + 120
    try:
        while process.poll() is None and time.monotonic() < deadline and not (layers.exists() and any(layers.iterdir())):
            time.sleep(0.02)
    finally:
        for pid in [process.pid] + descendants(process.pid):  # the controller, its workers, the module
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()
    sent_before = len(list(layers.iterdir()))
    assert 1 <= sent_before < 7 and destination.digest("sync/big", "1.0") is None  # no tag, some blobs

    resumed = sync(playbook, side(source), side(destination), **args)
    assert [item["tag"] for item in resumed["copied"]] == ["1.0"], resumed.output
    assert resumed["blobs_skipped"] >= sent_before and resumed["blobs_sent"] + resumed["blobs_skipped"] == 7
    assert destination.digest("sync/big", "1.0") == images.digests["sync-big"]
