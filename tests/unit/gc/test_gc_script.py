"""Tests of roles/registry/files/dockyard_registry_gc.py against a real docker-registry 2.8.

Every test starts its own `docker-registry serve` on a unix socket (as the role runs it)
with temporary filesystem storage; a small TCP forwarder on 127.0.0.1 lets skopeo and
the blob API reach it.  Only systemd is replaced: FakeService restarts that real process
with the environment the script's drop-in asks for.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import importlib.machinery
import importlib.util
import json
import os
import pathlib
import re
import select
import shlex
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "roles" / "registry" / "files" / "dockyard_registry_gc.py"
OCI_IMAGE = ROOT / "tools" / "oci_image.py"
REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"

pytestmark = pytest.mark.skipif(
    not (os.access(REGISTRY, os.X_OK) and shutil.which("skopeo")),
    reason="needs docker-registry and skopeo")


def load_script():
    loader = importlib.machinery.SourceFileLoader("dockyard_registry_gc", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


gc = load_script()


# ---------------------------------------------------------------- real registry

class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def unix_request(path: str, method: str, url: str) -> int:
    connection = UnixHTTP(path)
    try:
        connection.request(method, url)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


class Forwarder(socketserver.ThreadingTCPServer):
    """127.0.0.1:PORT -> the registry's unix socket, byte for byte."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        super().__init__(("127.0.0.1", 0), ForwardHandler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()


class ForwardHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.server.socket_path)
        except OSError:
            return
        peers = {self.request: upstream, upstream: self.request}
        with upstream:
            while True:
                readable, _writable, _exceptional = select.select(list(peers), [], [], 60)
                if not readable:
                    return
                for sock in readable:
                    try:
                        data = sock.recv(65536)
                        if not data:
                            return
                        peers[sock].sendall(data)
                    except OSError:
                        return


