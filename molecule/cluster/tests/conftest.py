from __future__ import annotations

import os
import pathlib
import sys

import pytest
import testinfra

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))

from registry_checks import Instance  # noqa: E402  pylint: disable=wrong-import-position

SUFFIX = os.environ.get("DOCKYARD_INSTANCE_SUFFIX", "")


def name(role: str) -> str:
    """The instance's name as molecule.yml spells it."""
    return f"dockyard-{role}{SUFFIX}"


def _instance(role: str) -> Instance:
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return Instance(testinfra.get_host(f"ansible://{name(role)}?ansible_inventory={inventory}"))


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
