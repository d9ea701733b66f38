"""Real clients push and pull real images through the gateway."""
from __future__ import annotations

import json

from registry_checks import PUSHER, READER, REGISTRY


def test_push_and_pull_an_image_with_a_64_mib_layer(instance):
    digest = instance.push_image("big/image:1.0", tag="1.0", layers=3, big="64M", seed="big")
    assert instance.inspect("big/image:1.0")["Digest"] == digest
    instance.run("rm -rf /tmp/pulled && skopeo copy -q --src-creds "
                 f"{':'.join(READER)} docker://{REGISTRY}/big/image:1.0 oci:/tmp/pulled:1.0")
    manifest = json.loads(instance.run("skopeo inspect --raw oci:/tmp/pulled:1.0").stdout)
    sizes = [layer["size"] for layer in manifest["layers"]]
    assert len(sizes) == 4 and max(sizes) >= 64 * 1024 * 1024
    for layer in manifest["layers"]:
        blob = "/tmp/pulled/blobs/sha256/" + layer["digest"].split(":")[1]
        assert instance.run(f"sha256sum {blob}").stdout.split()[0] == layer["digest"].split(":")[1]


def test_podman_pulls_through_the_gateway(instance):
    instance.push_image("clients/podman:1", seed="podman")
    auth = "--authfile /tmp/podman-auth.json"
    instance.run(f"podman login {auth} -u {READER[0]} -p {READER[1]} {REGISTRY}")
    image_id = instance.run(f"podman pull {auth} -q {REGISTRY}/clients/podman:1").stdout.strip()
    inspect = f"podman image inspect --format '{{{{.Id}}}}' {REGISTRY}/clients/podman:1"
    assert instance.run(inspect).stdout.strip() == image_id


def test_pushes_without_valid_credentials_are_refused(instance):
    layout = "/tmp/oci-anon"
    instance.run(f"rm -rf {layout} && oci-image {layout} --tag 1 --seed anon")
    result = instance.run(f"skopeo copy -q --dest-no-creds oci:{layout}:1 docker://{REGISTRY}/anon/push:1", ok=False)
    assert result.rc != 0 and "authentication required" in result.stderr.lower()
    wrong = instance.run(f"skopeo copy -q --dest-creds {PUSHER[0]}:nope oci:{layout}:1 "
                         f"docker://{REGISTRY}/anon/push:1", ok=False)
    assert wrong.rc != 0
