"""Prometheus scrapes every part of the registry host through the allowlisted metrics
listener, and Dockyard's alert rules fire on a real outage."""
from __future__ import annotations

import shlex

import pytest
from conftest import ADMIN, METRICS_PORT, prometheus_api
from registry_checks import wait_for

COMPONENTS = ("registry", "gateway", "node", "token")
# One family per part, and Dockyard's own.
FAMILIES = {
    "registry": "registry_http_requests_total",
    "gateway": "nginx_connections_active",
    "token": "dockyard_token_requests_total",
    "node": "node_filesystem_avail_bytes",
}


def targets_up(prometheus) -> dict[str, float]:
    series = prometheus_api(prometheus, "query", query='up{job=~"dockyard-.*"}')["result"]
    return {item["metric"]["component"]: float(item["value"][1]) for item in series}


def query_values(prometheus, expression: str) -> list[float]:
    return [float(item["value"][1]) for item in prometheus_api(prometheus, "query", query=expression)["result"]]


def test_prometheus_scrapes_every_part(prometheus):
    every_part_up = {name: 1.0 for name in COMPONENTS}
    assert wait_for(lambda: targets_up(prometheus) == every_part_up, 120), targets_up(prometheus)
    for component, family in FAMILIES.items():
        assert query_values(prometheus, f'{family}{{component="{component}"}}'), family


def test_the_registry_filesystem_and_certificates_are_exported(prometheus):
    expiry = wait_for(lambda: query_values(prometheus, "dockyard_certificate_expiry_timestamp_seconds"), 60)
    assert len(expiry) == 2  # the gateway's and the token signing certificate
    assert query_values(prometheus, 'dockyard_storage_path_info{path="/var/lib/docker-registry"}') == [1.0]


def test_a_login_counts_as_issued(registry, prometheus):
    query = 'sum(dockyard_token_requests_total{result="issued"})'
    before = sum(query_values(prometheus, query))
    registry.push_image("ops/metrics", seed="metrics", creds=ADMIN)
    assert wait_for(lambda: sum(query_values(prometheus, query)) > before, 60), "issued tokens did not grow"


def test_gc_reports_its_last_success(registry, prometheus):
    registry.run("dockyard-registry-gc")
    success = wait_for(lambda: query_values(prometheus, "dockyard_gc_last_success_timestamp_seconds"), 60)
    assert success and success[0] > 0
    assert query_values(prometheus, "dockyard_gc_last_run_success") == [1.0]


def test_rules_are_loaded(prometheus):
    groups = prometheus_api(prometheus, "rules")["groups"]
    names = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"DockyardRegistryDown", "DockyardGatewayDown", "DockyardDiskFilling",
            "DockyardCertificateExpiring", "DockyardGCNotSuccessful"} <= names


def alert_state(prometheus, name: str) -> str | None:
    for alert in prometheus_api(prometheus, "alerts")["alerts"]:
        if alert["labels"]["alertname"] == name:
            return alert["state"]
    return None


def test_registry_down_goes_pending_then_firing(registry, prometheus):
    assert alert_state(prometheus, "DockyardRegistryDown") is None
    registry.run("systemctl stop docker-registry")
    try:
        assert wait_for(lambda: alert_state(prometheus, "DockyardRegistryDown") == "pending", 60), "never pending"
        assert wait_for(lambda: alert_state(prometheus, "DockyardRegistryDown") == "firing", 150), "never firing"
    finally:
        registry.run("systemctl start docker-registry")
    assert wait_for(lambda: alert_state(prometheus, "DockyardRegistryDown") is None, 90), "never resolved"


def metrics_status(instance, host: str, path: str = "/metrics/node") -> str:
    """HTTP status of a GET of the metrics listener, or curl's failure."""
    result = instance.run(f"curl -sk --connect-timeout 2 -m 5 -o /dev/null -w '%{{http_code}}' "
                          f"{shlex.quote(f'https://{host}:{METRICS_PORT}{path}')}", ok=False)
    return result.stdout.strip() if result.rc == 0 else f"curl exit {result.rc}"


def test_only_the_scraper_reads_metrics(registry, prometheus, client):
    assert metrics_status(prometheus, registry.name) == "200"
    # The client's packets are dropped by the firewall before nginx sees them.
    assert metrics_status(client, registry.name).startswith("curl exit")
    # nginx's own allowlist, past the firewall (the host's address is not loopback).
    address = registry.run("hostname -I | cut -d' ' -f1").stdout.strip()
    assert metrics_status(registry, address) == "403"
    assert metrics_status(registry, "127.0.0.1") == "200"


@pytest.mark.parametrize("path", ["/metrics/pprof", "/debug/pprof/", "/debug/health", "/stub_status", "/metrics"])
def test_the_metrics_listener_serves_nothing_else(prometheus, registry, path):
    assert metrics_status(prometheus, registry.name, path) == "404"


@pytest.mark.parametrize("path", ["/metrics/node", "/metrics/token", "/metrics", "/debug/pprof/", "/stub_status"])
def test_the_public_listener_serves_no_metrics(registry, path):
    status, _headers, _size = registry.http(path)
    assert status == 404
