"""A pull-through mirror of a Dockyard host (registry__mirror), with upstream credentials.

Pulls through the mirror are cached (served while the upstream's registry is stopped);
writes are refused by the mirror's gateway with a registry error naming the upstream; and
CVE-2026-33540 is contained: Distribution 2.8's proxy sends the upstream credentials to the
token realm an upstream names, but the mirror's egress allowlist lets nothing reach a realm
that is neither the upstream nor its token service.
"""
from __future__ import annotations

import base64
import json
import shlex

from conftest import ADMIN, MIRROR, MIRROR_PULLER, UPSTREAM, recorded
from registry_checks import STORE, Instance, nft_counter, wait_for

READ_ONLY = f"this registry is a read-only mirror of https://{UPSTREAM}"


def pull(client: Instance, registry: str, reference: str, *, ok: bool = True):
    """Copy an image (every blob) from a registry into an OCI layout in the client."""
    return client.run(f"rm -rf /tmp/pulled && skopeo copy -q --src-creds {shlex.quote(':'.join(ADMIN))} "
                      f"docker://{registry}/{reference} oci:/tmp/pulled:1", ok=ok)


def test_a_pull_through_the_mirror_is_cached(client, upstream, mirror):
    digest = client.push_image("cache/app:1", seed="mirror-cache", creds=ADMIN, registry=UPSTREAM)
    pull(client, MIRROR, "cache/app:1")
    assert client.inspect("cache/app:1", creds=ADMIN, registry=MIRROR)["Digest"] == digest
    # The proxy stores blobs after it has served them: wait until every one is on disk.
    manifest = json.loads(client.run(f"skopeo inspect --raw --creds {shlex.quote(':'.join(ADMIN))} "
                                     f"docker://{MIRROR}/cache/app:1").stdout)
    for blob in [manifest["config"]] + manifest["layers"]:
        hexdigest = blob["digest"].split(":")[1]
        mirror.wait_until(f"test -s {STORE}/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data", attempts=150)
    upstream.run("systemctl stop docker-registry")
    try:
        assert client.run(f"curl -s -o /dev/null -w '%{{http_code}}' https://{UPSTREAM}/v2/").stdout == "502"
        pull(client, MIRROR, "cache/app:1")
        assert client.inspect("cache/app:1", creds=ADMIN, registry=MIRROR)["Digest"] == digest
        # What the mirror has never fetched, it cannot serve.
        assert pull(client, MIRROR, "cache/never:1", ok=False).rc != 0
    finally:
        upstream.run("systemctl start docker-registry")
    upstream.wait_until(f"curl -s -o /dev/null -w '%{{http_code}}' https://{UPSTREAM}/v2/ | grep -qx 401", attempts=100)


def test_pushes_and_deletes_on_the_mirror_are_refused(client):
    refused = client.run(f"rm -rf /tmp/oci-push && oci-image /tmp/oci-push --tag 1 --seed mirror-push && "
                         f"skopeo copy -q --dest-creds {shlex.quote(':'.join(ADMIN))} oci:/tmp/oci-push:1 "
                         f"docker://{MIRROR}/cache/pushed:1", ok=False)
    assert refused.rc != 0 and READ_ONLY in refused.stderr, refused.stderr
    digest = client.inspect("cache/app:1", creds=ADMIN, registry=MIRROR)["Digest"]
    for method, path in (("POST", "/v2/cache/app/blobs/uploads/"),
                         ("PUT", "/v2/cache/app/manifests/2"),
                         ("DELETE", f"/v2/cache/app/manifests/{digest}"),
                         ("DELETE", f"/v2/cache/app/blobs/{digest}")):
        status, headers, _size = client.http(path, method=method, creds=ADMIN, host=MIRROR)
        assert status == 405, (method, path, status)
        assert json.loads(client.body()) == {"errors": [{"code": "UNSUPPORTED", "message": READ_ONLY}]}
        assert headers["content-type"] == "application/json" and headers["allow"] == "GET, HEAD"
    # The image is still there.
    assert client.inspect("cache/app:1", creds=ADMIN, registry=MIRROR)["Digest"] == digest


ROGUE_CONFIG = """version: 0.1
log: {level: info}
storage: {inmemory: {}}
http: {addr: "127.0.0.1:5099"}
proxy:
  remoteurl: http://upstream.dockyard.test:8444
  username: %s
  password: %s
"""


def serve_rogue_proxy(instance: Instance) -> None:
    """Start a second proxy-mode Distribution on 127.0.0.1:5099 (the host's own docker-registry
    binary, the mirror's upstream credentials) whose upstream is the rogue one on the upstream
    host. At start it asks the rogue upstream for its token realm."""
    instance.run(f"printf %s {shlex.quote(ROGUE_CONFIG % MIRROR_PULLER)} > /tmp/rogue.yml && "
                 "(nohup docker-registry serve /tmp/rogue.yml > /tmp/rogue.log 2>&1 & echo $! > /tmp/rogue.pid)")
    instance.wait_until("curl -s -o /dev/null http://127.0.0.1:5099/v2/", attempts=100)


def stop_rogue_proxy(instance: Instance) -> None:
    instance.run("kill $(cat /tmp/rogue.pid)")


def test_a_rogue_realm_gets_no_credentials_through_the_egress_allowlist(client, upstream, mirror, replica):
    client.run("truncate -s 0 /var/log/sites-realm.jsonl")
    refused_before = nft_counter(mirror, "egress_refused")
    serve_rogue_proxy(mirror)
    try:
        status = mirror.run("curl -s -m 90 -o /dev/null -w '%{http_code}' "
                            "http://127.0.0.1:5099/v2/library/app/manifests/1", ok=False).stdout
    finally:
        stop_rogue_proxy(mirror)
    # The rogue upstream was asked, from the mirror, and named its realm ...
    assert any(entry["path"] == "/v2/" for entry in recorded(upstream, "rogue"))
    # ... whose listener heard nothing, while the firewall counted the refused connection.
    assert status != "200"
    assert recorded(client, "realm") == []
    assert nft_counter(mirror, "egress_refused") > refused_before
    # The legitimate upstream and its realm still work through the allowlist.
    assert client.inspect("cache/app:1", creds=ADMIN, registry=MIRROR)["Digest"].startswith("sha256:")

    # The control: the same proxy on the replica, which has no egress allowlist, hands the
    # credentials to the rogue realm (CVE-2026-33540).
    serve_rogue_proxy(replica)
    try:
        replica.run("curl -s -m 90 -o /dev/null http://127.0.0.1:5099/v2/library/app/manifests/1", ok=False)
    finally:
        stop_rogue_proxy(replica)
    received = wait_for(lambda: recorded(client, "realm"), 10)
    expected = "Basic " + base64.b64encode(":".join(MIRROR_PULLER).encode()).decode()
    assert any(entry["headers"].get("Authorization") == expected for entry in received), received
