"""/metrics in the real service: gunicorn with three workers, Debian's prometheus_client in
multiprocess mode, the unit's child_exit hook. Any worker answers a scrape with the sum of all,
also of workers that have died since."""
from __future__ import annotations

import concurrent.futures
import os
import pathlib
import signal
import subprocess
import time
import typing as t
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from token_stack import (ISSUER, PYTESTMARK, SERVICE, SERVICE_FILES, SYSTEM_PYTHON, free_port, request_token,
                         start_service, stop_processes, write_key_pair)

NO_CLIENT = subprocess.run([SYSTEM_PYTHON, "-c", "import prometheus_client"], capture_output=True,
                           check=False).returncode != 0
pytestmark = [PYTESTMARK, pytest.mark.skipif(NO_CLIENT, reason="needs python3-prometheus-client")]
WORKERS = 3


class Service(t.NamedTuple):
    url: str
    process: subprocess.Popen
    metrics_dir: pathlib.Path


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> t.Iterator[Service]:
    workdir = tmp_path_factory.mktemp("token-metrics")
    _key, _cert, key_path, cert_path = write_key_pair(workdir, "token")
    bind = "127.0.0.1:%d" % free_port()
    metrics_dir = workdir / "metrics"
    config = {"issuer": ISSUER, "service": SERVICE, "key": str(key_path), "certificate": str(cert_path),
              "store": str(workdir / "accounts.json"), "audit_stdout": False, "metrics": True}
    process = start_service(workdir, config, [bind], WORKERS,
                            ["--config", str(SERVICE_FILES / "dockyard_token" / "gunicorn_hooks.py")],
                            {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    try:
        yield Service("http://" + bind, process, metrics_dir)
    finally:
        stop_processes([process])


def counts(url: str) -> tuple:
    """(tokens issued, wrong credentials, issued requests timed) of one scrape."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:  # noqa: S310 - loopback only
        families = text_string_to_metric_families(response.read().decode("utf-8"))
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in families for sample in family.samples}
    return (samples["dockyard_token_requests_total", (("reason", "ok"), ("result", "issued"))],
            samples["dockyard_token_requests_total", (("reason", "bad_credentials"), ("result", "refused"))],
            samples["dockyard_token_request_duration_seconds_count", (("result", "issued"),)])


def workers(master: int) -> set:
    found = set()
    for status in pathlib.Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(master):
            found.add(int(status.parent.name))
    return found


def test_every_worker_answers_with_the_sum_and_dead_workers_still_count(service):
    token_url = service.url + "/auth/token"
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        issued = list(pool.map(lambda _index: request_token(token_url, None)[0], range(60)))
        refused = list(pool.map(lambda index: request_token(token_url, "nobody-%d:x" % index)[0], range(4)))
    assert issued == [200] * 60 and refused == [401] * 4
    assert {counts(service.url) for _scrape in range(12)} == {(60, 4, 60)}
    assert len(list(service.metrics_dir.glob("counter_*.db"))) == WORKERS

    before = workers(service.process.pid)
    assert len(before) == WORKERS
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (len(workers(service.process.pid) - before) < WORKERS) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(workers(service.process.pid) - before) == WORKERS
    # The new workers served no token: every count comes from the dead workers' files.
    assert {counts(service.url) for _scrape in range(6)} == {(60, 4, 60)}
    assert len(list(service.metrics_dir.glob("counter_*.db"))) == 2 * WORKERS