class Registry:
    def __init__(self, base: pathlib.Path) -> None:
        self.base = base
        self.storage = base / "storage"
        self.socket = str(base / "registry.sock")
        self.config = base / "registry.yml"
        self.config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            "  cache:\n    blobdescriptor: inmemory\n"
            f"http:\n  net: unix\n  addr: {self.socket}\n")
        self.log = open(base / "registry.log", "ab")
        self.process: subprocess.Popen | None = None
        self.env: dict[str, str] = {}
        self.forwarder = Forwarder(self.socket)
        self.host = f"127.0.0.1:{self.forwarder.port}"

    def start(self, env: dict[str, str] | None = None) -> None:
        assert self.process is None
        self.env = dict(env or {})
        self.process = subprocess.Popen([REGISTRY, "serve", str(self.config)], stdout=self.log,
                                        stderr=subprocess.STDOUT, env={**os.environ, **self.env})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.base / "registry.log").read_text()
            with contextlib.suppress(OSError):
                if unix_request(self.socket, "GET", "/v2/") == 200:
                    return
            time.sleep(0.1)
        raise AssertionError("docker-registry did not come up")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def close(self) -> None:
        self.stop()
        self.forwarder.shutdown()
        self.forwarder.server_close()
        self.log.close()

    # -- content

    def push(self, layout: pathlib.Path, tag: str, ref: str, *extra: str) -> None:
        subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", *extra,
                        f"oci:{layout}:{tag}", f"docker://{self.host}/{ref}"],
                       check=True, capture_output=True, timeout=120)

    def pull(self, ref: str, dest: pathlib.Path) -> subprocess.CompletedProcess:
        dest.parent.mkdir(parents=True, exist_ok=True)
        return subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", "--multi-arch", "all",
                               f"docker://{self.host}/{ref}", f"oci:{dest}:x"],
                              capture_output=True, text=True, timeout=120, check=False)

    def manifest_digest(self, repo: str, reference: str) -> str:
        connection = http.client.HTTPConnection(self.host, timeout=10)
        try:
            connection.request("GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": ", ".join([
                "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json",
                "application/vnd.docker.distribution.manifest.v2+json"])})
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200, (response.status, body)
            return "sha256:" + hashlib.sha256(body).hexdigest()
        finally:
            connection.close()

    def put_manifest(self, repo: str, reference: str, body: bytes, content_type: str) -> str:
        """PUT a manifest as given (the registry checks it, as it does a client's push); its digest."""
        connection = http.client.HTTPConnection(self.host, timeout=10)
        try:
            connection.request("PUT", f"/v2/{repo}/manifests/{reference}", body=body,
                               headers={"Content-Type": content_type})
            response = connection.getresponse()
            answer = response.read()
            assert response.status == 201, (response.status, answer)
            return response.getheader("Docker-Content-Digest")
        finally:
            connection.close()

    def push_stray_blob(self, repo: str, data: bytes) -> str:
        """A monolithic upload (POST + PUT) that no manifest references."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        connection = http.client.HTTPConnection(self.host, timeout=10)
        try:
            connection.request("POST", f"/v2/{repo}/blobs/uploads/")
            response = connection.getresponse()
            response.read()
            assert response.status == 202, response.status
            location = urllib.parse.urlsplit(response.getheader("Location"))
            query = urllib.parse.parse_qsl(location.query) + [("digest", digest)]
            connection.request("PUT", f"{location.path}?{urllib.parse.urlencode(query)}", body=data,
                               headers={"Content-Type": "application/octet-stream"})
            response = connection.getresponse()
            response.read()
            assert response.status == 201, response.status
        finally:
            connection.close()
        return digest

    def upload_status(self, repo: str = "probe/readonly") -> int:
        connection = http.client.HTTPConnection(self.host, timeout=10)
        try:
            connection.request("POST", f"/v2/{repo}/blobs/uploads/")
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def blob_file(self, digest: str) -> pathlib.Path:
        return pathlib.Path(gc.blob_path(str(self.storage), digest))


def make_layout(base: pathlib.Path, tag: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(OCI_IMAGE), str(base / "oci"), "--tag", tag,
                          "--layer-size", "48K", *args], check=True, capture_output=True, text=True)
    return out.stdout.strip()


@pytest.fixture
def registry(tmp_path):
    reg = Registry(tmp_path)
    reg.start()
    yield reg
    reg.close()


@pytest.fixture
def populated(registry, tmp_path):
    """Two tagged images (one in a nested repository), an index, and a stray blob."""
    digests = {
        "app": make_layout(tmp_path, "1.0", "--layers", "2"),
        "multi": make_layout(tmp_path, "multi", "--platforms", "linux/amd64,linux/arm64"),
    }
    registry.push(tmp_path / "oci", "1.0", "team/tools/app:1.0")
    registry.push(tmp_path / "oci", "1.0", "plain:1.0")
    registry.push(tmp_path / "oci", "multi", "team/multi:latest", "--multi-arch", "all")
    stray = registry.push_stray_blob("team/stray", b"unreferenced " * 40000)
    return registry, digests, stray


def write_config(tmp_path: pathlib.Path, registry: Registry, **overrides) -> pathlib.Path:
    cache = tmp_path / "cache" / "dockyard-blobs"
    cache.mkdir(parents=True, exist_ok=True)
    config = {
        "registry_binary": REGISTRY,
        "registry_config": str(registry.config),
        "registry_user": None,
        "service": "docker-registry.service",
        "readonly_dropin": str(tmp_path / "run" / "docker-registry.service.d" / "50-dockyard-gc-readonly.conf"),
        "socket": registry.socket,
        "storage_root": str(registry.storage),
        "cache_dirs": [str(cache)],
        "delete_untagged": False,
        "lock_file": str(tmp_path / "gc.lock"),
        "probe_timeout": 20,
        "environment_file": None,
        "cluster_nodes": ["localhost"],
        "metrics_file": None,
        **overrides,
    }
    path = tmp_path / "registry-gc.json"
    path.write_text(json.dumps(config))
    return path


class FakeService:
    """Stands in for systemd: restart re-reads the drop-in like systemd would, then
    stops and starts the real docker-registry process with its Environment=."""

    def __init__(self, registry: Registry, dropin: str) -> None:
        self.registry = registry
        self.dropin = pathlib.Path(dropin)
        self.reloads = 0
        self.restarts: list[dict[str, str]] = []
        self.upload_status_read_only: int | None = None
        self.fail_restart_at: int | None = None
        self.down_at: int | None = None
        self.unit = None

    def __call__(self, unit: str) -> "FakeService":
        self.unit = unit
        return self

    def daemon_reload(self) -> None:
        self.reloads += 1

    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.dropin.exists():
            for line in self.dropin.read_text().splitlines():
                if line.startswith("Environment="):
                    # systemd unquotes Environment= values much like a POSIX shell does.
                    for word in shlex.split(line[len("Environment="):]):
                        key, _equals, value = word.partition("=")
                        env[key] = value
        return env

    @property
    def read_only(self) -> bool:
        return self.registry.env.get("REGISTRY_STORAGE_MAINTENANCE_READONLY") == '{"enabled":true}'

    def is_read_only(self) -> bool:
        if self.registry.process is None:
            raise RuntimeError("docker-registry.service is not running")
        return self.read_only

    def restart(self) -> None:
        env = self.environment()
        self.restarts.append(env)
        if self.fail_restart_at == len(self.restarts):
            raise RuntimeError("restart docker-registry.service: systemctl exited 1: fake failure")
        self.registry.stop()
        if self.down_at == len(self.restarts):
            return
        self.registry.start(env)
        if self.read_only:
            self.upload_status_read_only = self.registry.upload_status()


@pytest.fixture
def fake_service(monkeypatch, populated, tmp_path):
    registry = populated[0]
    config = json.loads(write_config(tmp_path, registry).read_text())
    service = FakeService(registry, config["readonly_dropin"])
    monkeypatch.setattr(gc, "SystemdService", service)
    return service


def run_script(capsys, *argv: str) -> tuple[int, str, str]:
    code = gc.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def report_fields(line: str) -> dict[str, str]:
    assert line.startswith("dockyard-registry-gc: "), line
    return dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line))


def snapshot(path: pathlib.Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in path.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- parsing and detection

def test_parses_real_dry_run_output(populated):
    registry, _digests, stray = populated
    result = subprocess.run([REGISTRY, "garbage-collect", "--dry-run", str(registry.config)],
                            capture_output=True, text=True, check=True)
    counts = gc.parse_gc_output(result.stdout)
    assert counts["blobs"] == 1 and counts["manifests"] == 0
    assert f"blob eligible for deletion: {stray}" in result.stdout
    # app: manifest + config + 2 layers; multi: index + 2 × (manifest + config + 2 layers)
    assert counts["marked"] == 4 + 1 + 2 * 4


def test_parses_real_delete_untagged_output_and_the_script_runner(populated, tmp_path):
    registry = populated[0]
    config = json.loads(write_config(tmp_path, registry).read_text())
    counts = gc.garbage_collect(config, True, True)
    # 2.8 counts the untagged children of the index as eligible: the danger guarded against.
    assert counts["manifests"] == 2 and counts["blobs"] > 1


def test_garbage_collect_reads_the_registry_environment_file(populated, tmp_path):
    # Object-store credentials reach Distribution only through its environment overrides.
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    environment = tmp_path / "registry.env"
    environment.write_text(f"# secrets\nREGISTRY_HTTP_SECRET=x\nREGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY={empty}\n")
    config = json.loads(write_config(tmp_path, populated[0], environment_file=str(environment)).read_text())
    assert gc.garbage_collect(config, True, False) is None
    config["environment_file"] = None
    assert gc.garbage_collect(config, True, False)["blobs"] > 0


def test_missing_environment_file_is_a_config_error(tmp_path):
    with pytest.raises(gc.GCError, match="environment file"):
        gc.read_environment(str(tmp_path / "missing.env"))


def test_parse_rejects_output_without_summary():
    with pytest.raises(ValueError):
        gc.parse_gc_output("team/app\nteam/app: marking manifest sha256:abc\n")


def test_empty_store_means_nothing_eligible(registry, tmp_path):
    config = json.loads(write_config(tmp_path, registry).read_text())
    assert gc.garbage_collect(config, True, False) is None


def test_detects_index_in_nested_repository(populated):
    registry, digests, _stray = populated
    assert gc.find_indexes(str(registry.storage)) == [f"team/multi@{digests['multi']}"]


def test_detects_docker_manifest_list(registry, tmp_path):
    make_layout(tmp_path, "multi", "--platforms", "linux/amd64,linux/arm64")
    registry.push(tmp_path / "oci", "multi", "a/b/c/list:1", "--multi-arch", "all", "--format", "v2s2")
    found = gc.find_indexes(str(registry.storage))
    assert len(found) == 1 and found[0].startswith("a/b/c/list@sha256:")
    digest = found[0].split("@")[1]
    media_type = json.loads(registry.blob_file(digest).read_bytes())["mediaType"]
    assert media_type == "application/vnd.docker.distribution.manifest.list.v2+json"


OCI_INDEX = "application/vnd.oci.image.index.v1+json"
CHILD = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "1" * 64, "size": 1}
LAYER = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + "2" * 64, "size": 1}
CONFIG = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "3" * 64, "size": 1}


@pytest.mark.parametrize("document, expected", [
    ({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [CHILD]}, True),
    ({"schemaVersion": 2, "manifests": [CHILD]}, True),  # OCI index without the optional mediaType
    ({"schemaVersion": 2, "manifests": []}, True),
    ({"schemaVersion": 2, "manifests": [CHILD], "layers": [LAYER]}, True),  # 2.8.2 refuses these now; older stores
    ({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
      "manifests": [CHILD]}, True),
    ({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "manifests": [CHILD]}, True),
    ({"schemaVersion": 2, "config": CONFIG, "layers": [LAYER]}, False),  # OCI image without mediaType
    ({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": CONFIG,
      "layers": [LAYER], "subject": CHILD, "artifactType": "application/vnd.example.sbom"}, False),
    ({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
      "config": CONFIG, "layers": [LAYER]}, False),
    ({"mediaType": "application/vnd.oci.artifact.manifest.v1+json", "blobs": [LAYER], "subject": CHILD}, False),
    ([CHILD], False),
    (None, False),
])
def test_index_shapes(document, expected):
    assert gc.is_index(document) is expected


def test_unreadable_manifest_is_not_ruled_out(registry, tmp_path):
    make_layout(tmp_path, "1.0")
    registry.push(tmp_path / "oci", "1.0", "app:1.0")
    digest = registry.manifest_digest("app", "1.0")
    registry.blob_file(digest).write_bytes(b"{not json")
    assert gc.find_indexes(str(registry.storage)) == [f"app@{digest} (unreadable, so not ruled out)"]


def test_plain_images_are_not_indexes(registry, tmp_path):
    make_layout(tmp_path, "1.0")
    registry.push(tmp_path / "oci", "1.0", "x/y/z/app:1.0")
    registry.push(tmp_path / "oci", "1.0", "app:1.0")
    assert gc.find_indexes(str(registry.storage)) == []


# ---------------------------------------------------------------- guards

@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("socket"), "missing keys ['socket']"),
    (lambda c: c.update(storage_root="var/lib/docker-registry"), "absolute path"),
    (lambda c: c.update(registry_binary="/nonexistent/docker-registry"), "missing or not executable"),
    (lambda c: c.update(cache_dirs=["/var"]), "top-level"),
    (lambda c: c.update(delete_untagged="no"), "wrong type"),
])
def test_refuses_bad_config(registry, tmp_path, capsys, change, message):
    path = write_config(tmp_path, registry)
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))
    code, out, _err = run_script(capsys, "--config", str(path))
    assert code == 1
    assert "result=failed step=config" in out and message in out


@pytest.mark.parametrize("held", [fcntl.LOCK_EX, fcntl.LOCK_SH])
def test_lock_held_exits_75(registry, tmp_path, capsys, held):
    path = write_config(tmp_path, registry)
    with open(tmp_path / "gc.lock", "w") as holder:
        fcntl.flock(holder, held | fcntl.LOCK_NB)
        code, out, _err = run_script(capsys, "--config", str(path), "--dry-run")
    assert code == 75
    assert "step=lock" in out and "another garbage collection" in out
    code, _out, _err = run_script(capsys, "--config", str(path), "--dry-run")
    assert code == 0


# ---------------------------------------------------------------- the script end to end

def test_dry_run_reports_and_changes_nothing(populated, fake_service, tmp_path, capsys):
    registry, _digests, stray = populated
    before = snapshot(registry.storage)
    code, out, _err = run_script(capsys, "--config", str(tmp_path / "registry-gc.json"), "--dry-run", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["changed"] is False and report["result"] == "ok"
    assert report["would_delete_blobs"] == 1 and report["would_delete_manifests"] == 0
    assert snapshot(registry.storage) == before
    assert registry.blob_file(stray).exists()
    assert fake_service.restarts == [] and fake_service.reloads == 0


def test_full_sequence(populated, fake_service, tmp_path, capsys):
    registry, digests, stray = populated
    config = json.loads((tmp_path / "registry-gc.json").read_text())
    cache = pathlib.Path(config["cache_dirs"][0])
    (cache / "a" / "b").mkdir(parents=True)
    (cache / "a" / "b" / "0123abcd").write_bytes(b"cached blob")
    (cache / "top").write_bytes(b"x")
    stray_file = registry.blob_file(stray)
    assert stray_file.exists()

    code, out, _err = run_script(capsys, "--config", str(tmp_path / "registry-gc.json"))

    assert code == 0, out
    fields = report_fields(out.strip())
    assert fields["result"] == "ok" and fields["delete_untagged"] == "false"
    assert int(fields["blobs_deleted"]) >= 1 and int(fields["manifests_deleted"]) == 0
    assert int(fields["bytes_freed"]) > 0
    assert re.fullmatch(r"\d+\.\d", fields["duration"])
    assert len(out.strip().splitlines()) == 1
    # read-only, then read-write again; uploads were refused in between.
    assert [env.get("REGISTRY_STORAGE_MAINTENANCE_READONLY") for env in fake_service.restarts] == \
        ['{"enabled":true}', None]
    assert fake_service.upload_status_read_only == 405
    assert not fake_service.read_only and registry.upload_status() == 202
    assert not pathlib.Path(config["readonly_dropin"]).exists()
    assert cache.is_dir() and list(cache.iterdir()) == []
    assert not stray_file.exists()
    for ref, repo, tag, digest in [("team/tools/app:1.0", "team/tools/app", "1.0", digests["app"]),
                                   ("plain:1.0", "plain", "1.0", digests["app"]),
                                   ("team/multi:latest", "team/multi", "latest", digests["multi"])]:
        assert registry.manifest_digest(repo, tag) == digest
        pulled = registry.pull(ref, tmp_path / "pulled" / repo.replace("/", "_"))
        assert pulled.returncode == 0, pulled.stderr


def test_nothing_to_do_does_not_restart(registry, tmp_path, capsys, monkeypatch):
    make_layout(tmp_path, "1.0")
    registry.push(tmp_path / "oci", "1.0", "app:1.0")
    path = write_config(tmp_path, registry)
    service = FakeService(registry, json.loads(path.read_text())["readonly_dropin"])
    monkeypatch.setattr(gc, "SystemdService", service)
    code, out, _err = run_script(capsys, "--config", str(path), "--json")
    report = json.loads(out)
    assert code == 0 and report["changed"] is False and report["note"] == "nothing to do"
    assert report["blobs_deleted"] == 0 and service.restarts == []


def test_delete_untagged_refused_with_index(populated, fake_service, tmp_path, capsys):
    registry, digests, stray = populated
    before = snapshot(registry.storage)
    code, out, _err = run_script(capsys, "--config", str(tmp_path / "registry-gc.json"), "--delete-untagged")
    assert code == 1
    assert "result=failed step=guard" in out and f"team/multi@{digests['multi']}" in out
    assert snapshot(registry.storage) == before and registry.blob_file(stray).exists()
    assert fake_service.restarts == [] and fake_service.reloads == 0


def test_delete_untagged_refused_with_an_oci_index_stored_without_media_type(registry, tmp_path, capsys, monkeypatch):
    """The registry takes an index without mediaType when the PUT's Content-Type names it; the guard must see it."""
    make_layout(tmp_path, "1.0")
    registry.push(tmp_path / "oci", "1.0", "team/bare:child")
    child = registry.manifest_digest("team/bare", "child")
    size = registry.blob_file(child).stat().st_size
    body = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": child, "size": size,
        "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    index = registry.put_manifest("team/bare", "multi", body, OCI_INDEX)
    assert index == "sha256:" + hashlib.sha256(body).hexdigest()
    assert "mediaType" not in json.loads(registry.blob_file(index).read_bytes())
    assert gc.find_indexes(str(registry.storage)) == [f"team/bare@{index}"]

    config = write_config(tmp_path, registry)
    service = FakeService(registry, json.loads(config.read_text())["readonly_dropin"])
    monkeypatch.setattr(gc, "SystemdService", service)
    before = snapshot(registry.storage)
    code, out, _err = run_script(capsys, "--config", str(config), "--delete-untagged", "--json")
    report = json.loads(out)
    assert code == 1 and report["step"] == "guard" and f"team/bare@{index}" in report["error"]
    assert snapshot(registry.storage) == before and service.restarts == []


