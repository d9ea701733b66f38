"""Preflight of pull-through mirrors (registry__mirror) and webhooks (registry__webhooks):
bad settings are refused with a clear message before anything changes (docs/sites.md)."""
from __future__ import annotations

import pytest

# pytestmark: the same precondition as the cluster settings' tests.
from test_cluster_nodes import pytestmark, refusal, run  # noqa: F401  pylint: disable=unused-import

SINGLE = {"registry__cluster_hosts": "{{ [inventory_hostname] }}"}
UPSTREAM = "https://upstream.example.net"
EGRESS = [{"name": "upstream", "addresses": ["192.0.2.10"], "port": 443}]
CREDENTIALS = {"username": "mirror", "password": "mirror-s3cret"}
HOOK = {"name": "ci", "url": "https://ci.example.net/hook", "headers": {"Authorization": "Bearer hook-s3cret"},
        "ignored_actions": ["pull"], "ignored_media_types": ["application/octet-stream"]}


def preflight(tmp_path, **settings) -> object:
    return run(tmp_path, ["preflight"], dict(SINGLE, **settings))


def test_valid_mirrors_and_webhooks_pass(tmp_path):
    for settings in ({"registry__mirror": {"upstream": "http://hub.internal:5000"}},
                     {"registry__mirror": dict(CREDENTIALS, upstream=UPSTREAM, egress=EGRESS),
                      "registry__mirror_egress_enforced": True, "registry__webhooks": [HOOK]}):
        result = preflight(tmp_path, **settings)
        assert result.returncode == 0, result.stdout[-3000:]
        assert "hook-s3cret" not in result.stdout and "mirror-s3cret" not in result.stdout


@pytest.mark.parametrize("mirror, enforced", [
    (dict(CREDENTIALS, upstream="http://upstream.example.net", egress=EGRESS), True),  # credentials over http
    (dict(CREDENTIALS, upstream=UPSTREAM, egress=EGRESS), False),                     # no firewall
    (dict(CREDENTIALS, upstream=UPSTREAM), True),                                     # no egress allowlist
    ({"upstream": "ftp://upstream.example.net"}, False),                              # not http(s)
])
def test_unsafe_mirrors_are_refused(tmp_path, mirror, enforced):
    message = refusal(preflight(tmp_path, registry__mirror=mirror, registry__mirror_egress_enforced=enforced))
    assert "Invalid pull-through mirror settings" in message and "CVE-2026-33540" in message
    assert "mirror-s3cret" not in message


def test_a_cache_ttl_is_refused_as_distribution_2_8_has_none(tmp_path):
    message = refusal(preflight(tmp_path, registry__mirror={"upstream": UPSTREAM, "ttl": "24h"}))
    assert "ttl" in message and "registry__mirror" in message


@pytest.mark.parametrize("hooks", [
    [HOOK, HOOK],                                    # names not unique
    [dict(HOOK, name="dockyard-audit")],             # the audit endpoint's name
    [dict(HOOK, url="ftp://ci.example.net/hook")],
    [dict(HOOK, ignored_actions=["pul"])],
    [dict(HOOK, timeout="five seconds")],
])
def test_bad_webhooks_are_refused(tmp_path, hooks):
    message = refusal(preflight(tmp_path, registry__webhooks=hooks))
    assert "is invalid" in message or "registry__webhooks" in message, message
    assert "hook-s3cret" not in message
