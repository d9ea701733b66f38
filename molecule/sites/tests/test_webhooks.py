"""Webhooks (registry__webhooks) from the upstream host to the client's receiver.

The endpoint sends the configured header (its value a stand-in for a vault secret), leaves
out what it ignores (pull events, layer blobs) and sits beside the audit endpoint, which
still records everything.
"""
from __future__ import annotations

import json

from conftest import ADMIN, UPSTREAM, recorded
from registry_checks import wait_for

SECRET = "molecule-webhook-secret"
AUDIT_LOG = "/var/log/dockyard/token/audit.jsonl"


def delivered(client) -> list[tuple[dict, dict]]:
    """Every event the receiver got, with the request that carried it."""
    return [(request, event) for request in recorded(client, "webhook")
            for event in json.loads(request["body"])["events"]]


def test_a_push_is_delivered_with_the_header(client, upstream):
    digest = client.push_image("hooks/app:1", seed="hooks", creds=ADMIN, registry=UPSTREAM)
    client.inspect("hooks/app:1", creds=ADMIN, registry=UPSTREAM)
    # Events go out in order: once the marker's push has arrived, the pull would have too.
    marker = client.push_image("hooks/marker:1", seed="hooks-marker", creds=ADMIN, registry=UPSTREAM)
    events = wait_for(lambda: [pair for pair in delivered(client)
                               if pair[1]["target"].get("digest") == marker], 60)
    assert events, recorded(client, "webhook")

    pairs = delivered(client)
    pushes = [event for _request, event in pairs
              if event["action"] == "push" and event["target"]["repository"] == "hooks/app"]
    assert pushes and {event["target"]["digest"] for event in pushes} == {digest}
    assert all(request["path"] == "/hook" and request["method"] == "POST"
               and request["headers"]["Authorization"] == f"Bearer {SECRET}" for request, _event in pairs)
    # Ignored: every pull, and blobs (application/octet-stream).
    assert {event["action"] for _request, event in pairs} == {"push"}
    assert all(event["target"]["mediaType"] != "application/octet-stream" for _request, event in pairs)

    # The audit endpoint has the pull and the layers as well.
    audit = [json.loads(line) for line in upstream.run(f"grep -F hooks/app {AUDIT_LOG}").stdout.splitlines()]
    actions = {(line["action"], line["media_type"] == "application/octet-stream")
               for line in audit if line["event"] == "registry" and line["repository"] == "hooks/app"}
    assert {("push", False), ("push", True), ("pull", False)} <= actions, actions


def test_the_webhook_secret_stays_out_of_logs_but_distributions_start_line(upstream):
    config = upstream.host.file("/etc/docker/registry/config.yml")
    assert config.mode == 0o640 and config.user == "root" and config.group == "docker-registry"
    assert upstream.run(f"grep -rlF --exclude-dir=journal {SECRET} /var/log || true").stdout.strip() == ""
    # Distribution 2.8 logs every endpoint's headers when it starts, at level info
    # (docs/sites.md, "Webhooks"): the only lines of the journal with the secret.
    lines = upstream.run(f"journalctl --no-pager -o cat | grep -F {SECRET} || true").stdout.splitlines()
    assert lines and all("configuring endpoint client-receiver" in line for line in lines), lines