def test_delete_untagged_refused_without_storage_root(populated, fake_service, tmp_path, capsys):
    registry = populated[0]
    path = write_config(tmp_path, registry, storage_root=None, delete_untagged=True)
    code, out, _err = run_script(capsys, "--config", str(path), "--json")
    report = json.loads(out)
    assert code == 1 and report["step"] == "guard" and "not the filesystem" in report["error"]
    assert fake_service.restarts == []


def wrapper_binary(tmp_path: pathlib.Path, real_run: str) -> str:
    """A registry binary whose dry run is real but whose real garbage-collect is `real_run`."""
    path = tmp_path / "docker-registry-wrapper"
    path.write_text("#!/bin/sh\n"
                    'case " $* " in *" --dry-run "*) exec ' + REGISTRY + ' "$@";; esac\n' + real_run + "\n")
    path.chmod(0o755)
    return str(path)


def assert_restored(registry, service, config, stray):
    assert [bool(env) for env in service.restarts] == [True, False]
    assert not service.read_only and registry.upload_status() == 202
    assert not pathlib.Path(config["readonly_dropin"]).exists()
    assert registry.blob_file(stray).exists()


def test_failure_inside_garbage_collect_restores_read_write(populated, fake_service, tmp_path, capsys):
    registry, _digests, stray = populated
    binary = wrapper_binary(tmp_path, 'echo "failed to garbage collect: boom" >&2; exit 3')
    path = write_config(tmp_path, registry, registry_binary=binary)
    code, out, _err = run_script(capsys, "--config", str(path))
    assert code == 1
    assert out.startswith("dockyard-registry-gc: result=failed step=garbage-collect error=")
    assert "exited 3" in out and "boom" in out and "Traceback" not in out
    assert_restored(registry, fake_service, json.loads(path.read_text()), stray)


