"""The operations scenario's instances: the registry host, Prometheus and a client.

The registry host has the metrics listener (9443, allowlisted to Prometheus), the
firewall and restic backups into /srv/backup/restic, a directory of the controller
(MOLECULE_EPHEMERAL_DIRECTORY/backup) that outlives the instance.
"""
from __future__ import annotations

import json
import pathlib
import sys
import urllib.parse

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))

from registry_checks import Instance, scenario_instance  # noqa: E402  pylint: disable=wrong-import-position

ADMIN = ("admin", "molecule-admin-secret")
ROBOT = "robot$ci"
METRICS_PORT = 9443


@pytest.fixture(scope="session")
def registry() -> Instance:
    return scenario_instance("ops")


@pytest.fixture(scope="session")
def prometheus() -> Instance:
    return scenario_instance("ops-prom")


@pytest.fixture(scope="session")
def client() -> Instance:
    return scenario_instance("ops-client")


def prometheus_api(prometheus: Instance, path: str, **query: str) -> dict:
    """One call of Prometheus's HTTP API on its instance; the `data` of a success."""
    url = f"http://localhost:9090/api/v1/{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    answer = json.loads(prometheus.run(f"curl -sS '{url}'").stdout)
    assert answer["status"] == "success", answer
    return answer["data"]
