"""Real servers for the registry modules' integration tests.

- ``registry``: a ``docker-registry`` process on 127.0.0.1 with a temporary filesystem
  storage and deletes enabled (plain HTTP);
- ``registry_nodelete``: the same with ``storage.delete.enabled: false``;
- ``gateway``: a real nginx in front of ``registry`` with TLS (a throwaway CA and
  certificate made with ``cryptography``) and ``auth_basic`` (a bcrypt htpasswd line).

Images are real OCI layouts from ``tools/oci_image.py``, pushed with skopeo.  Modules run
through ``ansible-playbook`` with ``ANSIBLE_COLLECTIONS_PATH=.build/collections``.
"""
from __future__ import annotations

import datetime
import json
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import sys
import time
import typing as t
import urllib.error
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
COLLECTIONS = ROOT / ".build" / "collections"
PLAYBOOKS = ROOT / "tests" / "integration" / "playbooks"
VENV_BIN = pathlib.Path(sys.executable).parent
MISSING = [name for name in ("docker-registry", "nginx", "skopeo") if shutil.which(name) is None
           and not os.path.exists("/usr/sbin/" + name)]

pytestmark = pytest.mark.skipif(bool(MISSING), reason="needs the binaries %s" % ", ".join(MISSING))

USER = "operator"
PASSWORD = "s3cret-" + secrets.token_hex(4)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, process: subprocess.Popen, log: pathlib.Path, context: t.Any = None) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("%s exited: %s" % (process.args, log.read_text(errors="replace")[-3000:]))
        try:
            urllib.request.urlopen(url, timeout=2, context=context)  # noqa: S310 - loopback only
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("%s did not answer on %s" % (process.args, url))


class Registry:
    """A docker-registry process; ``stop``/``start`` keep its storage (for garbage-collect)."""

    def __init__(self, workdir: pathlib.Path, delete: bool = True) -> None:
        self.workdir = workdir
        self.storage = workdir / "storage"
        self.storage.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.host = "127.0.0.1:%d" % self.port
        self.config = workdir / "config.yml"
        self.log = workdir / "registry.log"
        self.config.write_text(json.dumps({
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)},
                        "delete": {"enabled": delete},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": self.host, "secret": secrets.token_hex(16)},
        }))
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(["docker-registry", "serve", str(self.config)],
                                            stdout=log, stderr=subprocess.STDOUT)
        wait_http(self.url + "/v2/", self.process, self.log)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def garbage_collect(self) -> str:
        done = subprocess.run(["docker-registry", "garbage-collect", str(self.config)],
                              capture_output=True, text=True, check=True)
        return done.stdout + done.stderr

    def get(self, path: str, accept: str = "") -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.url + path, headers={"Accept": accept} if accept else {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
                return response.status, dict(response.headers.items()), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers.items()), error.read()

    def tags(self, repository: str) -> list[str]:
        status, _headers, body = self.get("/v2/%s/tags/list" % repository)
        assert status == 200, body
        return sorted(json.loads(body)["tags"] or [])

    def digest(self, repository: str, tag: str) -> str | None:
        accept = ", ".join([
            "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.docker.distribution.manifest.v2+json"])
        status, headers, _body = self.get("/v2/%s/manifests/%s" % (repository, tag), accept)
        return {k.lower(): v for k, v in headers.items()}.get("docker-content-digest") if status == 200 else None