def test_sigterm_during_garbage_collect_restores_read_write(populated, fake_service, tmp_path, capsys):
    registry, _digests, stray = populated
    marker = tmp_path / "gc-started"
    binary = wrapper_binary(tmp_path, f"echo $$ > {marker}.tmp; mv {marker}.tmp {marker}; exec sleep 60")
    path = write_config(tmp_path, registry, registry_binary=binary)

    def terminate_when_started() -> None:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_when_started, daemon=True).start()
    started = time.monotonic()
    code, out, _err = run_script(capsys, "--config", str(path), "--json")
    report = json.loads(out)
    assert code == 1 and report["step"] == "garbage-collect" and "SIGTERM" in report["error"]
    assert time.monotonic() - started < 45
    assert not os.path.exists(f"/proc/{marker.read_text().strip()}"), "garbage-collect left running"
    assert_restored(registry, fake_service, json.loads(path.read_text()), stray)


def test_failed_read_write_restart_is_loud(populated, fake_service, tmp_path, capsys):
    registry = populated[0]
    fake_service.fail_restart_at = 2
    code, out, _err = run_script(capsys, "--config", str(tmp_path / "registry-gc.json"))
    assert code == 1
    assert "step=restart-read-write" in out and "REGISTRY NOT RESTORED READ-WRITE" in out
    assert "systemctl restart docker-registry.service" in out


