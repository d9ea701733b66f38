"""Token-service throughput by kind of login, as ratios measured side by side in one run.

Runs against the instances of the Molecule ``identity`` scenario (converged, not destroyed):

    DOCKYARD_INSTANCE_SUFFIX=-bench .venv/bin/molecule converge -s identity
    DOCKYARD_INSTANCE_SUFFIX=-bench .venv/bin/python bench/identity.py [--rounds 3] [--requests 300]
    DOCKYARD_INSTANCE_SUFFIX=-bench .venv/bin/molecule destroy -s identity

In the registry instance, a client sends token requests (one push+pull scope, Basic
credentials, 2 at once: the service runs 2 workers) straight to the token service's unix
socket, so the gateway's rate limit does not count. The kinds of login:

- ``local``: a local user whose password is in the service's credential cache (the yardstick);
- ``ldap-warm``: a directory user whose last success is cached (``cache_ttl``);
- ``oidc``: a CI job's identity token (RS256), verified in full on every request;
- ``ldap-cold``: a directory user with ``cache_ttl: 0``, so every request makes a new TLS
  connection to slapd, a service-account bind and search, and the user's bind. It is measured
  in a second phase, after the service's configuration is changed and the service restarted,
  paired with ``local`` again; the configuration is put back afterwards.

Each round measures every kind once, in a rotating order; each ratio (requests per second
of a kind over ``local``'s) is paired within a round, and the median of the rounds is
printed with min and max. slapd runs in its own instance on the same cores.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys

SUFFIX = os.environ.get("DOCKYARD_INSTANCE_SUFFIX", "")
REGISTRY = f"dockyard-identity{SUFFIX}"
IDP = f"dockyard-idp{SUFFIX}"
CONFIG = "/etc/dockyard/token/config.json"
LOGINS = {"local": ("admin", "molecule-admin-secret"), "ldap": ("carol", "molecule-carol-secret")}
JOB_CLAIMS = {"project_path": "team-a/app", "ref_protected": "true"}
CONCURRENCY = 2

# Runs in the registry instance: COUNT token requests over the unix socket, CONCURRENCY at once.
CLIENT = r'''
import base64, http.client, socket, sys, threading, time
user, password, count, threads = sys.argv[1], sys.stdin.read().strip(), int(sys.argv[2]), int(sys.argv[3])
header = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect("/run/dockyard-token/token.sock")
statuses = []
def worker(n):
    connection = Unix("localhost")
    for _ in range(n):
        connection.request("GET", "/auth/token?scope=repository:team-a/app/web:pull,push", headers={"Authorization": header})
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
        if response.getheader("Connection", "").lower() == "close":
            connection.close()
            connection = Unix("localhost")
started = time.monotonic()
workers = [threading.Thread(target=worker, args=(count // threads,)) for _ in range(threads)]
[w.start() for w in workers]
[w.join() for w in workers]
elapsed = time.monotonic() - started
bad = [s for s in statuses if s != 200]
if bad:
    sys.exit("%d of %d requests failed: %s" % (len(bad), len(statuses), sorted(set(bad))))
print(len(statuses) / elapsed)
'''


def sh(name: str, script: str, stdin: str = "") -> str:
    result = subprocess.run(["docker", "exec", "-i", name, "sh", "-c", script], input=stdin, capture_output=True,
                            text=True, timeout=1800, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{name}: {script[:120]!r} failed ({result.returncode}): {result.stderr[-800:]}")
    return result.stdout


def rate(login: tuple[str, str], requests: int) -> float:
    """Token requests per second for one login."""
    client = shlex.quote(CLIENT)
    return float(sh(REGISTRY, f"python3 -c {client} {shlex.quote(login[0])} {requests} {CONCURRENCY}", login[1]))


def job_token() -> tuple[str, str]:
    claims = shlex.quote(json.dumps(JOB_CLAIMS))
    return "oidc", sh(IDP, f"oidc-issuer mint --issuer ci --kid ci-1 --claims {claims}").strip()


def set_ldap_cache_ttl_zero() -> None:
    """Keep the configuration's bytes aside, write it with ldap.cache_ttl 0, restart the service."""
    sh(REGISTRY, f"cp -p {CONFIG} {CONFIG}.bench && python3 - {CONFIG} <<'EOF'\n"
                 "import json, os, sys\n"
                 "path = sys.argv[1]\n"
                 "config = json.load(open(path))\n"
                 "config['ldap']['cache_ttl'] = 0\n"
                 "with open(path + '.new', 'w') as handle: json.dump(config, handle)\n"
                 "os.chmod(path + '.new', 0o640); os.chown(path + '.new', 0, os.stat(path).st_gid)\n"
                 "os.replace(path + '.new', path)\n"
                 "EOF\n"
                 "systemctl restart dockyard-token.service")


def restore_config() -> None:
    sh(REGISTRY, f"mv {CONFIG}.bench {CONFIG} && systemctl restart dockyard-token.service")


def measure(kinds: dict, rounds: int, requests: int) -> dict:
    """{kind: [(requests per second, ratio to local), ...]} over the rounds."""
    results: dict = {kind: [] for kind in kinds}
    for round_number in range(rounds):
        order = list(kinds)
        order = order[round_number % len(order):] + order[:round_number % len(order)]
        rates = {kind: rate(kinds[kind](), requests) for kind in order}
        for kind in kinds:
            results[kind].append((rates[kind], rates[kind] / rates["local"]))
        print(f"round {round_number + 1}: " + ", ".join(f"{kind} {value:.0f}/s" for kind, value in rates.items()),
              file=sys.stderr)
    return results


def report(results: dict) -> None:
    for kind, values in results.items():
        per_second = statistics.median(value for value, _ratio in values)
        ratios = [ratio for _value, ratio in values]
        print(f"{kind:10} {per_second:8.0f} tokens/s   {kind}/local {statistics.median(ratios):.2f} "
              f"(min {min(ratios):.2f}, max {max(ratios):.2f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300, help="token requests per kind and round")
    options = parser.parse_args()
    print(f"{options.rounds} rounds, {options.requests} token requests per kind and round, {CONCURRENCY} at once")
    for login in LOGINS.values():  # warm the caches (and check that each login works)
        rate(login, CONCURRENCY * 2)
    warm = measure({"local": lambda: LOGINS["local"], "ldap-warm": lambda: LOGINS["ldap"], "oidc": job_token},
                   options.rounds, options.requests)
    set_ldap_cache_ttl_zero()
    try:
        rate(LOGINS["local"], CONCURRENCY * 2)
        cold = measure({"local": lambda: LOGINS["local"], "ldap-cold": lambda: LOGINS["ldap"]},
                       options.rounds, max(options.requests // 5, CONCURRENCY * 10))
    finally:
        restore_config()
    report(warm)
    print("with ldap cache_ttl 0 (fewer requests per round):")
    report(cold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
