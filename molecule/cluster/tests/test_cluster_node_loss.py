"""Node loss: clients keep working through the load balancer while a node's registry, then
the whole node, goes away and comes back."""
from __future__ import annotations

import subprocess

from conftest import ADMIN, name, record_figures, servers, wait_for_state

WORKLOAD = "node-loss"
REPOSITORY = "team-a/node-loss"
# Operations the workload must finish in each phase, so each phase sees real traffic.
OPERATIONS_PER_PHASE = 6


def wait_for_operations(client, count: int) -> int:
    """Wait until the workload has finished `count` more operations; the new total."""
    target = client.workload_count(WORKLOAD) + count
    client.wait_until(f"[ $(wc -l < /tmp/{WORKLOAD}.log) -ge {target} ]", attempts=1500)
    return target


def docker(*arguments: str) -> None:
    subprocess.run(["docker", *arguments], check=True, capture_output=True, timeout=120)


def test_clients_survive_the_loss_of_a_node(client, node_a, balancer):
    client.start_workload(WORKLOAD, REPOSITORY, ADMIN)
    try:
        wait_for_operations(client, OPERATIONS_PER_PHASE)
        node_a.run("systemctl stop docker-registry")
        wait_for_state(balancer, "node-a", 0)
        wait_for_operations(client, OPERATIONS_PER_PHASE)
        docker("stop", "--time", "5", name("node-a"))
        wait_for_operations(client, OPERATIONS_PER_PHASE)
        docker("start", name("node-a"))
        node_a.run("systemctl is-system-running --wait", ok=False)
        wait_for_state(balancer, "node-a", 2, seconds=90)
        back = client.workload_count(WORKLOAD)
        wait_for_operations(client, OPERATIONS_PER_PHASE)
    finally:
        report = client.stop_workload(WORKLOAD, REPOSITORY, ADMIN)
    record_figures("node loss", {key: report[key] for key in ("push", "pull", "outage_seconds", "errors")})

    assert report["push"]["ok"] >= OPERATIONS_PER_PHASE, report
    assert report["lost"] == [], report
    # Once the node is back in the pool, every operation succeeds, on either node.
    after = [line for line in client.run(f"tail -n +{back + 1} /tmp/{WORKLOAD}.log").stdout.splitlines() if line]
    assert after and all('"ok": true' in line for line in after), after
    assert servers(balancer) == {name("node-a"): (2, 0), name("node-b"): (2, 0)}
