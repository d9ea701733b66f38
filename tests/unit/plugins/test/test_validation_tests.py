from __future__ import annotations

import pytest

from ansible_collections.dockyard.registry.plugins.test.cron_schedule import cron_schedule
from ansible_collections.dockyard.registry.plugins.test.hostname import hostname
from ansible_collections.dockyard.registry.plugins.test.ip_network import ip_network


@pytest.mark.parametrize("schedule", [
    "17 3 * * 0",
    "*/15 * * * *",
    "0 0-23/2 1,15 jan-jun mon-fri",
    "59 23 31 12 7",
    "0 4 * * SUN",
])
def test_valid_cron_schedules(schedule):
    assert cron_schedule(schedule)


@pytest.mark.parametrize("schedule", [
    "",
    "* * * *",
    "* * * * * *",
    "60 * * * *",
    "* 24 * * *",
    "* * 0 * *",
    "* * * 13 *",
    "* * * * 8",
    "5-1 * * * *",
    "*/0 * * * *",
    "daily",
    "@daily",
    "1,,2 * * * *",
    "* * * foo *",
    None,
    17,
])
def test_invalid_cron_schedules(schedule):
    assert not cron_schedule(schedule)


@pytest.mark.parametrize("name", ["registry.example.com", "localhost", "reg-1.dockyard.test", "a" * 63 + ".example"])
def test_valid_hostnames(name):
    assert hostname(name)


@pytest.mark.parametrize("name", [
    "", "-registry.example.com", "registry-.example.com", "reg_1.example.com", "registry.example.com.",
    "*.example.com", "10.0.0.1", "registry.example.com:443", "a" * 64 + ".example", "a.." , "https://registry", None,
])
def test_invalid_hostnames(name):
    assert not hostname(name)


@pytest.mark.parametrize("value", ["192.0.2.10", "10.0.0.0/8", "0.0.0.0/0", "2001:db8::1", "2001:db8::/32", "::1", "::/0"])
def test_valid_ip_networks(value):
    assert ip_network(value)


@pytest.mark.parametrize("value", ["", "192.0.2.256", "192.0.2.1/24", "10.0.0.0/33", "prometheus.example.com",
                                   "192.0.2.1 ", "192.0.2.1;", "fe80::1%eth0", "2001:db8::1/129", "1.2.3",
                                   "192.0.2.1-192.0.2.9", "all", None, 3232235521])
def test_invalid_ip_networks(value):
    assert not ip_network(value)
