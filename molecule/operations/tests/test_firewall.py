"""The registry host's nftables firewall (dockyard.registry.firewall), checked from other instances.

Instances: dockyard-ops (the registry host: gateway on 443, metrics listener on 9443 open to
the Prometheus instance only), dockyard-ops-prom (the allowlisted scraper) and
dockyard-ops-client (a client, not allowlisted), on one docker network. A dropped packet
makes curl time out (exit 28); a refused connection (exit 7) means the firewall let it pass.
"""
from __future__ import annotations

import json

import pytest
from registry_checks import REGISTRY, Instance, instance_name, nft_counter

HOST = instance_name("ops")
# Every port a registry host may listen on but must not show to a client: SSH, the
# registry's debug and the token service's event listeners, the exporters, the metrics
# listener. (80 is open: the gateway redirects it to https.)
CLOSED_TO_CLIENT = (22, 5000, 5001, 5002, 8089, 9100, 9113, 9443)
CURL_CONNECT_TIMEOUT = 28
CURL_CONNECTION_REFUSED = 7


def connect(instance: Instance, port: int, scheme: str = "http") -> int:
    """curl's exit code of one request from `instance` to a port of the registry host."""
    return instance.run(f"curl -sk -o /dev/null --connect-timeout 2 -m 10 {scheme}://{HOST}:{port}/",
                        ok=False).rc


def dockyard_chains(registry: Instance) -> dict[str, dict]:
    table = json.loads(registry.run("nft -j list table inet dockyard").stdout)["nftables"]
    return {item["chain"]["name"]: item["chain"] for item in table if "chain" in item}


def test_a_client_reaches_the_gateway(client):
    result = client.run(f"curl -sk -o /dev/null --connect-timeout 2 -w '%{{http_code}}' "
                        f"--connect-to {REGISTRY}:443:{HOST}:443 https://{REGISTRY}/v2/")
    assert result.stdout.strip() == "401"


@pytest.mark.parametrize("port", CLOSED_TO_CLIENT)
def test_a_client_reaches_no_other_port(client, port):
    rc = connect(client, port)
    assert rc == CURL_CONNECT_TIMEOUT, f"port {port}: curl exit {rc} (7: the firewall let the packet pass)"


def test_the_scraper_reaches_the_metrics_listener(prometheus):
    rc = connect(prometheus, 9443, "https")
    # Connected: whatever the listener answers, neither dropped (28) nor refused (7).
    assert rc not in (CURL_CONNECT_TIMEOUT, CURL_CONNECTION_REFUSED), f"curl exit {rc}"


def test_the_ruleset_is_dockyards_with_policy_drop(registry):
    chains = dockyard_chains(registry)
    assert chains["input"]["hook"] == "input" and chains["input"]["policy"] == "drop"
    assert chains["forward"]["hook"] == "forward" and chains["forward"]["policy"] == "drop"
    assert registry.run("dockyard-firewall status").stdout.strip() == "idle"
    # The packets the client's probes sent were counted as refused.
    assert nft_counter(registry, "input_refused") > 0


def test_the_rules_persist_through_nftables_service(registry):
    assert registry.host.service("nftables").is_enabled
    before = registry.run("nft -s list table inet dockyard").stdout
    registry.run("systemctl restart nftables")
    assert registry.run("nft -s list table inet dockyard").stdout == before


def test_rules_that_are_not_confirmed_are_rolled_back(registry):
    """The running rules plus a harmless empty table, applied without `confirm`: after the
    3-second timeout the rollback timer restores the rules from before, exactly."""
    before = registry.run("nft -s list ruleset").stdout
    registry.run("{ cat /etc/nftables.conf; echo 'table inet dockyard_rollback_probe { }'; } "
                 "> /tmp/rollback-probe.nft")
    registry.run("dockyard-firewall apply /tmp/rollback-probe.nft 3")
    assert registry.run("dockyard-firewall status").stdout.strip() == "pending"
    registry.run("nft list table inet dockyard_rollback_probe")
    registry.wait_until("[ \"$(dockyard-firewall status)\" = idle ]", attempts=100)
    assert registry.run("nft -s list ruleset").stdout == before
    assert registry.run("nft list table inet dockyard_rollback_probe", ok=False).rc != 0
    assert "rolled back" in registry.run("journalctl -t dockyard-firewall -n 5 --no-pager").stdout
    # Nothing is left to confirm: a late `confirm` says so instead of keeping anything.
    assert registry.run("dockyard-firewall confirm", ok=False).rc == 3


def test_a_ruleset_nft_refuses_changes_nothing(registry):
    before = registry.run("nft -s list ruleset").stdout
    registry.run("printf 'table inet dockyard {\\n\\tchain input {\\n\\t\\ttcp dport 8080 acept\\n\\t}\\n}\\n' "
                 "> /tmp/broken.nft")
    result = registry.run("dockyard-firewall apply /tmp/broken.nft 3", ok=False)
    assert result.rc == 2 and "nft refuses /tmp/broken.nft" in result.stderr, result.stderr
    assert registry.run("dockyard-firewall status").stdout.strip() == "idle"
    assert registry.run("nft -s list ruleset").stdout == before
