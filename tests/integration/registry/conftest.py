"""Real servers for the registry modules' integration tests.

- ``registry``: a ``docker-registry`` process on 127.0.0.1 with a temporary filesystem
  storage and deletes enabled (plain HTTP);
- ``registry_nodelete``: the same with ``storage.delete.enabled: false``;
- ``gateway``: a real nginx in front of ``registry`` running the gateway role's own
  nginx.conf (rendered by tools/gateway_render.py: TLS with a throwaway CA and certificate
  made with ``cryptography``, htpasswd mode with a bcrypt line, the blob cache);
  ``start_gateway`` starts further ones (token mode, other role variables).

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
sys.path.insert(0, str(ROOT / "tools"))
import gateway_render  # noqa: E402  pylint: disable=wrong-import-position
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


def end_process(process: subprocess.Popen | None) -> None:
    """TERM, then KILL after 10 s, of a server this test run started."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Registry:
    """A docker-registry process; ``stop``/``start`` keep its storage (for garbage-collect)."""

    def __init__(self, workdir: pathlib.Path, delete: bool = True, auth: dict[str, t.Any] | None = None) -> None:
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
            **({"auth": auth} if auth else {}),
        }))
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(["docker-registry", "serve", str(self.config)],
                                            stdout=log, stderr=subprocess.STDOUT)
        wait_http(self.url + "/v2/", self.process, self.log)

    def stop(self) -> None:
        end_process(self.process)
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

    def manifest(self, repository: str, reference: str) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (lowercase names) and exact bytes of a manifest, any of the four media types."""
        accept = ", ".join([
            "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.docker.distribution.manifest.v2+json"])
        status, headers, body = self.get("/v2/%s/manifests/%s" % (repository, reference), accept)
        return status, {k.lower(): v for k, v in headers.items()}, body

    def digest(self, repository: str, tag: str) -> str | None:
        status, headers, _body = self.manifest(repository, tag)
        return headers.get("docker-content-digest") if status == 200 else None


class Images:
    """OCI layouts written once per session; ``push`` copies a tag into the registry with skopeo."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.digests: dict[str, str] = {}
        self.created: dict[str, str] = {}

    def build(self, name: str, created: str, platforms: str = "", seed: str = "dockyard", layers: int = 2,
              layer_size: str = "16K") -> str:
        out = self.root / name
        argv = [sys.executable, str(ROOT / "tools" / "oci_image.py"), str(out), "--tag", name,
                "--layers", str(layers), "--layer-size", layer_size, "--created", created, "--seed", seed]
        if platforms:
            argv += ["--platforms", platforms]
        digest = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
        self.digests[name] = digest
        self.created[name] = created
        return digest

    def push(self, registry: Registry, name: str, repository: str, tag: str, docker: bool = False) -> str:
        """Push with skopeo; ``docker`` converts to a Docker schema 2 manifest (another digest, returned)."""
        argv = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci:%s:%s" % (self.root / name, name),
                "docker://%s/%s:%s" % (registry.host, repository, tag)]
        if name.startswith("multi"):
            argv.insert(2, "--multi-arch=all")
        if docker:
            argv.insert(2, "--format=v2s2")
        subprocess.run(argv, capture_output=True, text=True, check=True)
        return str(registry.digest(repository, tag)) if docker else self.digests[name]


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


@pytest.fixture()
def new_registry(tmp_path: pathlib.Path) -> t.Iterator[t.Callable[..., Registry]]:
    """Start empty registries of the test's own (deletes enabled); all stopped after the test."""
    started: list[Registry] = []

    def start(auth: dict[str, t.Any] | None = None) -> Registry:
        server = Registry(tmp_path / ("registry-%d" % len(started)), auth=auth)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


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


class Gateway:
    """nginx with the role's own nginx.conf (tools/gateway_render.py) in front of a registry."""

    def __init__(self, work: pathlib.Path, port: int, ca: pathlib.Path, process: subprocess.Popen,
                 htpasswd: pathlib.Path | None = None) -> None:
        self.work = work
        self.htpasswd = htpasswd  # htpasswd mode: nginx reads it on every request
        self.port = port
        self.host = "localhost:%d" % port  # a name: TLS without SNI (an IP address) is refused
        self.url = "https://" + self.host
        self.ca = ca
        self.process = process
        self.error_log = work / "error.log"
        self.access_log = work / "access.log"
        self.cache = work / "cache"

    def stop(self) -> None:
        end_process(self.process)
        shutil.rmtree(self.work, ignore_errors=True)

    def status(self, user: str, password: str) -> int:
        """HTTP status of ``GET /v2/`` with these Basic credentials."""
        import base64
        import ssl

        credentials = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        request = urllib.request.Request(self.url + "/v2/", headers={"Authorization": "Basic " + credentials})
        try:
            with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=str(self.ca)),
                                        timeout=10) as response:  # noqa: S310 - loopback only
                return response.status
        except urllib.error.HTTPError as error:
            return error.code


