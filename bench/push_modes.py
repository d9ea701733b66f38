"""Push time of one image direct, through the htpasswd gateway and through the token gateway.

Everything runs on loopback in one temporary directory and stops by itself:

* direct: a docker-registry 2.8 (filesystem storage, no auth), plain HTTP;
* htpasswd: nginx (TLS, HTTP/2, ``auth_basic`` with a bcrypt cost 10 line, the production
  default) in front of a second such registry;
* token: nginx (TLS, HTTP/2, no auth on ``/v2/``, ``/auth/token`` to the token service over
  a unix socket, rate-limited as in production) in front of a third registry with
  ``auth.token`` and its notifications sent to the token service's events listener; the
  token service is the role's code under Debian's gunicorn (2 sync workers), one user
  hashed at bcrypt cost 12, credential cache 60 s.

The nginx servers run the role's own roles/gateway/templates/nginx.conf.j2, rendered by
tools/gateway_render.py (the blob cache off: every blob is new in every push). The
same OCI image (tools/oci_image.py, ``--layers`` x ``--layer-size`` gzip layers) is
pushed with ``skopeo copy`` to a new repository every time, with a new blob info cache, so
every blob is uploaded (the run fails if one is mounted or skipped). One untimed warm-up
push per mode, then ``--rounds`` rounds, the order of the modes rotating from round to
round. Requests per push are counted from the nginx access logs (direct: from the
registry's request log).

    .venv/bin/python bench/push_modes.py [--rounds 5] [--layers 20] [--layer-size 1M] [--json]
"""
from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import pathlib
import secrets
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import gateway_render  # noqa: E402  pylint: disable=wrong-import-position
TOKEN_FILES = ROOT / "roles" / "token_service" / "files"
OCI_TOOL = ROOT / "tools" / "oci_image.py"
SYSTEM_PYTHON = "/usr/bin/python3"
LOOPBACK = "127.0.0.1"
MODES = ("direct", "htpasswd", "token")
USER = "bench"
HTPASSWD_COST = 10  # gateway__bcrypt_cost
TOKEN_COST = 12  # the token service's store (_accounts.BCRYPT_ROUNDS)
ISSUER = "dockyard-bench"
SERVICE = "registry.bench"
TAG = "1"
START_TIMEOUT = 20
PUSH_TIMEOUT = 300
MB = 1_000_000
NOBODY = 65534
# Clients name the gateway: TLS without SNI (an IP address) is refused, as on a real host.
SERVER_NAME = "localhost"


HEADER = ("mode", "push s", "min-max s", "/direct", "MB/s", "requests", "conns", "401s", "token req", "token ms")


class BenchError(Exception):
    """A failed step of the benchmark, with a message for the operator."""


# --- prerequisites ------------------------------------------------------------------------

def find_binary(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def missing_tools() -> list[str]:
    missing = [name for name in ("docker-registry", "nginx", "skopeo") if find_binary(name) is None]
    probe = [SYSTEM_PYTHON, "-c", "import gunicorn, jwt, bcrypt, cryptography"]
    if not os.path.exists(SYSTEM_PYTHON) or subprocess.run(probe, capture_output=True, check=False).returncode:
        missing.append("%s with gunicorn, jwt, bcrypt, cryptography (Debian: python3-gunicorn python3-jwt "
                       "python3-bcrypt python3-cryptography)" % SYSTEM_PYTHON)
    return missing


# --- keys and certificates ----------------------------------------------------------------

def write_key(path: pathlib.Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return key


def certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None = None,
                issuer_key: ec.EllipticCurvePrivateKey | None = None) -> x509.Certificate:
    """Self-signed CA (no issuer) or a server certificate for 127.0.0.1; valid one day."""
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).public_key(key.public_key())
               .issuer_name(issuer.subject if issuer else name).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1)))
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        return builder.sign(key, hashes.SHA256())
    builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
                                                                 x509.DNSName(SERVER_NAME)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write_certificate(path: pathlib.Path, cert: x509.Certificate) -> pathlib.Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@dataclass
class Tls:
    ca_dir: pathlib.Path  # holds only ca.crt: skopeo's --dest-cert-dir
    cert: pathlib.Path
    key: pathlib.Path


