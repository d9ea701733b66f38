"""Replication: the replica's timer job copies apps/web from the upstream with its sigstore
signatures, a second run costs at most two requests per tag, a new tag costs only its new
blobs; retention on the replica keeps exactly the kept images' signatures; an OCI layout
exported on the upstream host imports on the replica, with the upstream stopped, with
identical digests.

Signing and verifying need Debian 13's skopeo (Debian 12's is built without sigstore): the
upstream host signs, the replica verifies with a policy.json that requires the signature.
"""
from __future__ import annotations

import json
import shlex
import subprocess

import pytest
from conftest import ADMIN, REPLICA, UPSTREAM
from registry_checks import Instance, instance_name, run_module

REPOSITORY = "apps/web"
AIRGAP = "airgap/tools"
KEYS = "/root/sigstore"
CREDS = shlex.quote(":".join(ADMIN))
ACCESS_LOG = "/var/log/dockyard/gateway/access.log"
SIGNING = f"--registries.d {KEYS}/registries.d"


def raw_digest(instance: Instance, host: str, reference: str) -> str:
    """sha256 of the manifest bytes a registry serves for reference (byte-identical copies agree)."""
    return "sha256:" + instance.run(f"skopeo inspect --raw --creds {CREDS} docker://{host}/{reference} "
                                    f"| sha256sum").stdout.split()[0]


def tags(instance: Instance, host: str, repository: str) -> set[str]:
    return set(json.loads(instance.run(f"skopeo list-tags --creds {CREDS} docker://{host}/{repository}").stdout)
               ["Tags"] or [])


def signature_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".sig"


def push(upstream: Instance, reference: str, seed: str, *, sign: bool) -> str:
    """Build an image on the upstream host (shared base layers, one of its own), push it there,
    signed with the scenario's sigstore key when asked; its digest."""
    layout, tag = f"/tmp/oci-{seed}", reference.rsplit(":", 1)[1]
    upstream.run(f"rm -rf {layout} && oci-image {layout} --tag {tag} --base-layers 256K,64K --layers 1 "
                 f"--seed {seed}")
    signing = f"--sign-by-sigstore-private-key {KEYS}/key.private --sign-passphrase-file {KEYS}/passphrase" \
        if sign else ""
    upstream.run(f"skopeo {SIGNING} copy -q --dest-creds {CREDS} {signing} oci:{layout}:{tag} "
                 f"docker://{UPSTREAM}/{reference}")
    return raw_digest(upstream, UPSTREAM, reference)


def verifies(replica: Instance, reference: str) -> bool:
    """Whether the replica's skopeo accepts the image under a policy that requires the signature."""
    result = replica.run(f"rm -rf /tmp/verified && skopeo {SIGNING} --policy {KEYS}/policy.json copy -q --remove-signatures "
                         f"--src-creds {CREDS} docker://{REPLICA}/{reference} oci:/tmp/verified:x", ok=False)
    return result.rc == 0


def replicate(replica: Instance, upstream: Instance) -> tuple[dict, int, list[str]]:
    """One run of the replica's replication service: its journal line, the upstream's requests
    during the run, and the paths of the blobs it served."""
    before = int(upstream.run(f"wc -l < {ACCESS_LOG}").stdout)
    cursor = replica.run("journalctl -n 0 --show-cursor | tail -n 1 | sed 's/^-- cursor: //'").stdout.strip()
    replica.run("systemctl start dockyard-replication.service")
    lines = upstream.run(f"tail -n +{before + 1} {ACCESS_LOG}").stdout.splitlines()
    journal = replica.run(f"journalctl -u dockyard-replication.service --after-cursor {shlex.quote(cursor)} "
                          "-o cat | grep '^dockyard-replicate: '").stdout
    requests = [json.loads(line) for line in lines if line.startswith("{")]
    blobs = [entry["uri"] for entry in requests if "/blobs/sha256:" in entry.get("uri", "")
             and entry.get("method") == "GET"]
    return {"journal": journal}, len(requests), blobs


@pytest.fixture(scope="module")
def signed(upstream: Instance, replica: Instance) -> dict[str, str]:
    """Three signed images and one unsigned on the upstream; the public key and a policy that
    requires signatures on the replica."""
    upstream.run(f"test -e {KEYS}/key.pub || (mkdir -p {KEYS}/registries.d && cd {KEYS} "
                 f"&& head -c 24 /dev/urandom | base64 > passphrase "
                 f"&& skopeo generate-sigstore-key --output-prefix key --passphrase-file passphrase "
                 f"&& printf 'default-docker:\\n  use-sigstore-attachments: true\\n' > registries.d/sigstore.yaml)")
    public_key = upstream.host.file(f"{KEYS}/key.pub").content_string
    # Signed as the upstream's images: the replica's are the same, under its name.
    requirement = {"type": "sigstoreSigned", "keyPath": f"{KEYS}/key.pub",
                   "signedIdentity": {"type": "remapIdentity", "prefix": REPLICA, "signedPrefix": UPSTREAM}}
    policy = {"default": [{"type": "reject"}],
              "transports": {"docker": {REPLICA: [requirement]}, "oci": {"": [{"type": "insecureAcceptAnything"}]}}}
    replica.run(f"mkdir -p {KEYS}/registries.d && printf %s {shlex.quote(public_key)} > {KEYS}/key.pub "
                f"&& printf %s {shlex.quote(json.dumps(policy))} > {KEYS}/policy.json "
                f"&& printf 'default-docker:\\n  use-sigstore-attachments: true\\n' > {KEYS}/registries.d/sigstore.yaml")
    listed = upstream.run(f"skopeo list-tags --creds {CREDS} docker://{UPSTREAM}/{REPOSITORY}", ok=False)
    if listed.rc == 0 and '"unsigned"' in listed.stdout:  # the checks run again on the same instances
        return {tag: raw_digest(upstream, UPSTREAM, f"{REPOSITORY}:{tag}") for tag in ("1", "2", "3", "unsigned")}
    digests = {tag: push(upstream, f"{REPOSITORY}:{tag}", f"sites-{tag}", sign=True) for tag in ("1", "2", "3")}
    digests["unsigned"] = push(upstream, f"{REPOSITORY}:unsigned", "sites-unsigned", sign=False)
    return digests


