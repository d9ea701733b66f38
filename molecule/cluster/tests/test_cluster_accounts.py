"""One account store for the cluster: a robot made once works through every node, a change
made once on the primary applies on every node at its next token request, and every audit
line names its node."""
from __future__ import annotations

import json
import os
import pathlib

import pytest
from conftest import name

from registry_checks import claims, playbook, token

ROBOT = "robot$team-a+ci"
ALICE = ("alice", "molecule-alice-secret")
EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
ACCOUNTS = pathlib.Path(__file__).resolve().parents[1] / "accounts.yml"
STORE = "/etc/dockyard/token/accounts.json"
PUSH = "repository:team-a/app:pull,push"


def change(**variables: object) -> None:
    """Change accounts on the primary with the modules, then copy its store (accounts.yml)."""
    result = playbook(str(ACCOUNTS), "-e", json.dumps(variables))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def granted(node, creds: tuple[str, str]) -> tuple[int, list]:
    """Status of a push-token request on this node, and the actions granted."""
    status, body = token(node, creds, PUSH)
    if status != 200:
        return status, []
    return status, sorted(action for entry in claims(body["token"])["access"] for action in entry["actions"])


@pytest.fixture(scope="module")
def robot() -> tuple[str, str]:
    """The robot of the inventory, issued once on the primary: one secret file on the controller."""
    files = sorted((EPHEMERAL / "robots").glob("*-robot_team-a+ci.json"))
    assert [path.name for path in files] == [f"{name('node-a')}-robot_team-a+ci.json"]
    return ROBOT, json.loads(files[0].read_text())["secret"]


def test_every_node_has_the_same_store_and_the_secret_only_as_a_hash(robot, node_a, node_b):
    stores = [node.run(f"cat {STORE}").stdout for node in (node_a, node_b)]
    assert stores[0] == stores[1] and ROBOT in json.loads(stores[0])["robots"]
    assert robot[1] not in stores[0]
    for node in (node_a, node_b):
        assert node.run(f"stat -c '%a %U %G' {STORE}").stdout.split() == ["640", "root", "dockyard-token"]


def test_the_robot_pushes_through_each_node_and_is_revoked_on_both_at_once(robot, node_a, node_b):
    for node, seed in ((node_a, "robot-a"), (node_b, "robot-b")):
        node.push_image(f"team-a/{seed}:1", creds=robot, seed=seed, layers=1)  # this node's own gateway
    pids = [node.main_pid("dockyard-token.service") for node in (node_a, node_b)]
    change(robot={"name": ROBOT, "disabled": True})
    try:
        assert [token(node, robot, PUSH)[0] for node in (node_a, node_b)] == [401, 401]
    finally:
        change(robot={"name": ROBOT, "disabled": False})
    assert [granted(node, robot) for node in (node_a, node_b)] == [(200, ["pull", "push"])] * 2
    assert [node.main_pid("dockyard-token.service") for node in (node_a, node_b)] == pids  # no restart


def test_a_group_change_applies_on_every_node(node_a, node_b):
    assert [granted(node, ALICE) for node in (node_a, node_b)] == [(200, ["pull", "push"])] * 2
    change(user={"name": ALICE[0], "groups": []})
    try:
        assert [granted(node, ALICE) for node in (node_a, node_b)] == [(200, [])] * 2
    finally:
        change(user={"name": ALICE[0], "groups": ["team-a"]})
    assert [granted(node, ALICE) for node in (node_a, node_b)] == [(200, ["pull", "push"])] * 2


def test_audit_lines_name_their_node(robot, node_a, node_b):
    for node, role in ((node_a, "node-a"), (node_b, "node-b")):
        assert token(node, robot, PUSH)[0] == 200
        for log in ("/var/log/dockyard/token/audit.jsonl", "/var/log/dockyard/gateway/access.log"):
            lines = [json.loads(line) for line in node.run(f"tail -n 20 {log}").stdout.splitlines()]
            assert lines and {line["node"] for line in lines} == {name(role)}, log
