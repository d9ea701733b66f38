"""Cluster garbage collection (playbooks/gc.yml) while clients push through the load balancer."""
from __future__ import annotations

import json
import re
import shlex
import time

from conftest import ADMIN, CONTAINER, SWIFT_SECRET, bearer, name, record_figures

from registry_checks import REGISTRY, playbook, token

SWIFT = f"swift -A http://127.0.0.1:8080/auth/v1.0 -U dockyard:registry -K {SWIFT_SECRET}"
DROPIN = "/run/systemd/system/docker-registry.service.d/50-dockyard-gc-readonly.conf"
WORKLOAD = "gc"
REPOSITORY = "gc/loop"
# What a push refused during the read-only window may say: the registry's 405 while a
# node is read-only, HAProxy's 503 while both restart, a 5xx from a node.
REGISTRY_ERROR = re.compile(r"\b(405|50[0234])\b|Method Not Allowed|Service Unavailable|Bad Gateway|"
                            r"read-only", re.IGNORECASE)


def store_objects(swift) -> dict[str, list[str]]:
    """Every object of every container of the registry's Swift account, by container."""
    containers = swift.run(f"{SWIFT} list").stdout.split()
    assert CONTAINER in containers
    return {container: swift.run(f"{SWIFT} list {shlex.quote(container)}").stdout.split() for container in containers}


def blob_object(listing: list[str], digest: str) -> str:
    algorithm, hexdigest = digest.split(":")
    found = [entry for entry in listing if entry.endswith(f"/blobs/{algorithm}/{hexdigest[:2]}/{hexdigest}/data")]
    assert len(found) == 1, digest
    return found[0]


def segments_of(swift, obj: str) -> tuple[str, str] | None:
    """(container, prefix) of the segments a dynamic large object names, or None."""
    stat = swift.run(f"{SWIFT} stat {CONTAINER} {shlex.quote(obj)}").stdout
    match = re.search(r"^\s*Manifest:\s*(\S+?)/(\S+)\s*$", stat, re.MULTILINE)
    return (match[1], match[2]) if match else None


def delete_manifest(client, repository: str, digest: str) -> None:
    status, body = token(client, ADMIN, f"repository:{repository}:delete")
    assert status == 200, body
    status, _headers, _size = client.http(f"/v2/{repository}/manifests/{digest}", method="DELETE",
                                          extra=bearer(body["token"]))
    assert status == 202


def run_gc() -> tuple[object, float]:
    started = time.monotonic()
    result = playbook("-e", "dockyard_hosts=registry", "dockyard.registry.gc")
    return result, time.monotonic() - started


def assert_read_write(*nodes) -> None:
    for node in nodes:
        assert not node.host.file(DROPIN).exists
        assert "MAINTENANCE_READONLY" not in node.run(
            f"tr '\\0' '\\n' < /proc/{node.main_pid('docker-registry')}/environ").stdout
        node.push_image(f"gc/direct-{node.name}:1", tag="1", layers=1, seed=f"direct-{time.time_ns()}", creds=ADMIN)


def test_cluster_gc_while_pushes_run_through_the_load_balancer(client, node_a, node_b, swift):
    kept = client.push_image("gc/keep:1", tag="1", layers=2, seed="gc-cluster-keep", creds=ADMIN)
    doomed = client.push_image("gc/doomed:1", tag="1", layers=2, seed="gc-cluster-doomed", creds=ADMIN)
    manifest = json.loads(client.run(f"skopeo inspect --raw --creds {':'.join(ADMIN)} "
                                     f"docker://{REGISTRY}/gc/doomed:1").stdout)
    unique = [blob["digest"] for blob in manifest["layers"] + [manifest["config"]]] + [doomed]
    before = store_objects(swift)
    objects = [blob_object(before[CONTAINER], digest) for digest in unique]
    segments = [found for found in (segments_of(swift, obj) for obj in objects) if found]
    delete_manifest(client, "gc/doomed", doomed)

    client.start_workload(WORKLOAD, REPOSITORY, ADMIN)
    try:
        client.wait_until(f"test -s /tmp/{WORKLOAD}.log", attempts=300)
        result, duration = run_gc()
    finally:
        report = client.stop_workload(WORKLOAD, REPOSITORY, ADMIN)
    output = " ".join(result.stdout.split())
    assert result.returncode == 0, result.stdout[-4000:]
    assert name("node-a") in output and name("node-b") in output
    assert '"result": "ok"' in output or "result: ok" in output

    # Every push the clients saw succeed is there, blob for blob; every failure was the registry's.
    freed = re.findall(r'blobs_deleted"?:\s*(\d+)', result.stdout)
    record_figures("cluster gc", {"push": report["push"], "pull": report["pull"], "lost": len(report["lost"]),
                                  "errors": report["errors"], "blobs_deleted": [int(count) for count in freed],
                                  "playbook_seconds": round(duration, 1)})
    assert report["lost"] == [], report
    assert all(REGISTRY_ERROR.search(error) for error in report["errors"]), report["errors"]
    assert report["push"]["ok"] >= 1, report

    # The deleted image's own blobs are gone from the store, with their segments.
    after = store_objects(swift)
    assert not set(objects) & set(after[CONTAINER])
    for container, prefix in segments:
        assert not [entry for entry in after.get(container, []) if entry.startswith(prefix)], prefix
    assert client.inspect("gc/keep:1", creds=ADMIN)["Digest"] == kept
    assert_read_write(node_a, node_b)


def test_a_failed_step_stops_the_run_and_leaves_every_node_read_write(client, node_a, node_b, swift):
    digest = client.push_image("gc/failing:1", tag="1", layers=1, seed=f"gc-failing-{time.time_ns()}", creds=ADMIN)
    delete_manifest(client, "gc/failing", digest)
    garbage = blob_object(store_objects(swift)[CONTAINER], digest)
    # Node B's registry refuses to start read-only: its readonly step fails.
    breaker = "/run/systemd/system/docker-registry.service.d/10-molecule-no-readonly.conf"
    node_b.run(f"printf '[Service]\\nExecStartPre=/bin/sh -c \"! test -e {DROPIN}\"\\n' > {breaker} "
               "&& systemctl daemon-reload")
    try:
        result, _duration = run_gc()
    finally:
        node_b.run(f"rm -f {breaker} && systemctl daemon-reload")
    output = " ".join(result.stdout.split())
    assert result.returncode != 0
    assert f"readonly on {name('node-b')}: restart-read-only" in output, result.stdout[-4000:]
    assert "garbage collection stopped at" in output
    assert garbage in store_objects(swift)[CONTAINER]  # nothing was collected
    assert_read_write(node_a, node_b)
