"""playbooks/replicate.yml between two real docker-registry processes: a job copies, the
second run copies nothing, a job with an unreachable source fails the play clearly after
the other jobs ran, and a bad job list is refused before anything runs."""
from __future__ import annotations

import pathlib
import re
import typing as t

import pytest

from conftest import ROOT, Images, PlaybookResult, Registry

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
