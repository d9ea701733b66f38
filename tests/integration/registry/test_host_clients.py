"""The clients the docs name, on this machine, through the role's own gateway in token mode:
docker (the daemon this machine runs) and podman log in, push and pull images made here, and
an account that may only pull is refused the push. (skopeo: the module and token tests; the
realm on the name and port a client came in by: the Molecule token scenario.)"""
from __future__ import annotations

import io
import os
import pathlib
import shutil
import subprocess
import tarfile
import tempfile
import typing as t

import pytest

from conftest import TOKEN_USERS, Gateway, Registry, start_gateway

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the gateway runs nginx as the role does: run as root")


def docker_runs() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="module")
def token_gateway(token_service: t.Any, tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Gateway]:
    registry = Registry(tmp_path_factory.mktemp("clients-registry"), auth=token_service.registry_auth())
    registry.start()
    gateway = start_gateway(registry.host, auth="token", token_upstream=token_service.upstream)
    yield gateway
    gateway.stop()
    registry.stop()


def rootfs_tar(text: str) -> bytes:
    """A one-file root filesystem: an image made here, nothing pulled from anywhere."""
    data = text.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        member = tarfile.TarInfo("hello.txt")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def run(argv: list[str], stdin: bytes | str | None = None) -> str:
    done = subprocess.run(argv, input=stdin.encode() if isinstance(stdin, str) else stdin,
                          capture_output=True, check=False, timeout=300)
    assert done.returncode == 0, "%s: %s" % (" ".join(argv), (done.stdout + done.stderr).decode(errors="replace"))
    return done.stdout.decode().strip()


@pytest.mark.skipif(not docker_runs(), reason="needs a running Docker daemon")
def test_docker_logs_in_pushes_and_pulls(token_gateway: Gateway, tmp_path: pathlib.Path) -> None:
    docker = ["docker", "--config", str(tmp_path / "docker-config")]
    image = "%s/pub/docker-client:%s" % (token_gateway.host, tmp_path.name[-8:].lower())
    run(docker + ["login", "-u", "admin", "--password-stdin", token_gateway.host], TOKEN_USERS["admin"])
    run(docker + ["import", "-", image], rootfs_tar("made by the docker test\n"))
    try:
        run(docker + ["push", image])
        pushed = run(docker + ["inspect", "--format", "{{ index .RepoDigests 0 }}", image])
        run(docker + ["rmi", image])
        run(docker + ["pull", image])
        assert run(docker + ["inspect", "--format", "{{ index .RepoDigests 0 }}", image]) == pushed
    finally:
        subprocess.run(docker + ["rmi", "-f", image], capture_output=True, check=False)
    # The account that may only pull pub/* is refused the push, through the same flow.
    run(docker + ["login", "-u", "reader", "--password-stdin", token_gateway.host], TOKEN_USERS["reader"])
    run(docker + ["import", "-", image], rootfs_tar("the reader's\n"))
    try:
        refused = subprocess.run(docker + ["push", image], capture_output=True, text=True, check=False, timeout=300)
        assert refused.returncode != 0 and "denied" in (refused.stdout + refused.stderr).lower(), refused
    finally:
        subprocess.run(docker + ["rmi", "-f", image], capture_output=True, check=False)


@pytest.mark.skipif(shutil.which("podman") is None, reason="needs podman")
def test_podman_logs_in_pushes_and_pulls(token_gateway: Gateway, tmp_path: pathlib.Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(token_gateway.ca, certs / "ca.crt")
    # podman refuses a run root longer than 50 characters: pytest's tmp_path is longer.
    state = pathlib.Path(tempfile.mkdtemp(prefix="dockyard-podman-"))
    podman = ["podman", "--root", str(state / "storage"), "--runroot", str(state / "run"), "--storage-driver", "vfs"]
    auth = ["--authfile", str(tmp_path / "auth.json"), "--cert-dir", str(certs)]
    image = "%s/pub/podman-client:1" % token_gateway.host
    archive = tmp_path / "rootfs.tar"
    archive.write_bytes(rootfs_tar("made by the podman test\n"))
    digest_file = tmp_path / "digest"
    try:
        run(podman + ["login", *auth, "-u", "admin", "--password-stdin", token_gateway.host], TOKEN_USERS["admin"])
        run(podman + ["import", str(archive), image])
        run(podman + ["push", *auth, "--digestfile", str(digest_file), image])
        run(podman + ["rmi", image])
        run(podman + ["pull", *auth, image])
        assert run(podman + ["image", "inspect", "--format", "{{ .Digest }}", image]) == digest_file.read_text().strip()
    finally:
        subprocess.run(podman + ["system", "reset", "--force"], capture_output=True, check=False)
        shutil.rmtree(state, ignore_errors=True)