def fake_systemctl(tmp_path: pathlib.Path, monkeypatch, body: str) -> None:
    """A `systemctl` first on PATH that runs the shell `body`."""
    fake = tmp_path / "bin" / "systemctl"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\n{body}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")


def test_systemd_service_calls_systemctl(tmp_path, monkeypatch):
    log = tmp_path / "systemctl.log"
    fake_systemctl(tmp_path, monkeypatch, f'echo "$*" >> {log}\n[ "$1" != restart ] || [ "$2" != bad.service ] '
                                          '|| { echo "Job failed" >&2; exit 1; }')
    service = gc.SystemdService("docker-registry.service")
    service.daemon_reload()
    service.restart()
    assert log.read_text().splitlines() == ["daemon-reload", "restart docker-registry.service"]
    with pytest.raises(RuntimeError, match="systemctl restart bad.service exited 1: Job failed"):
        gc.SystemdService("bad.service").restart()


def test_probe_answers_and_times_out(registry, tmp_path):
    gc.probe(registry.socket, 5)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"did not answer 200 within 1s"):
        gc.probe(str(tmp_path / "absent.sock"), 1)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("down_at, step", [(1, "probe-read-only"), (2, "probe-read-write")])
def test_registry_not_answering_fails_the_probe(populated, fake_service, tmp_path, capsys, down_at, step):
    registry, _digests, stray = populated
    fake_service.down_at = down_at
    path = write_config(tmp_path, registry, probe_timeout=2)
    code, out, _err = run_script(capsys, "--config", str(path))
    assert code == 1 and f"step={step}" in out
    assert ("REGISTRY NOT RESTORED READ-WRITE" in out) == (step == "probe-read-write")
    assert len(fake_service.restarts) == 2
    assert not pathlib.Path(json.loads(path.read_text())["readonly_dropin"]).exists()
    assert registry.blob_file(stray).exists() == (step == "probe-read-only")
    if registry.process is None:
        registry.start()


