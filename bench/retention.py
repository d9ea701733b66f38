"""Benchmark the registry modules on a repository with 10,000 tags over a few hundred digests.

Starts a throwaway ``docker-registry`` on 127.0.0.1 (temporary storage, deletes
enabled), pushes through the API directly (one shared layer and one config blob per
digest, then many concurrent tag PUTs of small OCI manifests), and measures, with the
request counter of the collection's own transport:

1. ``repository_info`` (details: digest, media type, size, creation time, platforms);
2. ``repository`` retention that deletes half the tags, in check mode;
3. the same retention for real.

Minimum requests per tag: the Registry API v2 has no bulk call that maps tags to
digests, so any tool needs at least ONE request per tag (GET or HEAD of the manifest),
plus one per page of the tag list (1,000 tags a page), plus one per distinct image
config to learn creation times, plus one DELETE per distinct digest deleted.  For this
repository that floor is about 1 + (10 + 250) / 10,000 requests per tag to read it and
(10 + 250 + 125 + 10) / 10,000 more to delete half of it.

    /opt/dockyard-venv/bin/python bench/retention.py [--tags 10000] [--digests 250] [--workers 16]

Loopback only; stops the registry and removes its storage when done.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import pathlib
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / ".build" / "collections"
LINK = COLLECTIONS / "ansible_collections" / "dockyard" / "registry"
if not LINK.exists():
    LINK.parent.mkdir(parents=True, exist_ok=True)
    LINK.symlink_to(ROOT, target_is_directory=True)
sys.path.insert(0, str(COLLECTIONS))

# pylint: disable=wrong-import-position
from ansible_collections.dockyard.registry.plugins.module_utils._registry.client import Manifest  # noqa: E402
from ansible_collections.dockyard.registry.plugins.module_utils._registry.common import client_from_params  # noqa: E402
from ansible_collections.dockyard.registry.plugins.module_utils._registry.transport import Transport  # noqa: E402
from ansible_collections.dockyard.registry.plugins.modules import repository, repository_info  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPOSITORY = "bench/app"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_registry(workdir: pathlib.Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = workdir / "config.yml"
    config.write_text(json.dumps({
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")}, "delete": {"enabled": True}},
        "http": {"addr": "127.0.0.1:%d" % port, "secret": secrets.token_hex(16)},
    }))
    process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                               stderr=open(workdir / "registry.log", "wb"))  # pylint: disable=consider-using-with
    url = "http://127.0.0.1:%d" % port
    for _attempt in range(200):
        try:
            urllib.request.urlopen(url + "/v2/", timeout=1)  # noqa: S310 - loopback only
            return process, url
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("docker-registry did not start; see %s" % (workdir / "registry.log"))


def client(url: str) -> tuple:
    transport = Transport(validate_certs=False, timeout=60)
    return client_from_params({"registry_url": url, "timeout": 60}, transport), transport


def populate(url: str, tags: int, digests: int, workers: int) -> None:
    api, _transport = client(url)
    layer = secrets.token_bytes(4096)
    layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    api.upload_blob(REPOSITORY, layer_digest, layer)
    now = datetime.datetime.now(datetime.timezone.utc)
    manifests = []

    def make(number: int) -> Manifest:
        created = (now - datetime.timedelta(hours=digests - number)).strftime("%Y-%m-%dT%H:%M:%SZ")
        config = json.dumps({"architecture": "amd64", "os": "linux", "created": created,
                             "rootfs": {"type": "layers", "diff_ids": [layer_digest]}, "n": number}).encode()
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        api.upload_blob(REPOSITORY, config_digest, config)
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": config_digest, "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": layer_digest, "size": len(layer)}]}).encode()
        return Manifest(body, OCI_MANIFEST, "sha256:" + hashlib.sha256(body).hexdigest())

    with ThreadPoolExecutor(workers) as pool:
        manifests = list(pool.map(make, range(digests)))
        # tag t goes to digest t // (tags / digests): each image's tags are contiguous, so "keep the
        # newest half" never splits a digest between kept and deleted tags.
        per_digest = max(1, tags // digests)
        list(pool.map(lambda t: api.put_manifest(REPOSITORY, "build-%05d" % t,
                                                 manifests[min(t // per_digest, digests - 1)]), range(tags)))


def measure(label: str, url: str, tags: int, action) -> dict:
    api, transport = client(url)
    started = time.monotonic()
    result = action(api)
    elapsed = time.monotonic() - started
    row = {"run": label, "seconds": round(elapsed, 2), "requests": transport.requests,
           "requests_per_tag": round(transport.requests / tags, 4)}
    print("%-34s %8.2f s %8d requests %8.4f requests/tag" % (label, elapsed, transport.requests,
                                                             transport.requests / tags))
    return {"row": row, "result": result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=10000)
    parser.add_argument("--digests", type=int, default=250)
    parser.add_argument("--workers", type=int, default=16, help="threads used to populate the registry")
    args = parser.parse_args()
    if shutil.which("docker-registry") is None:
        raise SystemExit("docker-registry is not installed (apt-get install docker-registry)")

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
    process, url = start_registry(workdir)
    try:
        started = time.monotonic()
        populate(url, args.tags, args.digests, args.workers)
        print("populated %s with %d tags over %d digests in %.1f s"
              % (REPOSITORY, args.tags, args.digests, time.monotonic() - started))
        params = {"name": REPOSITORY, "state": "present", "tags": None, "keep_last": args.tags // 2,
                  "keep_patterns": None, "older_than": None, "order": "created"}
        info = measure("repository_info (details)", url, args.tags, lambda api: repository_info.describe(
            api, {"repositories": [REPOSITORY], "pattern": None, "details": True}))
        assert len(info["result"]["repositories"][0]["tags"]) == args.tags
        check = measure("repository keep_last=half --check", url, args.tags,
                        lambda api: repository.RepositoryReconciler(api, params, True, print).run())
        real = measure("repository keep_last=half", url, args.tags,
                       lambda api: repository.RepositoryReconciler(api, params, False, print).run())
        assert check["result"]["deleted"] == real["result"]["deleted"]
        assert len(real["result"]["deleted"]) == args.tags // 2, len(real["result"]["deleted"])
        again = measure("repository keep_last=half (again)", url, args.tags // 2,
                        lambda api: repository.RepositoryReconciler(api, params, False, print).run())
        assert again["result"]["changed"] is False
        print("deleted %d tags (%d digests); the API floor is 1 request per tag plus per-page, per-config "
              "and per-digest requests (see the docstring)"
              % (len(real["result"]["deleted"]), len(real["result"]["deleted_digests"])))
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
