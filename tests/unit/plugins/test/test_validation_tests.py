from __future__ import annotations

import pytest

from ansible_collections.dockyard.registry.plugins.test.cron_schedule import cron_schedule
from ansible_collections.dockyard.registry.plugins.test.hostname import hostname
from ansible_collections.dockyard.registry.plugins.test.ip_network import ip_network
from ansible_collections.dockyard.registry.plugins.test.port_range import port_range


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


@pytest.mark.parametrize("value", [
    "192.0.2.10", "192.0.2.0/24", "0.0.0.0/0", "10.0.0.0/8", "192.0.2.10/32",
    "2001:db8::10", "2001:db8::/64", "::/0", "::1", "fe80::/10", "2001:DB8::1",
])
def test_valid_ip_networks(value):
    assert ip_network(value)


@pytest.mark.parametrize("value", [
    "", "any", "10.0.0.5/8", "010.0.0.1", "192.0.2.256", "192.0.2", "192.0.2.0/33", "192.0.2.0/024",
    "2001:db8::1/64", "2001:db8::/129", "fe80::1%eth0", "registry.example.com", "192.0.2.1-192.0.2.9",
    " 192.0.2.1", "192.0.2.0/", "/24", None, 3232235786, ["192.0.2.1"],
])
def test_invalid_ip_networks(value):
    assert not ip_network(value)


@pytest.mark.parametrize("value", [1, 22, 443, 65535, "443", "6200-6202", "1-65535"])
def test_valid_port_ranges(value):
    assert port_range(value)


@pytest.mark.parametrize("value", [
    0, -1, 65536, True, "", "0", "0443", "https", "443-443", "6202-6200", "1-65536", "443 ", "80,443",
    "-443", "443-", None, 443.0, [443],
])
def test_invalid_port_ranges(value):
    assert not port_range(value)
