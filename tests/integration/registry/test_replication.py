"""Replication between two real docker-registry processes.

playbooks/replicate.yml: a job copies, the second run copies nothing, a job with an
unreachable source fails the play clearly after the other jobs ran, and a bad job list is
refused before anything runs. The replication role's runner (dockyard-replicate, what its
timer starts): the same jobs from job files, its journal lines and its textfile metrics."""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import typing as t

import pytest

from conftest import COLLECTIONS, ROOT, Images, PlaybookResult, Registry

PLAYBOOK = str(ROOT / "playbooks" / "replicate.yml")


@pytest.fixture()
def pair(tmp_path: pathlib.Path, images: Images) -> t.Iterator[tuple[Registry, Registry]]:
    source, destination = Registry(tmp_path / "source"), Registry(tmp_path / "destination")
    source.start()
    destination.start()
    try:
        images.push(source, "img0", "apps/web", "1.0")
        images.push(source, "img1", "apps/web", "1.1")
        images.push(source, "img2", "apps/api", "2.0")
        images.push(source, "img3", "other/skip", "1")
        yield source, destination
    finally:
        source.stop()
        destination.stop()


def job(name: str, source: Registry | str, destination: Registry, **extra: t.Any) -> dict[str, t.Any]:
    url = source if isinstance(source, str) else source.url
    return {"name": name, "source": {"registry_url": url, "timeout": 5},
            "destination": {"registry_url": destination.url}, "repositories": ["apps/.*"], **extra}


def summary(run: PlaybookResult, name: str) -> str:
    found = re.search(r'"msg": "(%s: [^"]*)"' % re.escape(name), run.output)
    assert found, run.output[-3000:]
    return found.group(1)


def test_a_job_copies_then_finds_nothing_to_copy(pair, playbook, tmp_path):
    source, destination = pair
    jobs = {"dockyard_replication_jobs": [job("mirror", source, destination,
                                              checkpoint=str(tmp_path / "mirror.json"))]}
    first = playbook(PLAYBOOK, jobs)
    assert first.returncode == 0, first.output[-3000:]
    assert summary(first, "mirror").startswith("mirror: copied 3, unchanged 0,"), summary(first, "mirror")
    for repository, tag in [("apps/web", "1.0"), ("apps/web", "1.1"), ("apps/api", "2.0")]:
        assert destination.digest(repository, tag) == source.digest(repository, tag)
    status, _headers, _body = destination.get("/v2/other/skip/tags/list")
    assert status == 404

    second = playbook(PLAYBOOK, jobs)
    assert second.returncode == 0, second.output[-3000:]
    assert summary(second, "mirror").startswith("mirror: copied 0, unchanged 3,"), summary(second, "mirror")
    assert "0 blobs (0 Bytes) sent" in summary(second, "mirror")


def test_an_unreachable_source_fails_the_play_after_the_other_jobs(pair, playbook):
    source, destination = pair
    dead = "http://127.0.0.1:9"  # discard port: nothing listens there
    run = playbook(PLAYBOOK, {"dockyard_replication_jobs": [
        job("broken", dead, destination), job("mirror", source, destination)]})
    assert run.returncode != 0
    assert summary(run, "broken").startswith("broken: FAILED: ")
    assert "127.0.0.1:9" in summary(run, "broken")
    assert summary(run, "mirror").startswith("mirror: copied 3,")
    assert re.search(r"Replication failed: broken: ", run.output), run.output[-3000:]
    assert destination.digest("apps/api", "2.0") == source.digest("apps/api", "2.0")


@pytest.mark.parametrize("jobs, message", [
    ([], "lists no job"),
    ([{"name": "a", "source": {"registry_url": "http://127.0.0.1:9"}, "destination": {"path": "/tmp/x"},
       "repositories": ["r"]},
      {"name": "a", "source": {"registry_url": "http://127.0.0.1:9"}, "destination": {"path": "/tmp/y"},
       "repositories": ["r"]}], 'Replication job 0 ("a")'),
    ([{"name": "nodest", "source": {"registry_url": "http://127.0.0.1:9"}, "repositories": ["r"]}],
     'Replication job 0 ("nodest")'),
    ([{"name": "typo", "source": {"path": "/tmp/x"}, "destination": {"path": "/tmp/y"}, "repositories": ["r"],
       "workres": 2}], "unknown: workres"),
])
def test_a_bad_job_list_is_refused_before_anything_runs(playbook, jobs, message):
    run = playbook(PLAYBOOK, {"dockyard_replication_jobs": jobs})
    assert run.returncode != 0
    assert message in run.output, run.output[-3000:]
    assert "Run the replication jobs" not in run.output


def run_runner(tmp_path: pathlib.Path, jobs: list[dict[str, t.Any]]) -> tuple[subprocess.CompletedProcess, str]:
    """dockyard-replicate over job files as the role writes them; returns its run and metrics."""
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir(exist_ok=True)
    for entry in jobs:
        args = {key: value for key, value in entry.items() if key != "name"}
        args["checkpoint"] = str(tmp_path / ("%s.checkpoint.json" % entry["name"]))
        (jobs_dir / ("%s.json" % entry["name"])).write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    metrics = tmp_path / "metrics.prom"
    env = dict(os.environ, DOCKYARD_REPLICATION_JOBS=str(jobs_dir), DOCKYARD_REPLICATION_LIBRARY=str(COLLECTIONS),
               DOCKYARD_REPLICATION_METRICS=str(metrics))
    done = subprocess.run([sys.executable, str(ROOT / "roles" / "replication" / "files" / "dockyard_replicate.py")],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    return done, metrics.read_text() if metrics.exists() else ""


def sample(metrics: str, family: str, name: str) -> float:
    found = re.search(r'^dockyard_replication_%s\{replication_job="%s"\} (\S+)$' % (family, name), metrics, re.M)
    assert found, metrics
    return float(found.group(1))


def test_the_timer_runner_copies_reports_and_keeps_the_last_success(pair, tmp_path):
    source, destination = pair
    jobs = [job("mirror", source, destination)]
    first, metrics = run_runner(tmp_path, jobs)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "dockyard-replicate: mirror: copied 3, unchanged 0," in first.stdout
    assert destination.digest("apps/api", "2.0") == source.digest("apps/api", "2.0")
    assert sample(metrics, "last_run_success", "mirror") == 1
    assert sample(metrics, "tags_copied", "mirror") == 3
    assert sample(metrics, "tags_failed", "mirror") == 0
    success = sample(metrics, "last_success_timestamp_seconds", "mirror")

    # A second job that cannot reach its source: the run fails, the first job's success stays.
    second, metrics = run_runner(tmp_path, jobs + [job("broken", "http://127.0.0.1:9", destination)])
    assert second.returncode == 1
    assert "dockyard-replicate: mirror: copied 0, unchanged 3," in second.stdout
    assert re.search(r"^dockyard-replicate: broken: FAILED: .*127\.0\.0\.1:9", second.stdout, re.M), second.stdout
    assert sample(metrics, "last_run_success", "broken") == 0
    assert sample(metrics, "tags_failed", "broken") == -1
    assert 'last_success_timestamp_seconds{replication_job="broken"}' not in metrics
    assert sample(metrics, "last_success_timestamp_seconds", "mirror") >= success
