"""A cluster of two registry nodes on one Swift store behind HAProxy, checked with real clients."""
from __future__ import annotations

import json
import urllib.parse

import pytest
from conftest import ADMIN, BACKEND, CONTAINER, SWIFT_SECRET, bearer, name, servers, via, wait_for_state

from registry_checks import REGISTRY, assert_check_mode_changes_nothing, playbook, recaps, token

ALICE = ("alice", "molecule-alice-secret")
ENV_FILE = "/etc/docker/registry/http-secret.env"


def push_token(instance, repository: str, extra: str = "") -> str:
    status, body = token(instance, ADMIN, f"repository:{repository}:pull,push", extra=extra)
    assert status == 200, body
    return body["token"]


def content(instance, reference: str) -> tuple[str, list[str]]:
    """Config and layer digests of an image's manifest."""
    manifest = json.loads(instance.run(f"skopeo inspect --raw --creds {':'.join(ADMIN)} "
                                       f"docker://{REGISTRY}/{reference}").stdout)
    return manifest["config"]["digest"], [layer["digest"] for layer in manifest["layers"]]


def path_of(location: str) -> str:
    parts = urllib.parse.urlsplit(location)
    return f"{parts.path}?{parts.query}"


@pytest.fixture(scope="module")
def image(client) -> tuple[str, str]:
    """An image pushed through the load balancer with skopeo: reference and manifest digest."""
    reference = "team-a/app:1"
    return reference, client.push_image(reference, creds=ADMIN, seed="cluster", layers=3)


def test_realm_names_the_cluster_through_the_load_balancer(client):
    status, headers, _size = client.http("/v2/")
    assert status == 401
    assert headers["www-authenticate"] == f'Bearer realm="https://{REGISTRY}/auth/token",service="{REGISTRY}"'


def test_every_node_serves_an_image_pushed_through_the_load_balancer(image, node_a, node_b):
    reference, digest = image
    for node in (node_a, node_b):
        assert node.inspect(reference, creds=ADMIN)["Digest"] == digest
        # skopeo verifies every blob's digest while it copies.
        node.run(f"rm -rf /tmp/pulled && skopeo copy -q --src-creds {':'.join(ADMIN)} "
                 f"docker://{REGISTRY}/{reference} oci:/tmp/pulled:1")


def test_podman_pushes_and_pulls_through_the_load_balancer(client, image, node_b):
    auth = "--authfile /tmp/podman-auth.json"
    client.run(f"podman login {auth} -u {ALICE[0]} -p {ALICE[1]} {REGISTRY}")
    client.run(f"podman pull {auth} -q {REGISTRY}/{image[0]}")
    client.run(f"podman tag {REGISTRY}/{image[0]} {REGISTRY}/team-a/app:podman")
    client.run(f"podman push {auth} -q {REGISTRY}/team-a/app:podman")
    # podman writes its own manifest (other annotations): the same config and layers.
    assert content(node_b, "team-a/app:podman") == content(node_b, image[0])


def test_an_upload_started_on_one_node_finishes_on_the_other(node_a, client):
    repository = "team-a/moved"
    jwt = push_token(node_a, repository)
    node_a.run("head -c 3000000 /dev/urandom > /tmp/moved.bin")
    digest = "sha256:" + node_a.run("sha256sum /tmp/moved.bin").stdout.split()[0]

    status, headers, _size = node_a.http(f"/v2/{repository}/blobs/uploads/", method="POST", extra=bearer(jwt))
    assert status == 202, node_a.body()
    status, headers, _size = node_a.http(path_of(headers["location"]), method="PATCH", extra=(
        f"{bearer(jwt)} -H 'Content-Type: application/octet-stream' --data-binary @/tmp/moved.bin"))
    assert status == 202, node_a.body()
    # Node B can read the upload's state only because both nodes share http.secret.
    status, headers, _size = node_a.http(f"{path_of(headers['location'])}&digest={digest}", method="PUT",
                                         extra=f"{bearer(jwt)} -H 'Content-Length: 0' {via('node-b')}")
    assert status == 201, node_a.body()

    status, body = token(client, ADMIN, f"repository:{repository}:pull")
    status, _headers, size = client.http(f"/v2/{repository}/blobs/{digest}", extra=f"-L {bearer(body['token'])}")
    assert status == 200 and size == 3000000
    assert "sha256:" + client.run("sha256sum /tmp/body").stdout.split()[0] == digest


def test_a_token_from_one_node_is_accepted_by_the_other(image, node_a, node_b):
    reference, digest = image
    repository, tag = reference.split(":")
    status, body = token(node_a, ADMIN, f"repository:{repository}:pull")
    assert status == 200
    accept = "-H 'Accept: application/vnd.oci.image.manifest.v1+json'"
    status, headers, _size = node_a.http(f"/v2/{repository}/manifests/{tag}",
                                         extra=f"{bearer(body['token'])} {accept} {via('node-b')}")
    assert status == 200 and headers["docker-content-digest"] == digest
    # ... because node B's registry trusts node A's certificate; node A's key stays on A.
    bundle = node_b.host.file("/etc/docker/registry/token-trust.pem").content_string
    assert node_a.host.file("/etc/dockyard/token-signing.crt").content_string.strip() in bundle
    assert bundle.count("BEGIN CERTIFICATE") == 2
    keys = {node.run("sha256sum /etc/dockyard/token/token.key").stdout.split()[0] for node in (node_a, node_b)}
    assert len(keys) == 2


