"""Safe garbage collection on the running host: frees what is unreferenced, keeps every
tagged image intact, refuses writes while it runs, and restores service after."""
from __future__ import annotations

import json

import pytest

from registry_checks import PUSHER, READER, REGISTRY, STORE

GC = "/usr/local/sbin/dockyard-registry-gc"
PROBE_CONFIG = "/etc/dockyard/registry-gc-probe.json"
PUSH_STATUS = "/tmp/push-during-gc"

# Runs in place of the registry binary during the collection: before the real
# garbage-collect starts, it tries to start an upload through the gateway.
PROBE = f"""#!/bin/sh
case " $* " in
  *" garbage-collect "*" --dry-run "*|*" --dry-run "*) ;;
  *" garbage-collect "*)
    curl -s -o /dev/null -w '%{{http_code}}' -u {PUSHER[0]}:{PUSHER[1]} -X POST \\
      https://{REGISTRY}/v2/gc/during/blobs/uploads/ > {PUSH_STATUS} ;;
esac
exec /usr/bin/docker-registry "$@"
"""


@pytest.fixture
def probe_config(instance):
    instance.run(f"cat > /usr/local/bin/registry-gc-probe <<'EOF'\n{PROBE}EOF\nchmod 0755 /usr/local/bin/registry-gc-probe")
    settings = json.loads(instance.host.file("/etc/dockyard/registry-gc.json").content_string)
    settings["registry_binary"] = "/usr/local/bin/registry-gc-probe"
    instance.run(f"cat > {PROBE_CONFIG} <<'EOF'\n{json.dumps(settings)}\nEOF\nrm -f {PUSH_STATUS}")
    yield PROBE_CONFIG
    instance.run(f"rm -f {PROBE_CONFIG} /usr/local/bin/registry-gc-probe {PUSH_STATUS}")


def upload_stray_blob(instance, repository: str) -> str:
    """A blob pushed without any manifest: nothing references it."""
    instance.run("head -c 3000000 /dev/urandom > /tmp/stray.bin")
    digest = "sha256:" + instance.run("sha256sum /tmp/stray.bin").stdout.split()[0]
    status, headers, _size = instance.http(f"/v2/{repository}/blobs/uploads/", method="POST", creds=PUSHER)
    assert status == 202
    location = headers["location"].replace(f"https://{REGISTRY}", "")
    separator = "&" if "?" in location else "?"
    status, _headers, _size = instance.http(f"{location}{separator}digest={digest}", method="PUT", creds=PUSHER,
                                            extra="-H 'Content-Type: application/octet-stream' --data-binary @/tmp/stray.bin")
    assert status == 201
    return digest


def blob_file(digest: str) -> str:
    hexdigest = digest.split(":")[1]
    return f"{STORE}/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"


def run_gc(instance, *arguments: str, ok: bool = True):
    result = instance.run(f"{GC} --json {' '.join(arguments)}", ok=ok)
    return result, (json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else {})


def test_gc_frees_unreferenced_blobs_and_keeps_tagged_images(instance, probe_config):
    kept = instance.push_image("gc/keep:1", tag="1", layers=2, seed="gc-keep")
    stray = upload_stray_blob(instance, "gc/stray")
    assert instance.host.file(blob_file(stray)).exists
    manifest = instance.run(f"skopeo inspect --raw --creds {':'.join(READER)} docker://{REGISTRY}/gc/keep:1").stdout
    cached_blob = f"/v2/gc/keep/blobs/{json.loads(manifest)['layers'][0]['digest']}"
    instance.http(cached_blob, creds=READER)
    assert instance.http(cached_blob, creds=READER)[1]["x-cache-status"] == "HIT"

    result, report = run_gc(instance, "--config", probe_config)
    assert report["result"] == "ok" and report["changed"] is True, result.stdout
    assert report["blobs_deleted"] >= 1 and report["bytes_freed"] >= 3000000

    assert not instance.host.file(blob_file(stray)).exists
    # The gateway's cache was emptied (the first read after the collection misses).
    assert instance.http(cached_blob, creds=READER)[1]["x-cache-status"] == "MISS"
    assert instance.host.file(PUSH_STATUS).content_string.strip() == "405"
    assert not instance.host.file("/run/systemd/system/docker-registry.service.d/50-dockyard-gc-readonly.conf").exists
    assert instance.inspect("gc/keep:1")["Digest"] == kept
    instance.run(f"rm -rf /tmp/gc-pulled && skopeo copy -q --src-creds {':'.join(READER)} "
                 f"docker://{REGISTRY}/gc/keep:1 oci:/tmp/gc-pulled:1")
    for layer in json.loads(instance.run("skopeo inspect --raw oci:/tmp/gc-pulled:1").stdout)["layers"]:
        assert instance.run(f"sha256sum /tmp/gc-pulled/blobs/sha256/{layer['digest'][7:]}").stdout.startswith(layer["digest"][7:])
    # Read-write again: pushes work after the collection.
    instance.push_image("gc/after:1", tag="1", seed="gc-after")


def test_gc_with_nothing_to_collect_restarts_nothing(instance):
    run_gc(instance)
    pid = instance.main_pid("docker-registry")
    _result, report = run_gc(instance)
    assert report["changed"] is False and report["result"] == "ok"
    assert instance.main_pid("docker-registry") == pid


def test_delete_untagged_is_refused_while_the_store_holds_an_index(instance):
    layout = "/tmp/oci-gc-index"
    instance.run(f"rm -rf {layout} && oci-image {layout} --tag multi --platforms linux/amd64,linux/arm64 --seed gc-index")
    instance.run(f"skopeo copy -q --all --dest-creds {':'.join(PUSHER)} oci:{layout}:multi docker://{REGISTRY}/gc/index:multi")
    stray = upload_stray_blob(instance, "gc/index")
    pid = instance.main_pid("docker-registry")
    result, _report = run_gc(instance, "--delete-untagged", ok=False)
    assert result.rc == 1
    assert "index" in (result.stdout + result.stderr).lower()
    assert instance.host.file(blob_file(stray)).exists
    assert instance.main_pid("docker-registry") == pid
    instance.run(f"skopeo inspect --raw --creds {':'.join(READER)} docker://{REGISTRY}/gc/index:multi")