# ---------------------------------------------------------------- the steps of a cluster run

def test_a_whole_run_on_a_cluster_node_is_refused(populated, fake_service, tmp_path, capsys):
    registry, _digests, stray = populated
    path = write_config(tmp_path, registry, cluster_nodes=["node-a", "node-b"])
    code, out, _err = run_script(capsys, "--config", str(path), "--json")
    report = json.loads(out)
    assert code == 1 and report["step"] == "cluster" and report["changed"] is False
    assert "one of 2 registry nodes sharing one store (node-a, node-b)" in report["error"]
    assert "playbooks/gc.yml" in report["error"]
    assert fake_service.restarts == [] and registry.blob_file(stray).exists()
    # A dry run changes nothing, so it is allowed on a node too.
    code, out, _err = run_script(capsys, "--config", str(path), "--json", "--dry-run")
    assert code == 0 and json.loads(out)["would_delete_blobs"] == 1


def test_cluster_nodes_must_name_the_nodes(registry, tmp_path, capsys):
    path = write_config(tmp_path, registry, cluster_nodes=[])
    code, out, _err = run_script(capsys, "--config", str(path))
    assert code == 1 and "step=config" in out and "cluster_nodes" in out


def run_step(capsys, path: pathlib.Path, name: str, *extra: str) -> tuple[int, dict]:
    code, out, _err = run_script(capsys, "--config", str(path), "--json", "--step", name, *extra)
    return code, json.loads(out)


