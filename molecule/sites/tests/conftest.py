"""The sites scenario's instances: an upstream Dockyard host, its pull-through mirror, a
replica and a client.

upstream.dockyard.test (Debian 13) sends webhooks to the client; mirror.dockyard.test
(Debian 12) mirrors it with the pull-only user mirror-puller, behind the firewall's egress
allowlist (the upstream's gateway, and port 8444 of the upstream host, a rogue upstream);
replica.dockyard.test (Debian 13) is a normal host that pulls apps/web from the upstream
with the replication role's service (tests/test_replication.py). The client records requests in
/var/log/sites-webhook.jsonl (port 8080, the webhook receiver) and
/var/log/sites-realm.jsonl (port 8443, a rogue token realm); the upstream host records them
in /var/log/sites-rogue.jsonl (port 8444, a rogue upstream whose challenge names that realm).
"""
from __future__ import annotations

import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))

from registry_checks import Instance, scenario_instance  # noqa: E402  pylint: disable=wrong-import-position

ADMIN = ("admin", "molecule-admin-secret")
MIRROR_PULLER = ("mirror-puller", "molecule-mirror-secret")
UPSTREAM = "upstream.dockyard.test"
MIRROR = "mirror.dockyard.test"
REPLICA = "replica.dockyard.test"


@pytest.fixture(scope="session")
def upstream() -> Instance:
    return scenario_instance("sites-upstream")


@pytest.fixture(scope="session")
def mirror() -> Instance:
    return scenario_instance("sites-mirror")


@pytest.fixture(scope="session")
def replica() -> Instance:
    return scenario_instance("sites-replica")


@pytest.fixture(scope="session")
def client() -> Instance:
    return scenario_instance("sites-client")


def recorded(instance: Instance, listener: str) -> list[dict]:
    """The requests a recording listener of the scenario has received (prepare.yml)."""
    text = instance.run(f"cat /var/log/sites-{listener}.jsonl 2>/dev/null || true").stdout
    return [json.loads(line) for line in text.splitlines()]
