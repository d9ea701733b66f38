"""Push and pull throughput of the gateway (nginx, TLS, auth, blob cache) against the registry.

Runs on the demo host made by ``make demo``: this script copies itself into the
``dockyard-demo`` container and measures there (``docker exec``), so every byte stays
inside the container. One image (``--layers`` random blobs of ``--layer-size``) is pushed
and pulled by the same small Registry API v2 client, side by side, in each round:

* direct: HTTP over the registry's unix socket (/run/docker-registry/registry.sock), as root
  (in token mode the registry itself asks for a token, which the client gets as below);
* gateway: https://registry.dockyard.local (TLS checked against the demo CA) as the user
  ``demo``; pulled twice, with the blob cache purged first (cold) and then again (cached).
  The client answers the gateway's 401: a ``Basic`` challenge (htpasswd mode) with the
  password, a ``Bearer`` challenge (token mode) with a token from the challenge's realm,
  asked for with the password and cached per scope; then it retries the request once.

A push is a monolithic upload of every blob (POST, then PUT with the digest) and a manifest
PUT; a pull is the manifest GET and every blob GET, bodies read to the end. Each round
uses new blobs, and the order of direct and gateway alternates between rounds. The table
gives the median MB/s (MB = 10^6 bytes of blob payload) over the rounds and the ratio
gateway/direct, and how many challenges and token requests each client had.
Optionally (``--skopeo``) skopeo copies an image through the gateway too.

    .venv/bin/python bench/gateway.py [--rounds 3] [--layers 3] [--layer-size 32M] [--skopeo]
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import pathlib
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

CONTAINER = "dockyard-demo"
SERVER_NAME = "registry.dockyard.local"
SOCKET = "/run/docker-registry/registry.sock"
CACHE_DIR = "/var/cache/nginx/dockyard-blobs"
WORKDIR = "/root/dockyard-bench"
USER = "demo"
MB = 1_000_000
CHUNK = 1 << 20
TIMEOUT = 300
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

ROOT = pathlib.Path(__file__).resolve().parents[1]
PASSWORD_FILE = ROOT / "inventories" / "demo" / "credentials" / "demo-password"
CA_FILE = ROOT / "inventories" / "demo" / "pki" / "ca.crt"
OCI_TOOL = ROOT / "tools" / "oci_image.py"


class BenchError(Exception):
    """A failed step of the benchmark, with a message for the operator."""


# --- inside the container: a Registry API v2 client ---------------------------------------

class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a unix socket (the registry's only listener)."""

    def __init__(self, path: str, timeout: float = TIMEOUT) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


@dataclass
class Blob:
    data: bytes
    media_type: str
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        self.digest = "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}


@dataclass
class Image:
    config: Blob
    layers: list[Blob]
    manifest: bytes = b""

    def __post_init__(self) -> None:
        body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": self.config.descriptor(),
                "layers": [layer.descriptor() for layer in self.layers]}
        self.manifest = json.dumps(body, sort_keys=True).encode()

    @property
    def blobs(self) -> list[Blob]:
        return [self.config, *self.layers]

    @property
    def size(self) -> int:
        return sum(len(blob.data) for blob in self.blobs)


def random_image(layers: int, layer_size: int) -> Image:
    """New random layers (incompressible, like the gzip layers of a real image) and a config."""
    blobs = [Blob(os.urandom(layer_size), OCI_LAYER) for _layer in range(layers)]
    config = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
              "rootfs": {"type": "layers", "diff_ids": [blob.digest for blob in blobs]}}
    return Image(Blob(json.dumps(config, sort_keys=True).encode(), OCI_CONFIG), blobs)


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """The scheme (lower case) and the parameters of a WWW-Authenticate header."""
    scheme, _space, rest = header.strip().partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', rest))


@dataclass
class Token:
    """A Bearer token and when (time.monotonic()) to stop using it."""

    value: str
    expires: float


