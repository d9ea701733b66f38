"""The registry service: reachable only through the gateway, sandboxed, limited, its secret kept."""
from __future__ import annotations

SOCKET = "/run/docker-registry/registry.sock"


def test_services_run_and_start_at_boot(host):
    for unit in ("docker-registry", "nginx", "cron"):
        service = host.service(unit)
        assert service.is_running and service.is_enabled, unit


def test_registry_listens_on_no_tcp_port_but_its_loopback_metrics(instance):
    # By address: without CAP_SYS_PTRACE, as in these containers, ss cannot name the process.
    listeners = instance.run("ss -Hltn").stdout
    assert " 127.0.0.1:5002 " in listeners and ":5000 " not in listeners, listeners
    metrics = instance.run("curl -sS http://127.0.0.1:5002/metrics").stdout
    assert "registry_http_requests_total" in metrics


def test_only_the_gateway_may_open_the_socket(instance):
    socket = instance.host.file(SOCKET)
    assert socket.is_socket and socket.user == "docker-registry" and socket.group == "www-data"
    assert socket.mode & 0o007 == 0
    probe = f"curl -sS -o /dev/null -w '%{{http_code}}' --unix-socket {SOCKET} http://localhost/v2/"
    assert instance.run(f"runuser -u www-data -- {probe}").stdout == "200"
    connect = f"import socket; socket.socket(socket.AF_UNIX).connect('{SOCKET}')"
    denied = instance.run(f"runuser -u nobody -- python3 -c \"{connect}\"", ok=False)
    assert denied.rc != 0 and "PermissionError" in denied.stderr


def test_registry_process_is_sandboxed_and_limited(instance):
    pid = instance.main_pid("docker-registry")
    fields = instance.proc_status(pid)
    assert fields["NoNewPrivs"] == "1"
    assert fields["Seccomp"] == "2"
    assert int(fields["CapBnd"], 16) == 0 and int(fields["CapEff"], 16) == 0
    limits = instance.run(f"cat /proc/{pid}/limits").stdout
    assert "Max open files            16384                16384" in limits
    # ProtectSystem=strict: / is read-only in the service's mount namespace.
    assert " / " in instance.run(f"grep ' / ' /proc/{pid}/mountinfo").stdout
    assert "ro" in instance.run(f"awk '$5 == \"/\" {{print $6}}' /proc/{pid}/mountinfo").stdout.split(",")


def test_registry_exposure_score_is_at_most_two(instance):
    score, line = instance.exposure("docker-registry.service")
    assert score <= 2.0, line


def test_nginx_workers_have_raised_limits(instance):
    workers = instance.run("pgrep -u www-data -x nginx").stdout.split()
    assert workers
    for pid in workers:
        assert "Max open files            16384                16384" in instance.run(f"cat /proc/{pid}/limits").stdout
    assert "worker_connections 4096;" in instance.host.file("/etc/nginx/nginx.conf").content_string


def test_http_secret_is_private_and_persistent(instance):
    secret = instance.host.file("/etc/docker/registry/http-secret.env")
    assert secret.user == "root" and secret.group == "docker-registry" and secret.mode == 0o640
    value = secret.content_string.strip().split("=", 1)[1]
    assert len(value) >= 32
    assert value not in instance.host.file("/etc/docker/registry/config.yml").content_string
    assert value not in instance.run("journalctl --no-pager -u docker-registry").stdout


def test_packaged_config_is_replaced(instance):
    config = instance.host.file("/etc/docker/registry/config.yml").content_string
    assert "net: unix" in config and ":5000" not in config and "htpasswd" not in config
    assert "enabled: true" in config.split("delete:")[1].splitlines()[1]


def test_package_files_stay_as_debian_ships_them_but_the_replaced_config(instance):
    # dpkg --verify lists what differs from the package (Debian 13 ships a htpasswd conffile).
    report = instance.run("dpkg --verify docker-registry", ok=False).stdout
    assert [line.split()[-1] for line in report.splitlines()] == ["/etc/docker/registry/config.yml"], report


def test_kernel_and_session_limits_are_dropped_in(host):
    sysctl = host.file("/etc/sysctl.d/60-dockyard.conf").content_string
    assert "net.core.somaxconn = 4096" in sysctl and "fs.file-max = 2097152" in sysctl
    assert "nofile 16384" in host.file("/etc/security/limits.d/60-dockyard.conf").content_string


def test_garbage_collection_is_scheduled(host):
    cron = host.file("/etc/cron.d/dockyard-registry-gc").content_string
    assert "17 3 * * 0 root systemd-cat -t dockyard-registry-gc /usr/local/sbin/dockyard-registry-gc" in cron