def test_replication_copies_images_and_signatures_byte_for_byte(upstream, replica, signed):
    report, _requests, _blobs = replicate(replica, upstream)
    assert "copied 7," in report["journal"] and "failed 0" in report["journal"], report
    for tag, digest in signed.items():
        assert raw_digest(replica, REPLICA, f"{REPOSITORY}:{tag}") == digest
    copied = tags(replica, REPLICA, REPOSITORY)
    assert {signature_tag(signed[tag]) for tag in ("1", "2", "3")} <= copied
    assert signature_tag(signed["unsigned"]) not in copied
    for tag in ("1", "2", "3"):
        assert verifies(replica, f"{REPOSITORY}:{tag}"), tag
    # The policy can refuse: an image without a signature is rejected.
    assert not verifies(replica, f"{REPOSITORY}:unsigned")


def test_second_run_sends_nothing_and_costs_at_most_two_requests_per_tag(upstream, replica, signed):
    report, requests, blobs = replicate(replica, upstream)
    assert "copied 0," in report["journal"] and "0 blobs" in report["journal"], report
    # Four tags and three signature tags on the upstream; the destination's requests go to
    # the replica, so these are the source's: tags list, HEADs and tokens.
    assert blobs == []
    assert requests <= 2 * 7, (requests, report)


def test_a_new_tag_costs_only_its_new_blobs(upstream, replica, signed):
    signed["4"] = push(upstream, f"{REPOSITORY}:4", "sites-4", sign=True)
    manifest = json.loads(upstream.run(f"skopeo inspect --raw --creds {CREDS} "
                                       f"docker://{UPSTREAM}/{REPOSITORY}:4").stdout)
    own = {manifest["config"]["digest"], manifest["layers"][-1]["digest"]}
    signature = json.loads(upstream.run(f"skopeo inspect --raw --creds {CREDS} docker://{UPSTREAM}/{REPOSITORY}:"
                                        f"{signature_tag(signed['4'])}").stdout)
    own |= {signature["config"]["digest"]} | {layer["digest"] for layer in signature["layers"]}
    report, _requests, blobs = replicate(replica, upstream)
    assert "copied 2," in report["journal"], report  # the tag and its signature
    fetched = {uri.rsplit("/", 1)[1].split("?")[0] for uri in blobs}
    assert fetched == own, (fetched, own)
    assert verifies(replica, f"{REPOSITORY}:4")


def test_retention_keeps_exactly_the_signatures_of_kept_images(replica, signed):
    result = run_module(instance_name("sites-replica"), "dockyard.registry.repository", {
        "registry_url": f"https://{REPLICA}", "username": ADMIN[0], "password": ADMIN[1],
        "name": REPOSITORY, "keep_patterns": ["[34]", "unsigned"]})
    assert result.get("changed") is True, result
    left = tags(replica, REPLICA, REPOSITORY)
    assert left == {"3", "4", "unsigned", signature_tag(signed["3"]), signature_tag(signed["4"])}, left
    assert verifies(replica, f"{REPOSITORY}:3") and verifies(replica, f"{REPOSITORY}:4")


def test_air_gapped_transfer_keeps_digests(upstream, replica):
    upstream_name, replica_name = instance_name("sites-upstream"), instance_name("sites-replica")
    digests = {tag: push(upstream, f"{AIRGAP}:{tag}", f"airgap-{tag}", sign=False) for tag in ("1.0", "1.1")}
    exported = run_module(upstream_name, "dockyard.registry.image_sync", {
        "source": {"registry_url": f"https://{UPSTREAM}", "username": ADMIN[0], "password": ADMIN[1]},
        "destination": {"path": "/srv/transfer"}, "repositories": [AIRGAP]})
    assert len(exported["copied"]) == 2, exported
    upstream.run(f"skopeo inspect --raw oci:/srv/transfer/{AIRGAP}:1.0 > /dev/null")
    # Carry the directory: out of the upstream host, into the replica.
    carried = subprocess.run(f"docker exec {upstream_name} tar -C /srv -c transfer "
                             f"| docker exec -i {replica_name} tar -C /srv -x", shell=True, check=False,
                             capture_output=True, text=True)
    assert carried.returncode == 0, carried.stderr
    upstream.run("systemctl stop docker-registry")
    try:
        imported = run_module(replica_name, "dockyard.registry.image_sync", {
            "source": {"path": "/srv/transfer"},
            "destination": {"registry_url": f"https://{REPLICA}", "username": ADMIN[0], "password": ADMIN[1]},
            "repositories": [".*"]})
        assert sorted(item["tag"] for item in imported["copied"]) == ["1.0", "1.1"], imported
        assert imported["requests"]["source"] == 0
        for tag, digest in digests.items():
            assert raw_digest(replica, REPLICA, f"{AIRGAP}:{tag}") == digest
    finally:
        upstream.run("systemctl start docker-registry")
