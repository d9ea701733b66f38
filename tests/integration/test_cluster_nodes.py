"""Cluster-wide settings of the registry and token_service roles on two nodes (both the controller itself)."""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import typing as t

import bcrypt
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "cluster_nodes.yml"
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).parent / "ansible-playbook"
SWIFT = {"registry__storage_driver": "swift", "registry__storage_secret": "swift-s3cret",
         "registry__storage_options": {"authurl": "http://store:8080/auth/v1.0", "username": "a:b", "container": "c"}}

pytestmark = pytest.mark.skipif(subprocess.run(["getent", "group", "docker-registry"], check=False,
                                               capture_output=True).returncode != 0,
                                reason="needs the docker-registry group (tools/bootstrap.sh installs it)")


def run(tmp_path: pathlib.Path, steps: list[str], settings: dict, *extra: str,
        node_a: dict | None = None, node_b: dict | None = None) -> subprocess.CompletedProcess:
    inventory = tmp_path / "nodes.yml"
    inventory.write_text(json.dumps({"nodes": {
        "hosts": {"node-a": node_a or {}, "node-b": node_b or {}},
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}))
    variables = {"cluster_steps": steps, "_registry__secret_file": f"{tmp_path}/{{{{ inventory_hostname }}}}.env",
                 **settings}
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"))
    return subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(PLAYBOOK), "-e", json.dumps(variables),
                           *extra], env=env, capture_output=True, text=True, timeout=300, check=False)


def changed(result: subprocess.CompletedProcess) -> int:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return sum(int(count) for count in re.findall(r"^node-\w\s+:.*changed=(\d+)", result.stdout, re.MULTILINE))