def make_tls(work: pathlib.Path) -> Tls:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it."""
    (work / "ca").mkdir()
    ca_key = write_key(work / "ca.key")
    ca_cert = certificate("Dockyard bench CA", ca_key)
    write_certificate(work / "ca" / "ca.crt", ca_cert)
    server_key = work / "server.key"
    server_cert = certificate(LOOPBACK, write_key(server_key), ca_cert, ca_key)
    return Tls(work / "ca", write_certificate(work / "server.crt", server_cert), server_key)


# --- processes ----------------------------------------------------------------------------

class Processes:
    """Every server this run starts; ``stop`` ends them all (TERM, then KILL after 10 s)."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []

    def start(self, argv: list[str], log: pathlib.Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        with open(log, "ab") as handle:
            process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                                       env=env, start_new_session=True)
        self.running.append(process)
        return process

    def stop(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.terminate()
        for process in self.running:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.running.clear()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, log: pathlib.Path, context: ssl.SSLContext | None = None) -> None:
    """Until ``url`` answers anything over HTTP; a server that exits or stays silent is an error."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError("%s exited: %s" % (process.args[0], log.read_text(errors="replace")[-2000:]))
        try:
            with urllib.request.urlopen(url, timeout=2, context=context):  # noqa: S310 - loopback only
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise BenchError("%s did not answer on %s within %d s" % (process.args[0], url, START_TIMEOUT))


# --- servers ------------------------------------------------------------------------------

def start_registry(procs: Processes, work: pathlib.Path, extra: dict | None = None) -> int:
    """docker-registry with the role's settings (json log at info, no access log); its port."""
    work.mkdir()
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "json", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(work / "data")}, "delete": {"enabled": True},
                    "maintenance": {"uploadpurging": {"enabled": False}}},
        "http": {"addr": "%s:%d" % (LOOPBACK, port), "secret": secrets.token_hex(16),
                 "headers": {"X-Content-Type-Options": ["nosniff"]}},
        **(extra or {}),
    }
    (work / "config.yml").write_text(json.dumps(config), encoding="utf-8")
    log = work / "registry.log"
    process = procs.start([str(find_binary("docker-registry")), "serve", str(work / "config.yml")], log)
    wait_ready("http://%s:%d/v2/" % (LOOPBACK, port), process, log)
    return port


@dataclass
class TokenService:
    socket: pathlib.Path
    signing_cert: pathlib.Path
    notification: dict  # one entry of the registry's notifications.endpoints
    audit_log: pathlib.Path


def write_account_store(path: pathlib.Path, password: str) -> None:
    """One user who may push and pull bench/*; the JSON document of docs/token-auth.md."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(TOKEN_COST)).decode()
    store = {"version": 1, "robots": {},
             "users": {USER: {"password_hash": hashed, "groups": [], "disabled": False}},
             "rules": [{"subject": "user:%s" % USER, "repository": "bench/*", "actions": ["pull", "push"]}]}
    path.write_text(json.dumps(store), encoding="utf-8")
    path.chmod(0o600)


def start_token_service(procs: Processes, work: pathlib.Path, password: str) -> TokenService:
    """The role's service under /usr/bin/python3 -m gunicorn, as its unit starts it."""
    work.mkdir()
    signing_cert = write_certificate(work / "signing.crt", certificate(ISSUER, write_key(work / "signing.key")))
    write_account_store(work / "accounts.json", password)
    events_port, events_secret = free_port(), secrets.token_urlsafe(32)
    (work / "events.secret").write_text(events_secret + "\n", encoding="utf-8")
    config = {"issuer": ISSUER, "service": SERVICE, "key": str(work / "signing.key"),
              "certificate": str(signing_cert), "store": str(work / "accounts.json"), "lifetime": 900,
              "cache_ttl": 60, "audit_log": str(work / "audit.jsonl"), "audit_stdout": False,
              "events_listen": "%s:%d" % (LOOPBACK, events_port), "events_secret_file": str(work / "events.secret")}
    (work / "config.json").write_text(json.dumps(config), encoding="utf-8")
    sock = work / "token.sock"
    log = work / "gunicorn.log"
    process = procs.start(
        [SYSTEM_PYTHON, "-m", "gunicorn", "--bind", "unix:%s" % sock, "--bind", config["events_listen"],
         "--workers", "2", "--worker-class", "sync", "--chdir", str(TOKEN_FILES), "--log-level", "warning",
         "dockyard_token.wsgi:application"],
        log, env=dict(os.environ, DOCKYARD_TOKEN_CONFIG=str(work / "config.json")))
    wait_ready("http://%s/healthz" % config["events_listen"], process, log)
    sock.chmod(0o666)  # nginx's workers (www-data) connect; on a host the socket's group does it
    notification = {"name": "dockyard-audit", "url": "http://%s/events" % config["events_listen"],
                    "headers": {"Authorization": ["Bearer " + events_secret]},
                    "timeout": "2s", "threshold": 5, "backoff": "5s", "ignore": {"actions": []}}
    return TokenService(sock, signing_cert, notification, work / "audit.jsonl")