def test_steps_collect_between_readonly_and_restore(populated, fake_service, tmp_path, capsys):
    """The flow playbooks/gc.yml runs on each node, here on one registry of a cluster of two."""
    registry, digests, stray = populated
    path = write_config(tmp_path, registry, cluster_nodes=["node-a", "node-b"])
    config = json.loads(path.read_text())
    cache = pathlib.Path(config["cache_dirs"][0])
    (cache / "cached").write_bytes(b"x")

    code, planned = run_step(capsys, path, "collect", "--dry-run")
    assert code == 0 and planned["phase"] == "collect" and planned["would_delete_blobs"] == 1
    assert fake_service.restarts == []

    code, report = run_step(capsys, path, "readonly")
    assert code == 0 and report == {**report, "result": "ok", "phase": "readonly", "read_only": True}
    assert fake_service.read_only and registry.upload_status() == 405
    assert pathlib.Path(config["readonly_dropin"]).exists()

    code, report = run_step(capsys, path, "collect")
    assert code == 0, report
    assert report["phase"] == "collect" and report["blobs_deleted"] == 1 and report["bytes_freed"] > 0
    assert not registry.blob_file(stray).exists()
    # collect leaves the node read-only: the other nodes are still read-only too.
    assert fake_service.read_only and len(fake_service.restarts) == 1

    code, report = run_step(capsys, path, "restore")
    assert code == 0 and report["phase"] == "restore" and report["read_only"] is False
    assert not fake_service.read_only and registry.upload_status() == 202
    assert not pathlib.Path(config["readonly_dropin"]).exists() and list(cache.iterdir()) == []
    assert registry.manifest_digest("team/multi", "latest") == digests["multi"]
    assert registry.pull("plain:1.0", tmp_path / "pulled" / "plain").returncode == 0


def test_collect_is_refused_unless_this_node_is_read_only(populated, fake_service, tmp_path, capsys):
    registry, _digests, stray = populated
    path = write_config(tmp_path, registry, cluster_nodes=["node-a", "node-b"])
    code, report = run_step(capsys, path, "collect")
    assert code == 1 and report["step"] == "check-read-only" and report["changed"] is False
    assert "not running read-only" in report["error"] and "--step readonly" in report["error"]
    assert registry.blob_file(stray).exists() and fake_service.restarts == []


def test_a_failed_readonly_step_restores_its_node(populated, fake_service, tmp_path, capsys):
    registry, _digests, stray = populated
    fake_service.down_at = 1
    path = write_config(tmp_path, registry, probe_timeout=2, cluster_nodes=["node-a", "node-b"])
    code, report = run_step(capsys, path, "readonly")
    assert code == 1 and report["phase"] == "readonly" and report["step"] == "probe-read-only"
    assert "REGISTRY NOT RESTORED" not in report["error"]
    assert [bool(env) for env in fake_service.restarts] == [True, False]
    assert not fake_service.read_only and registry.upload_status() == 202
    assert not pathlib.Path(json.loads(path.read_text())["readonly_dropin"]).exists()


def test_a_failed_restore_step_is_loud(populated, fake_service, tmp_path, capsys):
    registry = populated[0]
    path = write_config(tmp_path, registry, cluster_nodes=["node-a", "node-b"])
    assert run_step(capsys, path, "readonly")[0] == 0
    fake_service.fail_restart_at = 2
    code, report = run_step(capsys, path, "restore")
    assert code == 1 and report["phase"] == "restore" and report["step"] == "restart-read-write"
    assert "REGISTRY NOT RESTORED READ-WRITE" in report["error"]
    assert "systemctl restart docker-registry.service" in report["error"]
    fake_service.fail_restart_at = None
    assert run_step(capsys, path, "restore")[0] == 0 and registry.upload_status() == 202