class Credentials:
    """Answers a registry's or gateway's challenges as one user: Basic with the password, or Bearer with
    a token from the challenge's realm, asked for with the password (Distribution's token
    auth) and cached per scope until shortly before it expires."""

    def __init__(self, user: str, password: str, context: ssl.SSLContext) -> None:
        self.basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.context = context
        self.tokens: dict[str, Token] = {}
        self.scheme = ""
        self.challenges = 0
        self.token_seconds: list[float] = []

    def preemptive(self) -> str | None:
        """What a new connection sends before any challenge: Basic once the gateway asked for it."""
        return self.basic if self.scheme == "basic" else None

    def answer(self, challenge: str, rejected: str | None) -> str:
        """The Authorization header for a 401's challenge; `rejected` is what that request sent."""
        self.challenges += 1
        self.scheme, params = parse_challenge(challenge)
        if self.scheme == "basic":
            return self.basic
        if self.scheme != "bearer" or "realm" not in params:
            raise BenchError(f"unexpected challenge {challenge!r}")
        return "Bearer " + self.token(params, rejected)

    def token(self, params: dict[str, str], rejected: str | None) -> str:
        scope = params.get("scope", "")
        cached = self.tokens.get(scope)
        if cached and cached.expires > time.monotonic() and "Bearer " + cached.value != rejected:
            return cached.value
        self.tokens[scope] = self.fetch_token(params["realm"], params.get("service", ""), scope)
        return self.tokens[scope].value

    def fetch_token(self, realm: str, service: str, scope: str) -> Token:
        """GET the realm with the Basic credentials, over TLS checked like the gateway's."""
        url = urllib.parse.urlsplit(realm)
        if url.scheme != "https" or not url.hostname:
            raise BenchError(f"token realm {realm!r} is not an https URL")
        query = [("service", service)] if service else []
        query += [("scope", item) for item in scope.split()]
        path = f"{url.path}?{'&'.join(filter(None, [url.query, urllib.parse.urlencode(query)]))}"
        conn = http.client.HTTPSConnection(url.hostname, url.port or 443, timeout=TIMEOUT, context=self.context)
        started = time.perf_counter()
        try:
            conn.request("GET", path, headers={"Authorization": self.basic})
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        self.token_seconds.append(time.perf_counter() - started)
        if response.status != 200:
            raise BenchError(f"token request for {scope or 'no scope'} answered {response.status} {response.reason}")
        answer = json.loads(body)
        value = answer.get("token") or answer.get("access_token")
        if not value:
            raise BenchError(f"token response for {scope or 'no scope'} holds no token")
        lifetime = int(answer.get("expires_in") or 60)
        return Token(value, time.monotonic() + max(lifetime - 10, 0))

    def counts(self) -> dict[str, object]:
        return {"scheme": self.scheme, "challenges": self.challenges, "token_requests": len(self.token_seconds),
                "token_ms": [seconds * 1000 for seconds in self.token_seconds]}


@dataclass
class Endpoint:
    """How to reach one registry: a connection factory, the headers of every request and,
    when it asks for them, the credentials that answer its challenges."""

    name: str
    connect: Callable[[], http.client.HTTPConnection]
    headers: dict[str, str]
    credentials: Credentials | None = None


def direct_endpoint(credentials: Credentials) -> Endpoint:
    """The registry's unix socket. In token mode the registry itself asks for a token (from
    the gateway's realm); with htpasswd it asks for nothing and the credentials stay unused."""
    return Endpoint("direct", lambda: UnixHTTPConnection(SOCKET), {"Host": "localhost"}, credentials)


def gateway_endpoint(context: ssl.SSLContext, credentials: Credentials) -> Endpoint:
    return Endpoint("gateway",
                    lambda: http.client.HTTPSConnection(SERVER_NAME, 443, timeout=TIMEOUT, context=context),
                    {"Host": SERVER_NAME}, credentials)