def test_blobs_live_in_the_shared_store(image, swift, node_a, node_b):
    listing = swift.run(f"swift -A http://127.0.0.1:8080/auth/v1.0 -U dockyard:registry -K {SWIFT_SECRET} "
                        f"list {CONTAINER}").stdout.split()
    manifest = json.loads(node_a.run(f"skopeo inspect --raw --creds {':'.join(ADMIN)} "
                                     f"docker://{REGISTRY}/{image[0]}").stdout)
    for layer in manifest["layers"] + [manifest["config"]]:
        algorithm, hexdigest = layer["digest"].split(":")
        assert any(entry.endswith(f"/blobs/{algorithm}/{hexdigest[:2]}/{hexdigest}/data") for entry in listing)
    for node in (node_a, node_b):
        assert not node.host.file("/var/lib/docker-registry/docker").exists


def test_nodes_share_one_http_secret_and_keep_secrets_out_of_config_and_logs(node_a, node_b):
    digests = set()
    for node in (node_a, node_b):
        secrets = node.host.file(ENV_FILE)
        assert (secrets.user, secrets.group, secrets.mode) == ("root", "docker-registry", 0o640)
        digests.add(node.run(f"grep '^REGISTRY_HTTP_SECRET=' {ENV_FILE} | sha256sum").stdout)
        assert f"REGISTRY_STORAGE_SWIFT_PASSWORD={SWIFT_SECRET}" in secrets.content_string
        assert SWIFT_SECRET not in node.host.file("/etc/docker/registry/config.yml").content_string
        assert node.run(f"journalctl --no-pager | grep -c {SWIFT_SECRET}", ok=False).stdout.strip() == "0"
    assert len(digests) == 1


def test_load_balancer_checks_every_node(balancer):
    assert servers(balancer) == {name("node-a"): (2, 0), name("node-b"): (2, 0)}


@pytest.mark.parametrize("unit", ["nginx", "docker-registry"])
def test_a_dead_node_is_taken_out_and_put_back(unit, balancer, node_b, client):
    node_b.run(f"systemctl stop {unit}")
    try:
        wait_for_state(balancer, "node-b", 0)
        for _attempt in range(4):  # with node B out, every request lands on node A
            assert client.inspect("team-a/app:1", creds=ADMIN)["Digest"]
    finally:
        node_b.run(f"systemctl start {unit}")
    wait_for_state(balancer, "node-b", 2)


def test_drain_procedure(balancer):
    socket = "socat stdio /run/haproxy/admin.sock"
    balancer.run(f"echo 'set server {BACKEND}/{name('node-b')} state drain' | {socket}")
    try:
        assert servers(balancer)[name("node-b")] == (2, 8)
    finally:
        balancer.run(f"echo 'set server {BACKEND}/{name('node-b')} state ready' | {socket}")
    assert servers(balancer)[name("node-b")] == (2, 0)


def test_no_node_collects_garbage_on_its_own(node_a, node_b):
    """The controller schedules the cluster's collection (playbooks/gc.yml); a node alone refuses."""
    for node in (node_a, node_b):
        entries = node.run("grep -s -c dockyard-registry-gc /etc/cron.d/dockyard-registry-gc", ok=False).stdout.strip()
        assert entries in ("", "0")
        refused = node.run("dockyard-registry-gc --json", ok=False)
        assert refused.rc == 1 and json.loads(refused.stdout)["step"] == "cluster", refused.stdout
        assert "this node is one of 2 registry nodes" in refused.stdout
    result = playbook("-e", "dockyard_hosts=registry", "dockyard.registry.gc", limit=name("node-b"))
    assert result.returncode != 0
    assert "share the store of" in " ".join(result.stdout.split())
    assert all(counts["changed"] == 0 for counts in recaps(result.stdout).values())


def _refused(*arguments: str) -> str:
    result = playbook(*arguments, "-e", "dockyard_hosts=registry", "dockyard.registry.site")
    assert result.returncode != 0, result.stdout[-3000:]
    assert all(counts["changed"] == 0 for counts in recaps(result.stdout).values()), result.stdout[-3000:]
    # ansible-core 2.19 writes a task's failure to stderr.
    return " ".join((result.stdout + result.stderr).split())


def test_preflight_refuses_filesystem_storage_on_two_nodes():
    output = _refused("-e", "registry__storage_driver=filesystem")
    assert "Filesystem storage cannot be shared: 2 registry nodes" in output


def test_preflight_refuses_differing_storage_settings(tmp_path):
    options = {"authurl": "http://elsewhere:8080/auth/v1.0", "username": "dockyard:registry", "container": "other"}
    overlay = tmp_path / "differ.yml"
    overlay.write_text(json.dumps({"all": {"hosts": {name("node-b"): {"registry__storage_options": options}}}}))
    output = _refused("-i", str(overlay))
    assert "storage settings differ in options.authurl options.container (nodes:" in output


def test_preflight_refuses_missing_credentials():
    output = _refused("-e", json.dumps({"registry__storage_secret": ""}))
    assert "its credential in registry__storage_secret (missing)" in output


def test_check_mode_changes_nothing():
    assert_check_mode_changes_nothing(SWIFT_SECRET, ADMIN[1])