def start_gateway(registry_upstream: str, auth: str = "htpasswd", token_upstream: str = "",
                  **role_vars: t.Any) -> Gateway:
    """Render the gateway role's nginx.conf for loopback and start nginx on it.

    htpasswd mode has one user, ``USER``/``PASSWORD``; ``role_vars`` are further role variables.
    """
    import ssl

    work = gateway_render.workdir()
    try:
        ca, cert, key = make_pki(work)
        htpasswd = None
        if auth == "htpasswd":
            bcrypt = pytest.importorskip("bcrypt", reason="pip install bcrypt (for the htpasswd line)")
            htpasswd = work / "htpasswd"
            hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
            htpasswd.write_text("%s:%s\n" % (USER, hashed))
        port = free_port()
        variables = gateway_render.loopback_vars(
            work, https_port=port, http_port=free_port(), registry=registry_upstream, certificate=cert, key=key,
            auth=auth, token=token_upstream, htpasswd=htpasswd, **role_vars)
        conf = gateway_render.render(work / "nginx.conf", variables)
        process = subprocess.Popen(gateway_render.nginx_argv(conf), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.STDOUT)
        wait_http("https://localhost:%d/v2/" % port, process, work / "error.log",
                  ssl.create_default_context(cafile=str(ca)))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Gateway(work, port, ca, process, htpasswd)


@pytest.fixture(scope="session")
def gateway(registry: Registry) -> t.Iterator[Gateway]:
    if os.geteuid() != 0:
        pytest.skip("the gateway runs nginx as the role does (workers as www-data): run as root")
    server = start_gateway(registry.host)
    yield server
    server.stop()


class PlaybookResult:
    def __init__(self, done: subprocess.CompletedProcess, result: dict[str, t.Any]) -> None:
        self.returncode = done.returncode
        self.output = done.stdout + done.stderr
        self.result = result

    def __getitem__(self, key: str) -> t.Any:
        return self.result[key]

    def get(self, key: str, default: t.Any = None) -> t.Any:
        return self.result.get(key, default)


def playbook_command(playbook: str, extra: dict[str, t.Any], tmp_path: pathlib.Path,
                     *flags: str) -> tuple[list[str], dict[str, str], pathlib.Path]:
    """argv, environment and result file of an ``ansible-playbook`` run (see ``run_playbook``)."""
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
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(path),
            "-e", "@%s" % vars_file, *flags]
    return argv, env, result_file


def run_playbook(playbook: str, extra: dict[str, t.Any], tmp_path: pathlib.Path, *flags: str) -> PlaybookResult:
    """Run a playbook of tests/integration/playbooks (or any path); its vars arrive through one JSON file.

    Playbooks that write ``result_file`` hand back the registered result.
    """
    argv, env, result_file = playbook_command(playbook, extra, tmp_path, *flags)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=300, check=False)
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return PlaybookResult(done, result)


@pytest.fixture()
def playbook(tmp_path: pathlib.Path) -> t.Callable[..., PlaybookResult]:
    def run(name: str, extra: dict[str, t.Any], *flags: str) -> PlaybookResult:
        return run_playbook(name, extra, tmp_path, *flags)
    return run


# --- token mode: the token service and registries that trust it ---------------------------

TOKEN_USERS = {"admin": "admin-pw-" + secrets.token_hex(4), "reader": "reader-pw-" + secrets.token_hex(4)}


class TokenService:
    """The role's token service under Debian's gunicorn on loopback, with a fixed account store.

    ``admin`` may do everything everywhere; ``reader`` may pull ``pub/*`` and ``pub-*/*`` only.
    """

    def __init__(self, workdir: pathlib.Path) -> None:
        import bcrypt
        from token_stack import ISSUER, SERVICE, SERVICE_FILES, SYSTEM_PYTHON, write_key_pair

        self.issuer, self.service = ISSUER, SERVICE
        _key, _cert, key_path, self.certificate = write_key_pair(workdir, "token")
        store = {"version": 1, "robots": {},
                 "users": {name: {"password_hash": bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode(),
                                  "groups": [], "disabled": False} for name, password in TOKEN_USERS.items()},
                 "rules": [{"subject": "user:admin", "repository": "*",
                            "actions": ["pull", "push", "delete", "catalog"]},
                           {"subject": "user:reader", "repository": "pub/*", "actions": ["pull"]}]}
        (workdir / "accounts.json").write_text(json.dumps(store))
        (workdir / "accounts.json").chmod(0o600)
        self.port = free_port()
        self.upstream = "127.0.0.1:%d" % self.port
        self.url = "http://%s/auth/token" % self.upstream
        (workdir / "config.json").write_text(json.dumps({
            "issuer": ISSUER, "service": SERVICE, "key": str(key_path), "certificate": str(self.certificate),
            "store": str(workdir / "accounts.json"), "lifetime": 900, "cache_ttl": 60,
            "audit_log": str(workdir / "audit.jsonl"), "audit_stdout": False}))
        self.log = workdir / "gunicorn.log"
        self.argv = [SYSTEM_PYTHON, "-m", "gunicorn", "--bind", self.upstream, "--workers", "2",
                     "--chdir", str(SERVICE_FILES), "dockyard_token.wsgi:application"]
        self.env = dict(os.environ, DOCKYARD_TOKEN_CONFIG=str(workdir / "config.json"))
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        wait_http("http://%s/healthz" % self.upstream, self.process, self.log)

    def stop(self) -> None:
        end_process(self.process)
        self.process = None

    def registry_auth(self) -> dict[str, t.Any]:
        return {"token": {"realm": self.url, "service": self.service, "issuer": self.issuer,
                          "rootcertbundle": str(self.certificate)}}


@pytest.fixture(scope="session")
def token_service(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[TokenService]:
    sys.path.insert(0, str(ROOT / "tests" / "integration" / "token_service"))
    from token_stack import MISSING as TOKEN_MISSING
    if TOKEN_MISSING:
        pytest.skip("needs %s" % ", ".join(TOKEN_MISSING))
    service = TokenService(tmp_path_factory.mktemp("token-service"))
    service.start()
    yield service
    service.stop()