@pytest.mark.parametrize("extra", [["--dry-run"], []])
def test_collect_step_keeps_the_guards(populated, fake_service, tmp_path, capsys, extra):
    """In the plan and again in the collection itself: an index may arrive in between."""
    registry, digests, stray = populated
    path = write_config(tmp_path, registry, storage_root=None, cluster_nodes=["node-a", "node-b"])
    code, report = run_step(capsys, path, "collect", "--delete-untagged", *extra)
    assert code == 1 and report["step"] == "guard" and "not the filesystem" in report["error"]
    path = write_config(tmp_path, registry, cluster_nodes=["node-a", "node-b"])
    assert run_step(capsys, path, "readonly")[0] == 0
    code, report = run_step(capsys, path, "collect", "--delete-untagged", *extra)
    assert code == 1 and report["step"] == "guard" and f"team/multi@{digests['multi']}" in report["error"]
    assert registry.blob_file(stray).exists()


def test_is_read_only_reads_the_running_process(tmp_path, monkeypatch):
    """SystemdService asks systemd for the main PID and reads what that process was started with."""
    child = subprocess.Popen(["sleep", "30"], env={"REGISTRY_STORAGE_MAINTENANCE_READONLY": '{"enabled":true}'})
    other = subprocess.Popen(["sleep", "30"], env={})
    try:
        fake_systemctl(tmp_path, monkeypatch, f'case "$*" in *ro.service) echo {child.pid};; '
                                              f'*rw.service) echo {other.pid};; *) echo 0;; esac')
        assert gc.SystemdService("ro.service").is_read_only() is True
        assert gc.SystemdService("rw.service").is_read_only() is False
        with pytest.raises(RuntimeError, match="down.service is not running"):
            gc.SystemdService("down.service").is_read_only()
    finally:
        for process in (child, other):
            process.kill()
            process.wait()


# ---------------------------------------------------------------- metrics for the node exporter

def gc_metrics(path: pathlib.Path) -> dict[str, float]:
    values = {}
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            name, value = line.split(" ")
            values[name] = float(value)
    return values


def with_metrics_file(tmp_path: pathlib.Path) -> pathlib.Path:
    config_path = tmp_path / "registry-gc.json"
    config = json.loads(config_path.read_text())
    config["metrics_file"] = str(tmp_path / "textfile" / "dockyard_gc.prom")
    config_path.write_text(json.dumps(config))
    return pathlib.Path(config["metrics_file"])


def test_a_collection_writes_its_metrics_and_a_failure_keeps_the_last_success(populated, fake_service, tmp_path, capsys):
    metrics = with_metrics_file(tmp_path)
    before = time.time()
    code, out, _err = run_script(capsys, "--config", str(tmp_path / "registry-gc.json"))
    assert code == 0, out
    first = gc_metrics(metrics)
    assert first["dockyard_gc_last_run_success"] == 1
    assert before <= first["dockyard_gc_last_success_timestamp_seconds"] == first["dockyard_gc_last_run_timestamp_seconds"]
    assert first["dockyard_gc_blobs_deleted"] >= 1 and first["dockyard_gc_bytes_freed"] > 0
    assert "# TYPE dockyard_gc_bytes_freed gauge" in metrics.read_text()
    assert oct(metrics.stat().st_mode & 0o777) == "0o644"

    # A dry run is not a collection: the file stays as it is.
    run_script(capsys, "--config", str(tmp_path / "registry-gc.json"), "--dry-run")
    assert gc_metrics(metrics) == first

    # Refused by the guard (an index exists): GC did not run, which the alert must see.
    code, out, _err = run_script(capsys, "--config", str(tmp_path / "registry-gc.json"), "--delete-untagged")
    assert code == 1, out
    failed = gc_metrics(metrics)
    assert failed["dockyard_gc_last_run_success"] == 0
    assert failed["dockyard_gc_last_run_timestamp_seconds"] > first["dockyard_gc_last_run_timestamp_seconds"]
    assert failed["dockyard_gc_last_success_timestamp_seconds"] == first["dockyard_gc_last_success_timestamp_seconds"]
    assert failed["dockyard_gc_blobs_deleted"] == first["dockyard_gc_blobs_deleted"]


def test_another_run_holding_the_lock_is_not_a_failed_collection(populated, fake_service, tmp_path, capsys):
    metrics = with_metrics_file(tmp_path)
    with open(tmp_path / "gc.lock", "w", encoding="utf-8") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, _out, _err = run_script(capsys, "--config", str(tmp_path / "registry-gc.json"))
    assert code == 75 and not metrics.exists()
