"""playbooks/gc.yml across the nodes of a cluster: the order of the steps, the restore that
always runs, and the one report. Both "nodes" are the controller (connection local) and the
script is a stand-in that logs each step and answers like dockyard-registry-gc --json; the
steps themselves run against a real registry in tests/unit/gc."""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "gc.yml"
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).parent / "ansible-playbook"

# The stand-in: NODE STEP [--dry-run] goes to the log; a file fail-NODE-STEP makes that step fail.
STAND_IN = """#!/bin/sh
node=$1; shift
step=; dry=
while [ $# -gt 0 ]; do
  case $1 in --step) step=$2; shift;; --dry-run) dry=-dry-run;; esac; shift
done
echo "$node $step$dry" >> {log}
if [ -e {base}/fail-$node-$step$dry ]; then
  echo '{{"result": "failed", "changed": true, "phase": "'$step'", "step": "probe-read-only", "error": "boom", "duration": 0.1}}'
  exit 1
fi
case $step$dry in
  collect-dry-run) echo '{{"result": "ok", "changed": false, "phase": "collect", "would_delete_blobs": '$(cat {base}/garbage)',
    "would_delete_manifests": 0, "duration": 0.1, "delete_untagged": false, "dry_run": true}}';;
  collect) echo '{{"result": "ok", "changed": true, "phase": "collect", "blobs_deleted": 3, "manifests_deleted": 0,
    "bytes_freed": null, "duration": 0.1, "delete_untagged": false}}';;
  *) echo '{{"result": "ok", "changed": true, "phase": "'$step'", "duration": 0.1}}';;
esac
"""


@pytest.fixture
def cluster(tmp_path):
    stand_in = tmp_path / "dockyard-registry-gc"
    stand_in.write_text(STAND_IN.format(log=tmp_path / "steps.log", base=tmp_path))
    stand_in.chmod(0o755)
    (tmp_path / "garbage").write_text("3")
    return tmp_path


def run(base: pathlib.Path, nodes: dict[str, list[str] | None],
        *extra: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """gc.yml on every host of `nodes` (host -> its registry__cluster_hosts, None: unset); the steps logged."""
    inventory = base / "nodes.yml"
    inventory.write_text(json.dumps({"registry": {
        "hosts": {host: {**({"registry__cluster_hosts": members} if members is not None else {}),
                         "dockyard_gc_command": f"{base}/dockyard-registry-gc-{host}"} for host, members in nodes.items()},
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                 "ansible_become": False}}}))
    for host in nodes:
        wrapper = base / f"dockyard-registry-gc-{host}"
        wrapper.write_text(f'#!/bin/sh\nexec {base}/dockyard-registry-gc {host} "$@"\n')
        wrapper.chmod(0o755)
    log = base / "steps.log"
    log.unlink(missing_ok=True)
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"))
    result = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(PLAYBOOK), *extra], env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    return result, log.read_text().splitlines() if log.exists() else []


def report(result: subprocess.CompletedProcess) -> dict:
    """The report the play printed (the debug task's msg)."""
    match = re.search(r'"msg": (\{.*?\n    \})', result.stdout, re.DOTALL)
    assert match, result.stdout[-3000:]
    return json.loads(match.group(1))


TWO = {"node-a": ["node-a", "node-b"], "node-b": ["node-a", "node-b"]}


def test_cluster_flow_every_node_read_only_one_collection_every_node_restored(cluster):
    result, steps = run(cluster, TWO)
    assert result.returncode == 0, result.stdout[-3000:]
    assert steps[0] == "node-a collect-dry-run"
    assert sorted(steps[1:3]) == ["node-a readonly", "node-b readonly"]
    assert steps[3] == "node-a collect"
    assert sorted(steps[4:]) == ["node-a restore", "node-b restore"]
    printed = report(result)
    assert printed["result"] == "ok" and printed["stopped"] is None
    assert printed["nodes"] == ["node-a", "node-b"] and printed["restored"] == ["node-a", "node-b"]
    assert printed["steps"]["node-a"]["collect"]["blobs_deleted"] == 3
    assert set(printed["steps"]["node-b"]) == {"readonly", "restore"}


@pytest.mark.parametrize("failing, stopped", [
    ("node-b-readonly", "readonly on node-b: probe-read-only: boom"),
    ("node-a-readonly", "readonly on node-a: probe-read-only: boom"),
    ("node-a-collect", "collect on node-a: probe-read-only: boom"),
])
def test_a_failed_step_stops_there_and_every_node_is_restored(cluster, failing, stopped):
    (cluster / f"fail-{failing}").touch()
    result, steps = run(cluster, TWO)
    assert result.returncode != 0
    assert "node-a collect" not in steps or failing == "node-a-collect"
    assert sorted(steps[-2:]) == ["node-a restore", "node-b restore"]
    printed = report(result)
    assert printed["result"] == "failed" and printed["stopped"] == stopped
    assert printed["restored"] == ["node-a", "node-b"]
    assert "garbage collection stopped at" in result.stdout


def test_a_failed_restore_fails_the_run_after_restoring_the_others(cluster):
    (cluster / "fail-node-b-restore").touch()
    result, steps = run(cluster, TWO)
    assert result.returncode != 0
    assert sorted(steps[-2:]) == ["node-a restore", "node-b restore"]
    printed = report(result)
    assert printed["stopped"].startswith("restore on node-b") and printed["restored"] == ["node-a"]


def test_a_refused_plan_changes_nothing(cluster):
    (cluster / "fail-node-a-collect-dry-run").touch()
    result, steps = run(cluster, TWO)
    assert result.returncode != 0
    assert steps == ["node-a collect-dry-run"]
    assert report(result)["stopped"].startswith("plan on node-a")


def test_nothing_to_collect_restarts_nothing(cluster):
    (cluster / "garbage").write_text("0")
    result, steps = run(cluster, TWO)
    assert result.returncode == 0, result.stdout[-3000:]
    assert steps == ["node-a collect-dry-run"]
    assert report(result)["note"] == "nothing to do"


def test_a_run_limited_to_one_node_of_a_cluster_is_refused(cluster):
    result, steps = run(cluster, TWO, "--limit", "node-b")
    assert result.returncode != 0 and steps == []
    assert "node-a share the store of node-b but are not in this run" in " ".join(result.stdout.split())


def test_a_limit_does_not_shrink_the_inventory_group_into_a_cluster_of_one(cluster):
    """Without registry__cluster_hosts the cluster is the inventory group, whatever --limit says."""
    result, steps = run(cluster, {"node-a": None, "node-b": None}, "--limit", "node-b")
    assert result.returncode != 0 and steps == []
    assert "node-a share the store of node-b but are not in this run" in " ".join(result.stdout.split())


def test_independent_hosts_each_collect_their_own(cluster):
    result, steps = run(cluster, {"solo-1": ["solo-1"], "solo-2": ["solo-2"]}, "-e", "dockyard_gc_serial=1")
    assert result.returncode == 0, result.stdout[-3000:]
    assert steps == [f"{host} {step}" for host in ("solo-1", "solo-2")
                     for step in ("collect-dry-run", "readonly", "collect", "restore")]
