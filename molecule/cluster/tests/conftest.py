from __future__ import annotations

import json
import os
import pathlib
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))

from registry_checks import (REGISTRY, Instance,  # noqa: E402  pylint: disable=wrong-import-position
                             instance_name as name, scenario_instance as _instance)

ADMIN = ("admin", "molecule-admin-secret")
BACKEND = "registry_nodes"
SWIFT_SECRET = "molecule-swift-secret"
CONTAINER = "dockyard-registry"
# Figures the checks measure (node loss, GC under load), one JSON line each, for the docs.
FIGURES = pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / ".build" / "reports" / "cluster.jsonl"


def via(node: str) -> str:
    """curl arguments that send a request for the cluster's name to one node."""
    return f"--connect-to {REGISTRY}:443:{name(node)}:443"


def bearer(jwt: str) -> str:
    return f"-H 'Authorization: Bearer {jwt}'"


def servers(balancer: Instance) -> dict[str, tuple[int, int]]:
    """Operational and administrative state of each node in HAProxy (2 = up; 8 = drain)."""
    out = balancer.run(f"echo 'show servers state {BACKEND}' | socat stdio /run/haproxy/admin.sock").stdout
    states = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 6 and fields[1] == BACKEND:
            states[fields[3]] = (int(fields[5]), int(fields[6]))
    return states


def wait_for_state(balancer: Instance, node: str, operational: int, seconds: int = 30) -> None:
    for _attempt in range(seconds):
        if servers(balancer)[name(node)][0] == operational:
            return
        time.sleep(1)
    raise AssertionError(f"{name(node)} never reached state {operational}: {servers(balancer)}")


def record_figures(check: str, figures: dict) -> None:
    """Keep what a check measured in .build/reports/cluster.jsonl and show it in the test log."""
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"check": check, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              **figures}) + "\n")
    print(check, json.dumps(figures))


@pytest.fixture(scope="session")
def client() -> Instance:
    """Reaches only the load balancer, under the cluster's name."""
    return _instance("client")


@pytest.fixture(scope="session")
def node_a() -> Instance:
    """On a node the cluster's name is the node itself."""
    return _instance("node-a")


@pytest.fixture(scope="session")
def node_b() -> Instance:
    return _instance("node-b")


@pytest.fixture(scope="session")
def swift() -> Instance:
    return _instance("swift")


@pytest.fixture(scope="session")
def balancer() -> Instance:
    return _instance("lb")
