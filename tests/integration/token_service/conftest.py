"""Fixtures: a real token stack on loopback (see token_stack.py)."""
from __future__ import annotations

import json
import secrets
import subprocess
import typing as t

import pytest

from token_stack import (ISSUER, SERVICE, Stack, free_port, start_service, stop_processes, wait_http,
                         write_key_pair)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> t.Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("token-stack")
    key, cert, key_path, cert_path = write_key_pair(workdir, "token")
    registry_port, token_port, events_port = free_port(), free_port(), free_port()
    events_secret = secrets.token_urlsafe(32)
    (workdir / "events.secret").write_text(events_secret + "\n")
    store_path = workdir / "token" / "accounts.json"
    audit_log = workdir / "audit.jsonl"
    token_config = {
        "issuer": ISSUER, "service": SERVICE, "key": str(key_path), "certificate": str(cert_path),
        "store": str(store_path), "lifetime": 300, "cache_ttl": 60, "audit_log": str(audit_log),
        "audit_stdout": True, "events_listen": "127.0.0.1:%d" % events_port,
        "events_secret_file": str(workdir / "events.secret"), "limits_dir": str(workdir / "limits"),
    }
    (workdir / "registry.yml").write_text(json.dumps({
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}, "delete": {"enabled": True}},
        "http": {"addr": "127.0.0.1:%d" % registry_port, "secret": "integration-test-secret"},
        "auth": {"token": {"realm": "http://127.0.0.1:%d/auth/token" % token_port, "service": SERVICE,
                           "issuer": ISSUER, "rootcertbundle": str(cert_path)}},
        # The shape of the role's fact token_service__registry_notification (backoff shortened).
        "notifications": {"endpoints": [{
            "name": "dockyard-audit", "url": "http://127.0.0.1:%d/events" % events_port,
            "headers": {"Authorization": ["Bearer " + events_secret]},
            "timeout": "2s", "threshold": 5, "backoff": "1s", "ignore": {"actions": []},
        }]},
    }))
    processes = [start_service(workdir, token_config, ["127.0.0.1:%d" % token_port, "127.0.0.1:%d" % events_port])]
    try:
        registry_log = workdir / "registry.log"
        with open(registry_log, "wb") as log:
            processes.append(subprocess.Popen(["docker-registry", "serve", str(workdir / "registry.yml")],
                                              stdout=log, stderr=subprocess.STDOUT))
        wait_http("http://127.0.0.1:%d/v2/" % registry_port, processes[-1], registry_log)
        yield Stack("http://127.0.0.1:%d" % registry_port, "http://127.0.0.1:%d/auth/token" % token_port,
                    "127.0.0.1:%d" % registry_port, key, cert, store_path, audit_log, workdir,
                    "http://127.0.0.1:%d/events" % events_port, events_secret)
    finally:
        stop_processes(processes)