class Session:
    """One keep-alive connection to an endpoint; every response is read to its end."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.conn = endpoint.connect()
        self.buffer = bytearray(CHUNK)
        self.cache_status: list[str] = []
        self.authorization = endpoint.credentials.preemptive() if endpoint.credentials else None

    def close(self) -> None:
        self.conn.close()

    def send(self, method: str, path: str, body: bytes | None = None,
             headers: dict | None = None) -> http.client.HTTPResponse:
        """The response, body unread. A 401 is answered (Basic or Bearer) and the request sent
        once more; the answer is kept for the next requests of the session."""
        response = self._exchange(method, path, body, headers)
        credentials = self.endpoint.credentials
        if response.status != 401 or credentials is None:
            return response
        response.read()
        self.authorization = credentials.answer(response.getheader("WWW-Authenticate", ""), self.authorization)
        return self._exchange(method, path, body, headers)

    def _exchange(self, method: str, path: str, body: bytes | None, headers: dict | None) -> http.client.HTTPResponse:
        auth = {"Authorization": self.authorization} if self.authorization else {}
        self.conn.request(method, path, body=body, headers={**self.endpoint.headers, **auth, **(headers or {})})
        return self.conn.getresponse()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                expect: tuple[int, ...] = (200,)) -> tuple[http.client.HTTPResponse, int]:
        response = self.send(method, path, body, headers)
        size = self._drain(response)
        if response.status not in expect:
            raise BenchError(f"{self.endpoint.name}: {method} {path} answered {response.status} {response.reason}")
        return response, size

    def _drain(self, response: http.client.HTTPResponse) -> int:
        size = 0
        while True:
            count = response.readinto(self.buffer)
            if not count:
                return size
            size += count

    def push(self, repository: str, image: Image, tag: str) -> None:
        for blob in image.blobs:
            started = self.request("POST", f"/v2/{repository}/blobs/uploads/", expect=(202,))[0]
            location = urllib.parse.urlsplit(started.getheader("Location", ""))
            query = urllib.parse.parse_qsl(location.query) + [("digest", blob.digest)]
            self.request("PUT", f"{location.path}?{urllib.parse.urlencode(query)}", body=blob.data,
                         headers={"Content-Type": "application/octet-stream"}, expect=(201,))
        self.request("PUT", f"/v2/{repository}/manifests/{tag}", body=image.manifest,
                     headers={"Content-Type": OCI_MANIFEST}, expect=(201,))

    def pull(self, repository: str, tag: str) -> int:
        """GET the manifest and every blob it names; the number of blob bytes read."""
        response = self.send("GET", f"/v2/{repository}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
        body = response.read()
        if response.status != 200:
            raise BenchError(f"{self.endpoint.name}: manifest of {repository}:{tag} answered {response.status}")
        manifest = json.loads(body)
        total = 0
        for descriptor in [manifest["config"], *manifest["layers"]]:
            response, size = self.request("GET", f"/v2/{repository}/blobs/{descriptor['digest']}")
            if size != descriptor["size"]:
                raise BenchError(f"{self.endpoint.name}: blob {descriptor['digest']} gave {size} of {descriptor['size']} bytes")
            self.cache_status.append(response.getheader("X-Cache-Status", "-"))
            total += size
        return total


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def purge_blob_cache() -> None:
    for entry in pathlib.Path(CACHE_DIR).iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def run_session(endpoint: Endpoint, action: Callable[[Session], object]) -> tuple[float, list[str]]:
    """Seconds one action takes on a new connection (the TLS handshake included)."""
    session = Session(endpoint)
    try:
        seconds = timed(lambda: action(session))
        return seconds, session.cache_status
    finally:
        session.close()


def check_pull(endpoint: Endpoint, repository: str, image: Image) -> None:
    """Untimed: the registry gives back exactly the blobs that were pushed."""
    session = Session(endpoint)
    try:
        for blob in image.blobs:
            body = session.send("GET", f"/v2/{repository}/blobs/{blob.digest}").read()
            if hashlib.sha256(body).hexdigest() != blob.digest.split(":", 1)[1]:
                raise BenchError(f"{endpoint.name}: blob {blob.digest} came back different")
    finally:
        session.close()


def request_latency(endpoint: Endpoint, count: int = 20) -> float:
    """Median milliseconds of GET /v2/ on one keep-alive connection (auth on every request)."""
    session = Session(endpoint)
    try:
        session.request("GET", "/v2/")
        return statistics.median(timed(lambda: session.request("GET", "/v2/")) for _request in range(count)) * 1000
    finally:
        session.close()


def measure_round(number: int, endpoints: dict[str, Endpoint], args: argparse.Namespace) -> dict[str, float]:
    image = random_image(args.layers, args.layer_size)
    mb = image.size / MB
    rates: dict[str, float] = {}
    order = ["direct", "gateway"] if number % 2 == 0 else ["gateway", "direct"]
    for name in order:
        repository = f"bench/{name}-{number}"
        seconds = run_session(endpoints[name], lambda s, r=repository: s.push(r, image, "1"))[0]
        rates[f"push {name}"] = mb / seconds
        check_pull(endpoints[name], repository, image)
    for name in order:
        repository = f"bench/{name}-{number}"
        if name == "direct":
            seconds = run_session(endpoints[name], lambda s, r=repository: s.pull(r, "1"))[0]
            rates["pull direct"] = mb / seconds
            continue
        purge_blob_cache()
        for phase, want in (("cold", "MISS"), ("cached", "HIT")):
            seconds, status = run_session(endpoints[name], lambda s, r=repository: s.pull(r, "1"))
            if any(value != want for value in status):
                raise BenchError(f"gateway pull {phase}: X-Cache-Status {status}, expected {want} for every blob")
            rates[f"pull {phase} gateway"] = mb / seconds
    return rates


def skopeo_round(number: int, password: str, ca_dir: str, layout: str) -> dict[str, float]:
    """skopeo copy through the gateway: push the layout, pull it back cold and cached."""
    creds = f"{USER}:{password}"
    target = f"docker://{SERVER_NAME}/bench/skopeo-{number}:1"
    base = ["skopeo", "copy", "-q", "--retry-times", "0"]
    size = sum(entry.stat().st_size for entry in pathlib.Path(layout, "blobs", "sha256").iterdir()) / MB
    rates = {"skopeo push": size / timed(lambda: run([*base, "--dest-cert-dir", ca_dir, "--dest-creds", creds,
                                                      f"oci:{layout}:1", target]))}
    purge_blob_cache()
    for phase in ("cold", "cached"):
        pulled = f"{WORKDIR}/skopeo-pulled"
        shutil.rmtree(pulled, ignore_errors=True)
        rates[f"skopeo pull {phase}"] = size / timed(lambda p=pulled: run(
            [*base, "--src-cert-dir", ca_dir, "--src-creds", creds, target, f"oci:{p}:1"]))
    return rates


def run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BenchError(f"{command[0]} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def measure(args: argparse.Namespace) -> dict:
    """Everything measured inside the container; the password arrives on stdin."""
    password = sys.stdin.readline().strip()
    context = ssl.create_default_context(cafile=f"{WORKDIR}/certs/ca.crt")
    endpoints = {"direct": direct_endpoint(Credentials(USER, password, context)),
                 "gateway": gateway_endpoint(context, Credentials(USER, password, context))}
    rounds = [measure_round(number, endpoints, args) for number in range(args.rounds)]
    result = {"rounds": rounds,
              "latency_ms": {name: request_latency(endpoint) for name, endpoint in endpoints.items()}}
    result["auth"] = {name: endpoint.credentials.counts() for name, endpoint in endpoints.items()
                      if endpoint.credentials}
    if args.skopeo:
        layout = f"{WORKDIR}/skopeo-image"
        shutil.rmtree(layout, ignore_errors=True)
        run(["python3", f"{WORKDIR}/oci_image.py", layout, "--tag", "1", "--layers", str(args.layers),
             "--layer-size", str(args.layer_size), "--seed", f"bench-{time.time_ns()}"])
        result["skopeo"] = [skopeo_round(number, password, f"{WORKDIR}/certs", layout) for number in range(args.rounds)]
    return result


# --- on the host: copy in, run, print ------------------------------------------------------

def docker(*command: str, stdin: str | None = None) -> str:
    result = subprocess.run(["docker", *command], input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BenchError(f"docker {command[0]} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def check_demo(container: str) -> str:
    """The demo's password, once the container is known to run a provisioned gateway."""
    try:
        state = docker("inspect", "-f", "{{ .State.Status }}", container).strip()
    except BenchError:
        state = "absent"
    if state != "running":
        raise BenchError(f"the demo container {container} is {state}: run `make demo` first")
    if not PASSWORD_FILE.exists() or not CA_FILE.exists():
        raise BenchError(f"{PASSWORD_FILE} or {CA_FILE} is missing: run `make demo` first")
    return PASSWORD_FILE.read_text(encoding="utf-8").strip()