class Images:
    """OCI layouts written once per session; ``push`` copies a tag into the registry with skopeo."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.digests: dict[str, str] = {}
        self.created: dict[str, str] = {}

    def build(self, name: str, created: str, platforms: str = "", seed: str = "dockyard") -> str:
        out = self.root / name
        argv = [sys.executable, str(ROOT / "tools" / "oci_image.py"), str(out), "--tag", name,
                "--layers", "2", "--layer-size", "16K", "--created", created, "--seed", seed]
        if platforms:
            argv += ["--platforms", platforms]
        digest = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
        self.digests[name] = digest
        self.created[name] = created
        return digest

    def push(self, registry: Registry, name: str, repository: str, tag: str) -> str:
        argv = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci:%s:%s" % (self.root / name, name),
                "docker://%s/%s:%s" % (registry.host, repository, tag)]
        if name.startswith("multi"):
            argv.insert(2, "--multi-arch=all")
        subprocess.run(argv, capture_output=True, text=True, check=True)
        return self.digests[name]


def days_ago(days: float) -> str:
    moment = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    built = Images(tmp_path_factory.mktemp("oci"))
    # Creation times relative to now, so older_than has something to cut.
    for number, age in enumerate([90, 60, 40, 20, 10, 5, 2]):
        built.build("img%d" % number, days_ago(age))
    built.build("multi", days_ago(3), platforms="linux/amd64,linux/arm64")
    return built


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Registry]:
    server = Registry(tmp_path_factory.mktemp("registry"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def registry_nodelete(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Registry]:
    server = Registry(tmp_path_factory.mktemp("registry-nodelete"), delete=False)
    server.start()
    yield server
    server.stop()


class Gateway:
    def __init__(self, url: str, ca: pathlib.Path, error_log: pathlib.Path, htpasswd: pathlib.Path) -> None:
        self.url = url
        self.ca = ca
        self.error_log = error_log
        self.htpasswd = htpasswd  # nginx reads it on every request

    def status(self, user: str, password: str) -> int:
        """HTTP status of ``GET /v2/`` with these Basic credentials."""
        import base64
        import ssl

        credentials = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        request = urllib.request.Request(self.url + "/v2/", headers={"Authorization": "Basic " + credentials})
        try:
            with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=str(self.ca)),
                                        timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code


def make_pki(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Dockyard test CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return ca_path, cert_path, key_path


@pytest.fixture(scope="session")
def gateway(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Gateway]:
    bcrypt = pytest.importorskip("bcrypt", reason="pip install bcrypt (for the htpasswd line)")
    import ssl

    work = tmp_path_factory.mktemp("nginx")
    ca, cert, key = make_pki(work)
    htpasswd = work / "htpasswd"
    htpasswd.write_text("%s:%s\n" % (USER, bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()))
    port = free_port()
    error_log = work / "error.log"
    temp = "\n".join("    %s_temp_path %s;" % (kind, work / kind) for kind in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = work / "nginx.conf"
    conf.write_text("""user root;
worker_processes 1;
error_log %(error_log)s info;
events { worker_connections 256; }
http {
    access_log %(work)s/access.log;
%(temp)s
    server {
        listen 127.0.0.1:%(port)d ssl;
        server_name localhost;
        ssl_certificate %(cert)s;
        ssl_certificate_key %(key)s;
        ssl_protocols TLSv1.2 TLSv1.3;
        client_max_body_size 0;
        location /v2/ {
            auth_basic "Dockyard registry";
            auth_basic_user_file %(htpasswd)s;
            add_header Docker-Distribution-Api-Version registry/2.0 always;
            proxy_pass http://%(upstream)s;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 900;
        }
    }
}
""" % {"error_log": error_log, "work": work, "temp": temp, "port": port, "cert": cert, "key": key,
       "htpasswd": htpasswd, "upstream": registry.host})
    process = subprocess.Popen(
        ["nginx", "-p", str(work), "-c", str(conf), "-e", str(error_log),
         "-g", "daemon off; pid %s;" % (work / "nginx.pid")],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    context = ssl.create_default_context(cafile=str(ca))
    wait_http("https://127.0.0.1:%d/v2/" % port, process, error_log, context)
    yield Gateway("https://127.0.0.1:%d" % port, ca, error_log, htpasswd)
    process.terminate()
    process.wait(10)


class PlaybookResult:
    def __init__(self, done: subprocess.CompletedProcess, result: dict[str, t.Any]) -> None:
        self.returncode = done.returncode
        self.output = done.stdout + done.stderr
        self.result = result

    def __getitem__(self, key: str) -> t.Any:
        return self.result[key]

    def get(self, key: str, default: t.Any = None) -> t.Any:
        return self.result.get(key, default)


def run_playbook(playbook: str, extra: dict[str, t.Any], tmp_path: pathlib.Path, *flags: str) -> PlaybookResult:
    """Run a playbook of tests/integration/playbooks (or any path); its vars arrive through one JSON file.

    Playbooks that write ``result_file`` hand back the registered result.
    """
    result_file = tmp_path / ("result-%s.json" % secrets.token_hex(4))
    extra = dict(extra, result_file=str(result_file))
    vars_file = tmp_path / ("vars-%s.json" % secrets.token_hex(4))
    vars_file.write_text(json.dumps(extra))
    path = pathlib.Path(playbook)
    if not path.is_absolute():
        path = PLAYBOOKS / playbook
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_STDOUT_CALLBACK="default")
    done = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(path), "-e", "@%s" % vars_file, *flags],
                          capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=300, check=False)
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return PlaybookResult(done, result)


@pytest.fixture()
def playbook(tmp_path: pathlib.Path) -> t.Callable[..., PlaybookResult]:
    def run(name: str, extra: dict[str, t.Any], *flags: str) -> PlaybookResult:
        return run_playbook(name, extra, tmp_path, *flags)
    return run
