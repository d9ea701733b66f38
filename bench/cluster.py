"""Throughput of a Dockyard cluster, as ratios measured side by side in one run.

Runs against the instances of the Molecule ``cluster`` scenario (converged, not destroyed):

    DOCKYARD_INSTANCE_SUFFIX=-bench .venv/bin/molecule converge -s cluster
    DOCKYARD_INSTANCE_SUFFIX=-bench .venv/bin/python bench/cluster.py [--rounds 3] [--layer-size 48M]
    DOCKYARD_INSTANCE_SUFFIX=-bench .venv/bin/molecule destroy -s cluster

1. **One node or two behind the load balancer.** From the client instance, 4 pushes at once
   (skopeo, each a new image of one ``--layer-size`` layer) through HAProxy, then 4 pulls at
   once of those images; with both nodes in the pool, and with node B set to ``maint`` through
   HAProxy's runtime API (so the same HAProxy sends everything to node A).
2. **Storage on one node.** On node A, three extra Distribution 2.8 processes on loopback (no
   gateway, no auth), each on its own storage: ``filesystem``, ``swift`` (the native driver on
   the scenario's Swift) and ``s3`` (the s3 driver through Swift's s3api middleware, default
   chunk size); one push and one pull of a new image each. After the rounds, the data each
   object-store driver leaves behind once the images are deleted and garbage-collected is
   counted through Swift's own API (objects and bytes in the container and its segments
   container).

Each round measures every setup once, in a rotating order; a ratio is taken within a round
(paired: the machine's speed drifts less within a round) and the median of the rounds is
printed, with min and max. Every instance shares this machine's cores: what one more node
adds is limited by them, and this script says so rather than hiding it.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

SUFFIX = os.environ.get("DOCKYARD_INSTANCE_SUFFIX", "")
REGISTRY = "registry.dockyard.test"
ADMIN = "admin:molecule-admin-secret"
SWIFT_AUTH = "-A http://127.0.0.1:8080/auth/v1.0 -U dockyard:registry -K molecule-swift-secret"
BACKEND = "registry_nodes"
CONCURRENCY = 4
LOCAL_PORTS = {"filesystem": 5101, "swift": 5102, "s3": 5103}


def instance(role: str) -> str:
    return f"dockyard-{role}{SUFFIX}"


def sh(role: str, script: str, check: bool = True) -> str:
    result = subprocess.run(["docker", "exec", instance(role), "sh", "-c", script], capture_output=True, text=True,
                            timeout=1800, check=False)
    if check and result.returncode != 0:
        raise SystemExit(f"{instance(role)}: {script[:200]!r} failed ({result.returncode}): {result.stderr[-800:]}")
    return result.stdout


def timed(role: str, script: str) -> float:
    start = time.monotonic()
    sh(role, script)
    return time.monotonic() - start


def make_images(role: str, prefix: str, count: int, layer_size: str) -> None:
    """New images (untimed): one big layer each, a new seed every time, so every blob is new."""
    seed = time.time_ns()
    sh(role, " && ".join(f"rm -rf /var/tmp/{prefix}{n} && oci-image /var/tmp/{prefix}{n} --tag 1 --layers 0 "
                         f"--big-layer {layer_size} --seed {seed}-{n} >/dev/null" for n in range(count)))


def parallel(commands: list[str]) -> str:
    return " ".join(f"( {command} ) &" for command in commands) + " wait"


def set_node_b(state: str) -> None:
    sh("lb", f"echo 'set server {BACKEND}/{instance('node-b')} state {state}' | socat stdio /run/haproxy/admin.sock")


def balancer_round(nodes: int, layer_size: str, round_number: int) -> dict[str, float]:
    """Seconds for 4 concurrent pushes and 4 concurrent pulls through the load balancer."""
    set_node_b("ready" if nodes == 2 else "maint")
    time.sleep(1)
    make_images("client", "bench-lb-", CONCURRENCY, layer_size)
    repository = f"bench/lb{nodes}-r{round_number}"
    push = timed("client", parallel([
        f"skopeo copy -q --dest-creds {ADMIN} oci:/var/tmp/bench-lb-{n}:1 docker://{REGISTRY}/{repository}-{n}:1"
        for n in range(CONCURRENCY)]))
    pull = timed("client", parallel([
        f"rm -rf /var/tmp/bench-pull-{n} && skopeo copy -q --src-creds {ADMIN} "
        f"docker://{REGISTRY}/{repository}-{n}:1 oci:/var/tmp/bench-pull-{n}:1" for n in range(CONCURRENCY)]))
    return {"push": push, "pull": pull}


def local_config(driver: str, port: int, swift_host: str) -> str:
    storage = {
        "filesystem": {"filesystem": {"rootdirectory": "/var/tmp/bench-filesystem"}},
        "swift": {"swift": {"authurl": f"http://{swift_host}:8080/auth/v1.0", "username": "dockyard:registry",
                            "password": "molecule-swift-secret", "container": "bench-swift"}},
        "s3": {"s3": {"accesskey": "dockyard:registry", "secretkey": "molecule-swift-secret", "region": "us-east-1",
                      "regionendpoint": f"http://{swift_host}:8080", "bucket": "bench-s3"}},
    }[driver]
    storage.update({"delete": {"enabled": True}, "redirect": {"disable": True}})
    return json.dumps({"version": 0.1, "log": {"level": "error"}, "storage": storage,
                       "http": {"addr": f"127.0.0.1:{port}", "secret": "bench-only"}})


def start_local_registries() -> None:
    sh("swift", f"swift {SWIFT_AUTH} post bench-s3")  # the s3 driver does not create its bucket
    for driver, port in LOCAL_PORTS.items():
        config = shlex.quote(local_config(driver, port, instance("swift")))
        sh("node-a", f"echo {config} > /var/tmp/bench-{driver}.yml && "
                     f"(nohup docker-registry serve /var/tmp/bench-{driver}.yml > /var/tmp/bench-{driver}.log 2>&1 &)"
                     f" && for i in $(seq 50); do curl -sf http://127.0.0.1:{port}/v2/ >/dev/null && exit 0; "
                     f"sleep 0.2; done; cat /var/tmp/bench-{driver}.log; exit 1")


def stop_local_registries() -> None:
    sh("node-a", "pkill -f 'docker-registry serve /var/tmp/bench-' || true", check=False)


def storage_round(driver: str, layer_size: str, round_number: int) -> dict[str, float]:
    make_images("node-a", f"bench-{driver}-", 1, layer_size)
    target = f"docker://127.0.0.1:{LOCAL_PORTS[driver]}/bench/{driver}:r{round_number}"
    push = timed("node-a", f"skopeo copy -q --dest-tls-verify=false oci:/var/tmp/bench-{driver}-0:1 {target}")
    pull = timed("node-a", f"rm -rf /var/tmp/bench-{driver}-pulled && skopeo copy -q --src-tls-verify=false "
                           f"{target} oci:/var/tmp/bench-{driver}-pulled:1")
    return {"push": push, "pull": pull}


def store_usage(container: str) -> dict[str, int]:
    """Objects and bytes in a Swift container and its segments container (0 when absent)."""
    usage = {"objects": 0, "bytes": 0}
    for name in (container, f"{container}+segments", f"{container}_segments"):
        out = sh("swift", f"swift {SWIFT_AUTH} stat {name} 2>/dev/null", check=False)
        for line in out.splitlines():
            key, _sep, value = line.strip().partition(":")
            if key == "Objects":
                usage["objects"] += int(value)
            elif key == "Bytes":
                usage["bytes"] += int(value)
    return usage


def collect_garbage(driver: str, rounds: int) -> dict[str, int]:
    """Delete every benchmark image of a driver, garbage-collect, and count what stays in the store."""
    port = LOCAL_PORTS[driver]
    for round_number in range(rounds):
        digest = sh("node-a", f"skopeo inspect --tls-verify=false --format '{{{{.Digest}}}}' "
                              f"docker://127.0.0.1:{port}/bench/{driver}:r{round_number}").strip()
        sh("node-a", f"curl -sf -X DELETE http://127.0.0.1:{port}/v2/bench/{driver}/manifests/{digest}")
    sh("node-a", f"docker-registry garbage-collect --delete-untagged /var/tmp/bench-{driver}.yml >/dev/null")
    return store_usage({"swift": "bench-swift", "s3": "bench-s3"}[driver])


def ratios(samples: list[dict[str, float]], numerator: str, denominator: str, size_mib: float) -> dict[str, dict]:
    """Throughput ratio numerator/denominator (time of denominator / time of numerator), per round."""
    result = {}
    for operation in ("push", "pull"):
        values = [sample[denominator][operation] / sample[numerator][operation] for sample in samples]
        speeds = [size_mib / sample[numerator][operation] for sample in samples]
        result[operation] = {"median": statistics.median(values), "min": min(values), "max": max(values),
                             f"{numerator} MiB/s": statistics.median(speeds)}
    return result


def mebibytes(size: str) -> float:
    units = {"K": 1 / 1024, "M": 1, "G": 1024}
    return float(size[:-1]) * units[size[-1].upper()] if size[-1].upper() in units else float(size) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layer-size", default="48M", help="size of each image's one layer (default 48M)")
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    size = mebibytes(arguments.layer_size)

    balancer, storage = [], []
    start_local_registries()
    try:
        for round_number in range(arguments.rounds):
            order = [1, 2] if round_number % 2 == 0 else [2, 1]
            balancer.append({f"{nodes} node{'s' if nodes > 1 else ''}": balancer_round(
                nodes, arguments.layer_size, round_number) for nodes in order})
            drivers = list(LOCAL_PORTS)[round_number % 3:] + list(LOCAL_PORTS)[:round_number % 3]
            storage.append({driver: storage_round(driver, arguments.layer_size, round_number) for driver in drivers})
        leftovers = {driver: collect_garbage(driver, arguments.rounds) for driver in ("swift", "s3")}
    finally:
        set_node_b("ready")
        stop_local_registries()

    report = {
        "layer MiB": size, "rounds": arguments.rounds,
        "2 nodes / 1 node (4 at once, MiB/s of all 4)": ratios(
            [{key: {op: seconds / CONCURRENCY for op, seconds in value.items()} for key, value in sample.items()}
             for sample in balancer], "2 nodes", "1 node", size),
        "swift / filesystem": ratios(storage, "swift", "filesystem", size),
        "s3 / filesystem": ratios(storage, "s3", "filesystem", size),
        "s3 / swift": ratios(storage, "s3", "swift", size),
        "left in the store after delete + garbage-collect": leftovers,
    }
    if arguments.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return
    for title, value in report.items():
        if isinstance(value, dict) and "push" in value:
            for operation, figures in value.items():
                speed = next(f"{key} {number:.1f}" for key, number in figures.items() if key.endswith("MiB/s"))
                print(f"{title:48} {operation}: ratio {figures['median']:.2f} "
                      f"(min {figures['min']:.2f}, max {figures['max']:.2f}); {speed}")
        else:
            print(f"{title}: {json.dumps(value)}")


if __name__ == "__main__":
    main()