def copy_in(container: str) -> None:
    docker("exec", container, "mkdir", "-p", f"{WORKDIR}/certs")
    docker("cp", str(pathlib.Path(__file__).resolve()), f"{container}:{WORKDIR}/gateway.py")
    docker("cp", str(OCI_TOOL), f"{container}:{WORKDIR}/oci_image.py")
    docker("cp", str(CA_FILE), f"{container}:{WORKDIR}/certs/ca.crt")


def median(rounds: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def table(result: dict, args: argparse.Namespace) -> str:
    rounds = result["rounds"]
    direct_pull = median(rounds, "pull direct")
    rows = [("push", median(rounds, "push direct"), median(rounds, "push gateway")),
            ("pull, cache cold", direct_pull, median(rounds, "pull cold gateway")),
            ("pull, cache warm", direct_pull, median(rounds, "pull cached gateway"))]
    size = (args.layers * args.layer_size) / MB
    lines = [f"image: {args.layers} x {args.layer_size / (1 << 20):g} MiB random layers ({size:.0f} MB), "
             f"median of {args.rounds} rounds, MB/s of blob payload",
             f"{'operation':<18}{'direct':>10}{'gateway':>10}{'gateway/direct':>16}"]
    lines += [f"{name:<18}{d:>10.0f}{g:>10.0f}{g / d:>16.2f}" for name, d, g in rows]
    latency = result["latency_ms"]
    lines.append(f"{'GET /v2/ (ms)':<18}{latency['direct']:>10.2f}{latency['gateway']:>10.2f}"
                 f"{latency['gateway'] / latency['direct']:>16.1f}")
    overhead = (latency["gateway"] - latency["direct"]) / 1000
    pulls, pushes = args.layers + 2, 2 * (args.layers + 1) + 1
    auth = result.get("auth", {})
    why = {"basic": "Basic auth is a bcrypt check each time",
           "bearer": "TLS and nginx: both paths carry a token the registry checks"}.get(auth.get("gateway", {}).get("scheme", ""), "auth")
    if overhead > 0:
        lines.append(f"a pull makes {pulls} requests, a push {pushes}: at {overhead * 1000:.1f} ms more per gateway request "
                     f"({why}) that is {pulls * overhead:.2f} s and {pushes * overhead:.2f} s of every gateway pull and push")
    else:
        lines.append(f"a pull makes {pulls} requests, a push {pushes}: no measurable cost per gateway request ({why})")
    lines += [auth_summary(name, counts) for name, counts in auth.items()]
    if "skopeo" in result:
        lines.append("skopeo copy through the gateway (MB/s, median):")
        for key in ("skopeo push", "skopeo pull cold", "skopeo pull cached"):
            lines.append(f"  {key:<20}{median(result['skopeo'], key):>8.0f}")
    return "\n".join(lines)


def auth_summary(name: str, auth: dict) -> str:
    """One line on how a client authenticated: challenges (401) answered and token requests."""
    if auth.get("scheme") == "bearer":
        token_ms = auth["token_ms"]
        return (f"{name} auth: Bearer; {auth['challenges']} challenges (401) answered, "
                f"{auth['token_requests']} token requests (one per scope, then cached), "
                f"median {statistics.median(token_ms):.1f} ms, max {max(token_ms):.1f} ms each")
    if auth.get("scheme") == "basic":
        return f"{name} auth: Basic; {auth['challenges']} challenge (401) answered, then the password on every request"
    return f"{name} auth: none asked for"


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+)([KMG]?)", text.strip().upper())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 512K or 32M")
    return int(match[1]) * 1024 ** " KMG".index(match[2] or " ")


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--container", default=CONTAINER, help="the demo container (tools/demo.sh up)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every measurement; the median is shown")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--layer-size", type=parse_size, default=parse_size("32M"))
    parser.add_argument("--skopeo", action="store_true", help="also time skopeo copy through the gateway")
    parser.add_argument("--json", action="store_true", help="print every round as JSON as well")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 20 or not 1 <= args.layers <= 16 or not 1 <= args.layer_size <= 512 << 20:
        parser.error("keep it bounded: 1-20 rounds, 1-16 layers, layers of 512M at most")
    return args


def forwarded(args: argparse.Namespace) -> list[str]:
    flags = ["--rounds", str(args.rounds), "--layers", str(args.layers), "--layer-size", str(args.layer_size)]
    return flags + (["--skopeo"] if args.skopeo else [])


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    try:
        if args.inside:
            print(json.dumps(measure(args)))
            return 0
        password = check_demo(args.container)
        copy_in(args.container)
        output = docker("exec", "-i", args.container, "python3", f"{WORKDIR}/gateway.py", "--inside",
                        *forwarded(args), stdin=password + "\n")
        result = json.loads(output)
    except BenchError as error:
        print(f"bench/gateway.py: {error}", file=sys.stderr)
        return 1
    print(table(result, args))
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
