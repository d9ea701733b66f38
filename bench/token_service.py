"""Token requests per second through the real token service (gunicorn on loopback).

Starts the service twice under Debian's gunicorn (``/usr/bin/python3 -m gunicorn``), on
a throwaway key and store holding one user hashed at the production bcrypt cost:

* warm: credential cache on (the first request of each worker pays bcrypt, the rest hit
  the cache), the usual case of a client pulling many repositories;
* cold: cache off, every request pays bcrypt;
* anonymous: no credentials (scope parsing, grants and ES256 signing only);
* refused: a wrong password once the failed-login limit refuses it (429, no bcrypt).

Bounded (``--requests``/``--cold-requests``), stops by itself, prints one table. Besides
requests/s (which depends on what else the machine runs, the client included), it prints
the CPU time the service's processes spent per request, which depends far less on it.
``--files`` runs another checkout's service (e.g. ``git archive`` of main) to compare.

    /usr/bin/python3 bench/token_service.py [--workers 2] [--clients 8] [--requests 3000] [--cold-requests 60]
                                            [--files DIR_WITH_dockyard_token]
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
FILES = ROOT / "roles" / "token_service" / "files"
sys.path.insert(0, str(FILES))

from dockyard_token import _accounts  # noqa: E402  pylint: disable=wrong-import-position

SERVICE = "registry.bench"
SCOPES = "service=%s&scope=repository:team-a/app:pull,push&scope=repository:team-b/app:pull" % SERVICE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def has_limits(files: pathlib.Path) -> bool:
    """Does this checkout of the service limit failed logins (and know the limits_dir setting)?"""
    return (files / "dockyard_token" / "limits.py").exists()


def start(workdir: pathlib.Path, name: str, cache_ttl: int, workers: int, files: pathlib.Path) -> tuple:
    port = free_port()
    config = workdir / ("%s.json" % name)
    settings = {
        "issuer": "bench", "service": SERVICE, "key": str(workdir / "key.pem"), "certificate": str(workdir / "cert.pem"),
        "store": str(workdir / "accounts.json"), "lifetime": 300, "cache_ttl": cache_ttl,
        "audit_log": str(workdir / ("%s-audit.jsonl" % name)), "audit_stdout": False,
    }
    if has_limits(files):  # a refusal that outlasts the run, however slow the machine
        settings.update(limits_dir=str(workdir / ("%s-limits" % name)), limit_delay=3600, limit_max_delay=3600)
    config.write_text(json.dumps(settings))
    log = open(workdir / ("%s.log" % name), "wb")  # pylint: disable=consider-using-with
    process = subprocess.Popen(
        ["/usr/bin/python3", "-m", "gunicorn", "--bind", "127.0.0.1:%d" % port, "--workers", str(workers),
         "--chdir", str(files), "--log-level", "warning", "dockyard_token.wsgi:application"],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, DOCKYARD_TOKEN_CONFIG=str(config)))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("gunicorn did not start: %s" % (workdir / ("%s.log" % name)).read_text())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (gunicorn's master and workers)."""
    total = 0
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == pid or int(fields[1]) == pid:  # fields[1]: the parent's pid
            total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def measure(process: subprocess.Popen, port: int, total: int, clients: int, authorization: str | None,
            expect: int = 200) -> tuple:
    """hammer() plus the service's CPU time per request, in microseconds."""
    before = cpu_seconds(process.pid)
    result = hammer(port, total, clients, authorization, expect)
    return result[:3] + ((cpu_seconds(process.pid) - before) / total * 1e6,) + result[3:]


def hammer(port: int, total: int, clients: int, authorization: str | None, expect: int = 200) -> tuple:
    latencies: list = []
    errors: list = []
    lock = threading.Lock()
    counter = iter(range(total))

    def client() -> None:
        headers = {"Authorization": authorization} if authorization else {}
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            started = time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("GET", "/auth/token?" + SCOPES, headers=headers)
            response = connection.getresponse()
            body = response.read()
            connection.close()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if response.status != expect or (expect == 200 and b'"token"' not in body):
                    errors.append(response.status)

    threads = [threading.Thread(target=client) for _index in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return (len(latencies) / wall, latencies[len(latencies) // 2] * 1000,
            latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, len(errors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--cold-requests", type=int, default=60)
    parser.add_argument("--bcrypt-cost", type=int, default=_accounts.BCRYPT_ROUNDS)
    parser.add_argument("--files", type=pathlib.Path, default=FILES,
                        help="directory holding the dockyard_token package to run (default: this checkout's)")
    args = parser.parse_args()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="dockyard-token-bench-"))
    processes = []
    try:
        subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out",
                        str(workdir / "key.pem")], check=True, capture_output=True)
        subprocess.run(["openssl", "req", "-new", "-x509", "-key", str(workdir / "key.pem"), "-out",
                        str(workdir / "cert.pem"), "-days", "1", "-subj", "/CN=bench"], check=True, capture_output=True)
        store = _accounts.empty_store()
        store["users"]["bench"] = {"password_hash": _accounts.hash_secret("bench-password", args.bcrypt_cost),
                                   "groups": ["team-a"]}
        store["rules"] = [{"subject": "group:team-a", "repository": "team-a/*", "actions": ["pull", "push"]},
                          {"subject": "anonymous", "repository": "public/*", "actions": ["pull"]}]
        _accounts.write_store(str(workdir / "accounts.json"), store)
        authorization = "Basic " + base64.b64encode(b"bench:bench-password").decode()
        warm, warm_port = start(workdir, "warm", 60, args.workers, args.files)
        processes.append(warm)
        cold, cold_port = start(workdir, "cold", 0, args.workers, args.files)
        processes.append(cold)
        hammer(warm_port, args.clients * 4, args.clients, authorization)  # let every worker fill its cache
        rows = [
            ("warm cache (user)", args.requests) + measure(warm, warm_port, args.requests, args.clients, authorization),
            ("anonymous", args.requests) + measure(warm, warm_port, args.requests, args.clients, None),
        ]
        if has_limits(args.files):
            wrong = "Basic " + base64.b64encode(b"bench:wrong-password").decode()
            hammer(warm_port, 10, 1, wrong, expect=401)  # the default limit: 10 failures, then 429
            rows.append(("refused (failed-login limit)", args.requests)
                        + measure(warm, warm_port, args.requests, args.clients, wrong, 429))
        rows.append(("cold cache (bcrypt cost %d)" % args.bcrypt_cost, args.cold_requests)
                    + measure(cold, cold_port, args.cold_requests, args.clients, authorization))
        print("token service (%s): %d gunicorn sync workers, %d concurrent clients, %d CPUs, 2 scopes per request"
              % (args.files, args.workers, args.clients, os.cpu_count() or 0))
        print("%-28s %9s %10s %9s %9s %13s %7s" % ("case", "requests", "req/s", "p50 ms", "p99 ms", "service CPU us",
                                                   "errors"))
        for name, count, rate, p50, p99, cpu, errors in rows:
            print("%-28s %9d %10.1f %9.1f %9.1f %13.0f %7d" % (name, count, rate, p50, p99, cpu, errors))
        if any(row[-1] for row in rows):
            raise SystemExit(1)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