def start_nginx(procs: Processes, work: pathlib.Path, registry_port: int, tls: Tls, password: str = "",
                token_socket: pathlib.Path | None = None, port: int = 0) -> int:
    """A gateway on the role's own nginx.conf: htpasswd mode with ``password``, token mode with ``token_socket``; its port."""
    work.mkdir()
    htpasswd = None
    if password:
        htpasswd = work / "htpasswd"
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(HTPASSWD_COST)).decode()
        htpasswd.write_text("%s:%s\n" % (USER, hashed), encoding="utf-8")
    port = port or free_port()
    variables = gateway_render.loopback_vars(
        work, https_port=port, http_port=free_port(), registry="%s:%d" % (LOOPBACK, registry_port),
        certificate=tls.cert, key=tls.key, auth="token" if token_socket else "htpasswd",
        token="unix:%s" % token_socket if token_socket else "", htpasswd=htpasswd,
        # Every blob is new in every push: the cache is not what this benchmark compares.
        gateway__blob_cache_enabled=False)
    try:
        conf = gateway_render.render(work / "nginx.conf", variables)
    except gateway_render.RenderError as error:
        raise BenchError(str(error)) from error
    log = work / "error.log"
    process = procs.start(gateway_render.nginx_argv(conf), log)
    wait_ready("https://%s:%d/v2/" % (SERVER_NAME, port), process, log,
               ssl.create_default_context(cafile=str(tls.ca_dir / "ca.crt")))
    return port


# --- pushing and counting -----------------------------------------------------------------

@dataclass
class Target:
    """Where one mode pushes, and the log that shows its requests."""

    mode: str
    host: str
    flags: list[str]
    log: pathlib.Path
    offsets: list[int] = field(default_factory=list)  # log size before each push


def build_image(work: pathlib.Path, layers: int, layer_size: str) -> pathlib.Path:
    layout = work / "image"
    argv = [sys.executable, str(OCI_TOOL), str(layout), "--tag", TAG, "--layers", str(layers),
            "--layer-size", layer_size, "--seed", "push-modes"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode:
        raise BenchError("tools/oci_image.py failed: %s" % done.stderr.strip())
    return layout


def image_size(layout: pathlib.Path) -> tuple[int, int]:
    """Blobs (layers and config) and their bytes, as pushed."""
    index = json.loads((layout / "index.json").read_text(encoding="utf-8"))
    digest = index["manifests"][0]["digest"].split(":", 1)[1]
    manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text(encoding="utf-8"))
    blobs = [manifest["config"], *manifest["layers"]]
    return len(blobs), sum(blob["size"] for blob in blobs)


def push(target: Target, layout: pathlib.Path, repository: str, work: pathlib.Path) -> float:
    """Wall seconds of one ``skopeo copy`` to a new repository."""
    target.offsets.append(target.log.stat().st_size if target.log.exists() else 0)
    # skopeo remembers where it pushed blobs and mounts them from there next time instead of
    # uploading them. Every push gets its own, empty blob info cache: containers/image keeps
    # it in $XDG_DATA_HOME only for a non-root UID, which _CONTAINERS_ROOTLESS_UID sets.
    cache = pathlib.Path(tempfile.mkdtemp(prefix="skopeo-cache-", dir=work))
    env = dict(os.environ, XDG_DATA_HOME=str(cache), _CONTAINERS_ROOTLESS_UID=str(os.geteuid() or NOBODY))
    argv = [str(find_binary("skopeo")), "copy", "--quiet", "--retry-times", "0", *target.flags,
            "oci:%s:%s" % (layout, TAG), "docker://%s/%s:%s" % (target.host, repository, TAG)]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=PUSH_TIMEOUT)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise BenchError("%s push to %s failed: %s" % (target.mode, repository, done.stderr.strip()[-1500:]))
    return seconds


@dataclass
class Counts:
    requests: int = 0
    connections: int = 0  # TCP (and TLS) connections the client opened
    unauthorized: int = 0
    token_requests: int = 0
    token_seconds: float = 0.0
    uploads: int = 0  # blob uploads completed (PUT .../blobs/uploads/UUID?digest= answered 201)
    mounts: int = 0  # cross-repository mounts (POST .../blobs/uploads/?mount= answered 201)
    throttled: int = 0  # 429 from the token rate limit


