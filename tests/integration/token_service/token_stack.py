"""Helpers of the token stack on loopback: docker-registry 2.8 (auth: token, notifications to the
service's events listener) + the token service under gunicorn.

The token service runs as the target host runs it: ``/usr/bin/python3 -m gunicorn`` on
Debian's python3-gunicorn, python3-jwt, python3-cryptography and python3-bcrypt. Its
account store is written by the collection's modules through ``ansible-playbook``.
"""
from __future__ import annotations

import base64
import datetime
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import typing as t
import urllib.error
import urllib.parse
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = pathlib.Path(__file__).resolve().parents[3]
COLLECTIONS = ROOT / ".build" / "collections"
SERVICE_FILES = ROOT / "roles" / "token_service" / "files"
VENV_BIN = pathlib.Path(sys.executable).parent
SYSTEM_PYTHON = "/usr/bin/python3"
ISSUER = "dockyard-test-issuer"
SERVICE = "registry.dockyard.test"


def _missing() -> list:
    missing = [name for name in ("docker-registry", "skopeo") if shutil.which(name) is None]
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gunicorn, jwt, bcrypt, cryptography"],
                           capture_output=True, check=False)
    if probe.returncode:
        missing.append("python3-gunicorn python3-jwt python3-bcrypt python3-cryptography")
    return missing


MISSING = _missing()
PYTESTMARK = pytest.mark.skipif(bool(MISSING), reason="needs %s" % ", ".join(MISSING))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, process: subprocess.Popen, log: pathlib.Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("%s exited: %s" % (process.args, log.read_text(errors="replace")[-3000:]))
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - loopback only
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("%s did not answer: %s" % (url, log.read_text(errors="replace")[-3000:]))


def start_service(workdir: pathlib.Path, config: dict, binds: t.Sequence[str], workers: int = 2,
                  options: t.Sequence[str] = (), env: t.Optional[dict] = None) -> subprocess.Popen:
    """The token service under gunicorn as the unit runs it, with ``config`` as its configuration
    file; returns once ``/healthz`` answers on the first of ``binds`` (HOST:PORT)."""
    config_path, log_path = workdir / "token-config.json", workdir / "gunicorn.log"
    config_path.write_text(json.dumps(config))
    arguments = [SYSTEM_PYTHON, "-m", "gunicorn", *[part for bind in binds for part in ("--bind", bind)],
                 "--workers", str(workers), "--chdir", str(SERVICE_FILES), *options, "dockyard_token.wsgi:application"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(arguments, stdout=log, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, DOCKYARD_TOKEN_CONFIG=str(config_path), **(env or {})))
    try:
        wait_http("http://%s/healthz" % binds[0], process, log_path)
    except RuntimeError:
        stop_processes([process])
        raise
    return process


def stop_processes(processes: t.Iterable[subprocess.Popen]) -> None:
    processes = list(processes)
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def write_key_pair(directory: pathlib.Path, name: str) -> tuple:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    key_path, cert_path = directory / (name + ".key"), directory / (name + ".crt")
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, key_path, cert_path


class Stack(t.NamedTuple):
    registry: str        # http://127.0.0.1:PORT
    token_url: str       # http://127.0.0.1:PORT/auth/token
    host: str            # 127.0.0.1:PORT, for skopeo
    key: t.Any           # the trusted signing key
    cert: t.Any
    store_path: pathlib.Path
    audit_log: pathlib.Path
    workdir: pathlib.Path
    events_url: str = ""  # http://127.0.0.1:PORT/events, the registry's notification endpoint
    events_secret: str = ""

    def playbook(self, tasks: list, name: str = "play") -> dict:
        """Run tasks of the collection's modules on localhost; returns the registered results by task name."""
        results_file = self.workdir / ("%s-results.json" % name)
        play = [{
            "hosts": "localhost", "gather_facts": False,
            "module_defaults": {module: {"store_path": str(self.store_path), "store_group": "root"}
                                for module in ("dockyard.registry.user", "dockyard.registry.robot_account",
                                               "dockyard.registry.access_rule")},
            "tasks": [dict(task, register="r%d" % index) for index, task in enumerate(tasks)] + [{
                "ansible.builtin.copy": {
                    "dest": str(results_file), "mode": "0600",
                    "content": "{{ {%s} | to_json }}" % ", ".join("'r%d': r%d" % (i, i) for i in range(len(tasks))),
                }, "no_log": True}],
        }]
        path = self.workdir / ("%s.yml" % name)
        path.write_text(json.dumps(play))
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
        run = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                              "-e", "ansible_python_interpreter=%s" % SYSTEM_PYTHON, str(path)],
                             capture_output=True, text=True, env=env, check=False, timeout=300)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        results = json.loads(results_file.read_text())
        return {task.get("name", str(index)): results["r%d" % index] for index, task in enumerate(tasks)}


def request_token(token_url: str, creds: t.Optional[str], scopes: t.Iterable[str] = (), account: t.Optional[str] = None,
                  headers: t.Optional[dict] = None) -> tuple:
    """GET /auth/token with Basic ``NAME:SECRET``: (status, response headers, decoded JSON body)."""
    query = [("service", SERVICE)] + [("scope", scope) for scope in scopes]
    if account:
        query.append(("account", account))
    request = urllib.request.Request(token_url + "?" + urllib.parse.urlencode(query), headers=headers or {})
    if creds:
        request.add_header("Authorization", "Basic " + base64.b64encode(creds.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")
