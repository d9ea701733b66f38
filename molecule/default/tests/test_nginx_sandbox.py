"""nginx in its systemd sandbox: what applied to the processes, and that reload, log rotation and a
new certificate still work. Shared by the scenarios (each runs it through its verifier settings)."""
from __future__ import annotations

import uuid

from registry_checks import REGISTRY

# CAP_CHOWN 0, CAP_DAC_OVERRIDE 1, CAP_SETGID 6, CAP_SETUID 7, CAP_NET_BIND_SERVICE 10.
MASTER_CAPABILITIES = (1 << 0) | (1 << 1) | (1 << 6) | (1 << 7) | (1 << 10)
AUDIT_LOG = "/var/log/dockyard/gateway/access.log"
CERTIFICATE = "/etc/nginx/tls/registry.crt"
KEY = "/etc/nginx/tls/registry.key"
SERVED_SERIAL = (f"openssl s_client -connect 127.0.0.1:443 -servername {REGISTRY} </dev/null 2>/dev/null "
                 "| openssl x509 -noout -serial")


def _workers(instance) -> set[int]:
    return {int(pid) for pid in instance.run("pgrep -u www-data -x nginx").stdout.split()}


def _answers(instance) -> None:
    """The gateway answers a /v2/ request (401 without credentials, in either auth mode)."""
    code = instance.run(f"curl -sS -o /dev/null -w '%{{http_code}}' https://{REGISTRY}/v2/").stdout
    assert code == "401", code


def test_master_keeps_only_the_capabilities_it_needs(instance):
    status = instance.proc_status(instance.main_pid("nginx"))
    assert status["Uid"].split() == ["0"] * 4
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"
    assert int(status["CapBnd"], 16) == MASTER_CAPABILITIES
    assert int(status["CapEff"], 16) == MASTER_CAPABILITIES
    assert int(status["CapAmb"], 16) == 0
    limits = instance.run(f"cat /proc/{instance.main_pid('nginx')}/limits").stdout
    assert "Max open files            16384                16384" in limits


def test_workers_run_as_www_data_without_capabilities(instance):
    workers = _workers(instance)
    assert workers
    for pid in workers:
        status = instance.proc_status(pid)
        assert status["Uid"].split() == ["33"] * 4 and status["Gid"].split() == ["33"] * 4
        assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
        assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"


def test_only_logs_cache_and_runtime_are_writable(instance):
    pid = instance.main_pid("nginx")
    mounts = {fields[4]: fields[5].split(",") for fields in
              (line.split() for line in instance.run(f"cat /proc/{pid}/mountinfo").stdout.splitlines())}
    assert "ro" in mounts["/"]
    for path in ("/run", "/var/log/nginx", "/var/log/dockyard/gateway", "/var/lib/nginx",
                 "/var/cache/nginx/dockyard-blobs"):
        assert "rw" in mounts[path], (path, mounts.get(path))
    inside = f"nsenter -t {pid} -m --"
    for path in ("/etc/nginx/tls", "/etc/nginx", "/usr/sbin", "/var/lib/docker-registry", "/var/cache"):
        denied = instance.run(f"{inside} touch {path}/.sandbox-probe", ok=False)
        assert denied.rc != 0 and "Read-only file system" in denied.stderr, (path, denied.stderr)


def test_exposure_score_is_at_most_three(instance):
    score, line = instance.exposure("nginx.service")
    assert score <= 3.0, line


def test_reload_replaces_the_workers_and_keeps_serving(instance):
    master = instance.main_pid("nginx")
    for command in ("nginx -t -q && systemctl reload nginx", "nginx -s reload"):
        before = _workers(instance)
        instance.run(command)
        # The old workers finish their requests and leave; new ones take over.
        instance.wait_until(f"[ -z \"$(ps -o pid= -p {','.join(map(str, before))})\" ]")
        assert instance.main_pid("nginx") == master
        assert _workers(instance).isdisjoint(before)
        _answers(instance)


def test_rotated_audit_log_is_reopened(instance):
    probe = f"/v2/rotation-probe-{uuid.uuid4().hex}/tags/list"
    instance.run(f"curl -sS -o /dev/null https://{REGISTRY}/v2/")
    errors_before = len(instance.host.file("/var/log/nginx/error.log").content_string.splitlines())
    instance.run("logrotate -f /etc/logrotate.d/dockyard-gateway")
    instance.run(f"curl -sS -o /dev/null https://{REGISTRY}{probe}")
    log = instance.host.file(AUDIT_LOG)
    assert log.user == "www-data" and log.group == "adm" and log.mode == 0o640
    instance.wait_until(f"grep -qF {probe} {AUDIT_LOG}")
    assert probe not in instance.host.file(f"{AUDIT_LOG}.1").content_string
    errors = instance.host.file("/var/log/nginx/error.log").content_string.splitlines()[errors_before:]
    assert not [line for line in errors if "[emerg]" in line or "[alert]" in line or "[crit]" in line], errors


def test_a_new_certificate_is_served_after_a_reload(instance):
    original = instance.run(SERVED_SERIAL).stdout.strip()
    instance.run(f"cp -p {CERTIFICATE} /root/registry.crt.saved && cp -p {KEY} /root/registry.key.saved")
    try:
        instance.run(f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 "
                     f"-subj /CN={REGISTRY} -addext subjectAltName=DNS:{REGISTRY} "
                     f"-keyout {KEY} -out {CERTIFICATE} 2>/dev/null")
        renewed = instance.run(f"openssl x509 -in {CERTIFICATE} -noout -serial").stdout.strip()
        assert renewed != original
        instance.run("nginx -t -q && systemctl reload nginx")
        instance.wait_until(f'[ "$({SERVED_SERIAL})" = {renewed} ]')
    finally:
        instance.run(f"mv /root/registry.crt.saved {CERTIFICATE} && mv /root/registry.key.saved {KEY} "
                     "&& systemctl reload nginx")
    instance.wait_until(f'[ "$({SERVED_SERIAL})" = {original} ]')