def request_fields(line: str) -> tuple[str, str, int, float, str] | None:
    """(method, path, status, seconds, connection) of a gateway access log line or a registry request log line."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if "uri" in entry:  # nginx, dockyard_audit format
        return entry["method"], entry["uri"], int(entry["status"]), float(entry["duration"]), entry["connection"]
    if str(entry.get("msg", "")).startswith("response completed"):  # docker-registry
        path = entry["http.request.uri"].split("?", 1)[0]
        return (entry["http.request.method"], path, int(entry["http.response.status"]), 0.0,
                entry["http.request.remoteaddr"])
    return None


def count(lines: t.Iterable[str]) -> Counts:
    counts = Counts()
    connections = set()
    for line in lines:
        fields = request_fields(line)
        if fields is None:
            continue
        method, path, status, seconds, connection = fields
        connections.add(connection)
        counts.requests += 1
        counts.unauthorized += status == 401
        counts.throttled += status == 429
        if path == "/auth/token":
            counts.token_requests += 1
            counts.token_seconds += seconds
        elif "/blobs/uploads/" in path and status == 201:
            counts.uploads += method == "PUT"
            counts.mounts += method == "POST"
    counts.connections = len(connections)
    return counts


def counts_per_push(target: Target) -> list[Counts]:
    """One Counts per push, from the log between one push's start and the next's (or the end)."""
    data = target.log.read_bytes()
    bounds = [*target.offsets, len(data)]
    return [count(data[start:end].decode(errors="replace").splitlines()) for start, end in zip(bounds, bounds[1:])]


# --- the run ------------------------------------------------------------------------------

def start_all(procs: Processes, work: pathlib.Path, password: str) -> dict[str, Target]:
    tls = make_tls(work)
    direct_port = start_registry(procs, work / "registry-direct")
    basic_port = start_nginx(procs, work / "nginx-htpasswd", start_registry(procs, work / "registry-htpasswd"),
                             tls, password=password)
    token = start_token_service(procs, work / "token-service", password)
    token_port = free_port()
    registry_port = start_registry(procs, work / "registry-token", {
        "auth": {"token": {"realm": "https://%s:%d/auth/token" % (LOOPBACK, token_port), "service": SERVICE,
                           "issuer": ISSUER, "rootcertbundle": str(token.signing_cert)}},
        "notifications": {"endpoints": [token.notification]}})
    # The registry's realm names the token gateway: its port is chosen first.
    start_nginx(procs, work / "nginx-token", registry_port, tls, token_socket=token.socket, port=token_port)
    creds = "%s:%s" % (USER, password)
    gateway_flags = ["--dest-cert-dir", str(tls.ca_dir), "--dest-creds", creds]
    return {
        "direct": Target("direct", "%s:%d" % (LOOPBACK, direct_port), ["--dest-tls-verify=false", "--dest-no-creds"],
                         work / "registry-direct" / "registry.log"),
        "htpasswd": Target("htpasswd", "%s:%d" % (SERVER_NAME, basic_port), gateway_flags,
                           work / "nginx-htpasswd" / "access.log"),
        "token": Target("token", "%s:%d" % (SERVER_NAME, token_port), gateway_flags, work / "nginx-token" / "access.log"),
    }


def run_rounds(targets: dict[str, Target], layout: pathlib.Path, rounds: int, work: pathlib.Path) -> dict[str, list]:
    """Seconds per mode and round; a warm-up push per mode first (recorded under its own key)."""
    seconds: dict[str, list] = {mode: [] for mode in MODES}
    for mode in MODES:
        push(targets[mode], layout, "bench/%s-warmup" % mode, work)
    for number in range(rounds):
        order = MODES[number % len(MODES):] + MODES[:number % len(MODES)]
        for mode in order:
            seconds[mode].append(push(targets[mode], layout, "bench/%s-%d" % (mode, number), work))
            print("round %d %-9s %6.2f s" % (number + 1, mode, seconds[mode][-1]), file=sys.stderr)
    return seconds


def check_uploads(mode: str, pushes: list[Counts], blobs: int) -> None:
    """Every push must have uploaded every blob: nothing skipped, nothing mounted."""
    for number, counts in enumerate(pushes):
        if counts.uploads != blobs or counts.mounts or counts.throttled:
            raise BenchError("%s push %d uploaded %d of %d blobs, mounted %d, got %d 429s: the comparison is void"
                             % (mode, number, counts.uploads, blobs, counts.mounts, counts.throttled))


def median_of(pushes: list[Counts], name: str) -> float:
    return statistics.median(getattr(counts, name) for counts in pushes)


def table(seconds: dict[str, list], counts: dict[str, list[Counts]], args: argparse.Namespace,
          size: tuple[int, int]) -> str:
    blobs, total = size
    direct = statistics.median(seconds["direct"])
    lines = ["image: %d layers x %s + config = %d blobs, %.1f MB; %d rounds, modes interleaved; "
             "median wall time of skopeo copy, %d CPUs"
             % (args.layers, args.layer_size, blobs, total / MB, args.rounds, os.cpu_count() or 0),
             "%-9s %7s %12s %8s %6s %9s %6s %5s %10s %9s" % HEADER]
    for mode in MODES:
        wall = statistics.median(seconds[mode])
        pushes = counts[mode]
        token = ("%10.0f %9.0f" % (median_of(pushes, "token_requests"), median_of(pushes, "token_seconds") * 1000)
                 if mode == "token" else "%10s %9s" % ("-", "-"))
        spread = "%.2f-%.2f" % (min(seconds[mode]), max(seconds[mode]))
        lines.append("%-9s %7.2f %12s %8.2f %6.1f %9.0f %6.0f %5.0f %s" % (
            mode, wall, spread, wall / direct, total / MB / wall, median_of(pushes, "requests"),
            median_of(pushes, "connections"), median_of(pushes, "unauthorized"), token))
    token_ms = [item.token_seconds * 1000 for item in counts["token"]]
    lines.append("requests, connections, 401s, token requests and ms per push (median) from the nginx access logs "
                 "(direct: the registry's request log)")
    lines.append("token service: %.0f token request(s) per push, %.0f-%.0f ms per push (nginx $request_time), "
                 "%.1f %% of the median token push"
                 % (median_of(counts["token"], "token_requests"), min(token_ms), max(token_ms),
                    statistics.median(token_ms) / 10 / statistics.median(seconds["token"])))
    return "\n".join(lines)


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed pushes per mode, 3-20; the median is shown")
    parser.add_argument("--layers", type=int, default=20, help="layers of the image, 1-64")
    parser.add_argument("--layer-size", default="1M", help="size of each layer (tools/oci_image.py), at most 64M")
    parser.add_argument("--json", action="store_true", help="print every push's seconds and counts as JSON too")
    args = parser.parse_args(argv)
    size = args.layer_size.strip().upper()
    multiplier = {"K": 1 << 10, "M": 1 << 20}.get(size[-1:], 1)
    digits = size[:-1] if size[-1:] in "KM" else size
    if not digits.isdigit() or not 0 < int(digits) * multiplier <= 64 << 20:
        parser.error("--layer-size is a size like 512K or 1M, at most 64M")
    if not 3 <= args.rounds <= 20 or not 1 <= args.layers <= 64:
        parser.error("keep it bounded: 3-20 rounds, 1-64 layers")
    return args


def measure(args: argparse.Namespace, work: pathlib.Path) -> tuple[dict, dict, tuple[int, int]]:
    layout = build_image(work, args.layers, args.layer_size)
    size = image_size(layout)
    procs = Processes()
    try:
        targets = start_all(procs, work, secrets.token_urlsafe(24))
        seconds = run_rounds(targets, layout, args.rounds, work)
    finally:
        procs.stop()  # nginx and the registries have written every log line once they have exited
    counts = {}
    for mode, target in targets.items():
        pushes = counts_per_push(target)
        check_uploads(mode, pushes, size[0])
        counts[mode] = pushes[1:]  # without the warm-up push
    return seconds, counts, size


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    missing = missing_tools()
    if missing:
        print("bench/push_modes.py: missing %s" % "; ".join(missing), file=sys.stderr)
        return 2
    work = gateway_render.workdir("dockyard-push-modes-")  # nginx's workers (www-data) read in it
    try:
        seconds, counts, size = measure(args, work)
    except (BenchError, subprocess.TimeoutExpired) as error:
        print("bench/push_modes.py: %s" % error, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(seconds, counts, args, size))
    if args.json:
        print(json.dumps({mode: {"seconds": seconds[mode], "counts": [vars(item) for item in counts[mode]]}
                          for mode in MODES}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