def refusal(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, result.stdout[-3000:]
    return " ".join(result.stdout.split())


def test_both_nodes_get_one_http_secret_and_the_store_secret(tmp_path):
    result = run(tmp_path, ["preflight", "secrets"], SWIFT)
    assert changed(result) == 2
    files = [tmp_path / "node-a.env", tmp_path / "node-b.env"]
    assert files[0].read_text() == files[1].read_text()
    lines = files[0].read_text().splitlines()
    assert re.fullmatch(r"REGISTRY_HTTP_SECRET=[A-Za-z0-9]{64}", lines[0])
    assert lines[1] == "REGISTRY_STORAGE_SWIFT_PASSWORD=swift-s3cret"
    assert all(oct(path.stat().st_mode & 0o777) == "0o640" for path in files)
    for again in (run(tmp_path, ["secrets"], SWIFT), run(tmp_path, ["secrets"], SWIFT, "--check", "--diff")):
        assert changed(again) == 0
        assert lines[0].split("=", 1)[1] not in again.stdout and "swift-s3cret" not in again.stdout
    assert "swift-s3cret" not in result.stdout and lines[0].split("=", 1)[1] not in result.stdout


def test_a_new_node_takes_the_secret_already_in_the_cluster(tmp_path):
    kept = tmp_path / "node-b.env"
    kept.write_text("REGISTRY_HTTP_SECRET=" + "k" * 40 + "\n")
    kept.chmod(0o640)
    shutil.chown(kept, "root", "docker-registry")
    assert changed(run(tmp_path, ["secrets"], {})) == 1
    assert (tmp_path / "node-a.env").read_text() == "REGISTRY_HTTP_SECRET=" + "k" * 40 + "\n"
    assert (tmp_path / "node-b.env").read_text() == (tmp_path / "node-a.env").read_text()


def test_one_node_keeps_filesystem_storage(tmp_path):
    assert changed(run(tmp_path, ["preflight"], {}, "--limit", "node-a")) == 0


def test_filesystem_storage_on_two_nodes_is_refused(tmp_path):
    output = refusal(run(tmp_path, ["preflight", "secrets"], {}))
    assert "Filesystem storage cannot be shared: 2 registry nodes (node-a, node-b)" in output
    assert not (tmp_path / "node-a.env").exists()


def test_differing_storage_settings_are_named_not_shown(tmp_path):
    node_a = {key: value for key, value in SWIFT.items() if key != "registry__storage_driver"}
    node_b = {"registry__storage_options": {**SWIFT["registry__storage_options"], "container": "other"},
              "registry__storage_secret": "another-s3cret"}
    settings = {"registry__storage_driver": "swift"}
    output = refusal(run(tmp_path, ["preflight"], settings, node_a=node_a, node_b=node_b))
    assert "settings differ in registry__storage_secret options.container (nodes: node-a, node-b)" in output
    assert "another-s3cret" not in output and "swift-s3cret" not in output


def test_missing_credentials_are_refused(tmp_path):
    output = refusal(run(tmp_path, ["preflight"], {**SWIFT, "registry__storage_secret": ""}))
    assert "its credential in registry__storage_secret (missing)" in output


def test_a_secret_among_the_options_is_refused(tmp_path):
    options = {**SWIFT["registry__storage_options"], "password": "in-the-config"}
    output = refusal(run(tmp_path, ["preflight"], {**SWIFT, "registry__storage_options": options}))
    assert "never as registry__storage_options.password" in output
    assert "in-the-config" not in output


# --- one account store: applied on the primary (node-a), copied byte for byte to node-b ---------

ROBOT = "robot$team-a+ci"


def accounts(tmp_path: pathlib.Path, **changes: t.Any) -> dict:
    """token_service variables of a two-node cluster whose files all lie in tmp_path."""
    return {"token_service__cluster_hosts": ["node-a", "node-b"],
            "token_service__store_path": f"{tmp_path}/{{{{ inventory_hostname }}}}-accounts.json",
            "_token_service__user": "www-data", "token_service__registry_host": "registry.test",
            "token_service__robot_credentials_dir": str(tmp_path / "robots"),
            "token_service__users": [{"name": "alice", "password": "alice-password-1", "groups": ["team-a"]}],
            "token_service__rules": [{"subject": "group:team-a", "repository": "team-a/*", "actions": ["pull", "push"]}],
            "token_service__robots": [{"name": ROBOT,
                                       "permissions": [{"repository": "team-a/*", "actions": ["pull", "push"]}]}],
            **changes}


def stores(tmp_path: pathlib.Path) -> tuple[bytes, dict]:
    """The store's bytes, the same on both nodes (0640, root:www-data), and its content."""
    files = [tmp_path / "node-a-accounts.json", tmp_path / "node-b-accounts.json"]
    assert files[0].read_bytes() == files[1].read_bytes()
    for path in files:
        assert (oct(path.stat().st_mode & 0o777), path.owner(), path.group()) == ("0o640", "root", "www-data")
    return files[0].read_bytes(), json.loads(files[0].read_bytes())


def hashes(store: dict) -> list[str]:
    return [entry["password_hash"] for entry in store["users"].values()] + [
        entry["secret_hash"] for entry in store["robots"].values()]


def test_accounts_are_applied_once_and_the_store_is_the_same_on_both_nodes(tmp_path):
    result = run(tmp_path, ["accounts"], accounts(tmp_path))
    assert changed(result) >= 4
    data, store = stores(tmp_path)
    assert store["users"]["alice"]["groups"] == ["team-a"] and ROBOT in store["robots"]
    assert store["rules"] == [{"subject": "group:team-a", "repository": "team-a/*", "actions": ["pull", "push"]}]
    # Only the primary applied anything (no lock file of the modules on node-b).
    assert not (tmp_path / "node-b-accounts.json.lock").exists()
    (saved,) = (tmp_path / "robots").iterdir()
    assert saved.name == "node-a-robot_team-a+ci.json"
    secret = json.loads(saved.read_text())["secret"]
    assert bcrypt.checkpw(secret.encode(), store["robots"][ROBOT]["secret_hash"].encode())
    for again in (run(tmp_path, ["accounts"], accounts(tmp_path)),
                  run(tmp_path, ["accounts"], accounts(tmp_path), "--check", "--diff")):
        assert changed(again) == 0
        assert stores(tmp_path)[0] == data
    for output in (result.stdout, again.stdout):
        assert secret not in output and "alice-password-1" not in output
        assert not any(value in output for value in hashes(store))


def test_a_robot_revoked_on_the_primary_is_revoked_on_every_node(tmp_path):
    assert changed(run(tmp_path, ["accounts"], accounts(tmp_path))) >= 4
    before, store = stores(tmp_path)
    disable = run(tmp_path, ["robot_change"], accounts(tmp_path, robot_change={"name": ROBOT, "disabled": True}))
    assert changed(disable) == 2  # the module on node-a, the copy on node-b
    disabled, store = stores(tmp_path)
    assert disabled != before and store["robots"][ROBOT]["disabled"] is True
    assert not any(value in disable.stdout for value in hashes(store))
    remove = run(tmp_path, ["robot_change"], accounts(tmp_path, robot_change={"name": ROBOT, "state": "absent"}))
    assert changed(remove) == 2
    assert ROBOT not in stores(tmp_path)[1]["robots"]
    assert len(list((tmp_path / "robots").iterdir())) == 1  # the secret was issued once


def test_check_mode_shows_the_copy_a_change_on_the_primary_would_make(tmp_path):
    assert changed(run(tmp_path, ["accounts"], accounts(tmp_path))) >= 4
    before, _store = stores(tmp_path)
    users = [{"name": "bob", "password": "bob-password-1", "groups": []}]
    result = run(tmp_path, ["accounts"], accounts(tmp_path, token_service__users=users), "--check")
    assert re.search(r"^node-a\s+:.*changed=1\b", result.stdout, re.MULTILINE)
    assert re.search(r"^node-b\s+:.*changed=1\b", result.stdout, re.MULTILINE), result.stdout[-3000:]
    assert stores(tmp_path)[0] == before


def test_a_new_first_node_takes_the_store_of_the_cluster(tmp_path):
    kept = tmp_path / "node-b-accounts.json"
    kept.write_text(json.dumps({"version": 1, "users": {}, "robots": {}, "rules": []}) + "\n")
    kept.chmod(0o640)
    shutil.chown(kept, "root", "www-data")
    none = {"token_service__users": [], "token_service__rules": [], "token_service__robots": []}
    assert changed(run(tmp_path, ["accounts"], accounts(tmp_path, **none))) == 1
    assert stores(tmp_path)[0] == kept.read_bytes()
