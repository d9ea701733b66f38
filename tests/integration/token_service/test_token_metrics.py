"""/metrics in the real service: gunicorn with three workers, Debian's prometheus_client in
multiprocess mode, the unit's child_exit hook. Any worker answers a scrape with the sum of all.
(That the counts of dead workers stay is a unit test: killing every worker of gunicorn 20.1
at once here sometimes left it without workers for minutes on a loaded machine.)"""
from __future__ import annotations

import concurrent.futures
import pathlib
import subprocess
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


def test_every_worker_answers_with_the_sum(service):
    token_url = service.url + "/auth/token"
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        issued = list(pool.map(lambda _index: request_token(token_url, None)[0], range(60)))
        refused = list(pool.map(lambda index: request_token(token_url, "nobody-%d:x" % index)[0], range(4)))
    assert issued == [200] * 60 and refused == [401] * 4
    assert {counts(service.url) for _scrape in range(12)} == {(60, 4, 60)}
    assert 0 < len(list(service.metrics_dir.glob("counter_*.db"))) <= WORKERS
