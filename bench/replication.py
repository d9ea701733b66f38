"""Benchmark image_sync against skopeo sync on the same content, from one run.

Starts a source ``docker-registry`` on 127.0.0.1 and pushes 20 images (tools/oci_image.py,
with skopeo) into 4 repositories: every image has the same two base layers (8 MiB and
512 KiB), and its own layers of mixed sizes (1 KiB to 20 MiB). Then, for each pair, in
alternating order, each tool copies the 4 repositories into a FRESH destination registry
(first copy, timed), then runs again on it (second run, nothing to copy):

- ``skopeo sync --src yaml --dest docker`` (one YAML naming the 4 repositories, every tag;
  ``--preserve-digests``; destination ``HOST/bench``, as skopeo keeps only the last
  component of each repository name);
- ``image_sync`` as the replication role's timer runs it on a host: ``python3 -m
  ansible_collections.dockyard.registry.plugins.modules.image_sync JOB.json`` (the
  module's own process, no controller), and once through ``ansible-playbook
  playbooks/replicate.yml`` (what an operator runs from the controller).

Printed: the first copy's time and throughput per tool, the throughput ratio image_sync /
skopeo per pair (min / median / max; goal >= 1.0), and the second run's requests per tag.
Requests are counted in both registries' logs (Distribution logs every response at level
info), the same way for both tools; image_sync's own count (its ``requests`` result) is
printed next to it.

    .venv/bin/python bench/replication.py [--pairs 3] [--workers 4]

Loopback only; stops the registries and removes their storage when done.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The tests' own set-up: the checkout linked as ansible_collections.dockyard.registry.
runpy.run_path(str(ROOT / "tests" / "conftest.py"))
sys.path.insert(0, str(ROOT / "tests" / "integration" / "registry"))

from conftest import COLLECTIONS, Registry  # noqa: E402  pylint: disable=wrong-import-position

REPOSITORIES = ["bench/app%d" % number for number in range(4)]
# Own layers of the 20 images, in turn (the base layers come first in every image).
OWN_SIZES = ["1K", "64K", "1M", "5M", "20M"]
BASE = "8M,512K"
MODULE = "ansible_collections.dockyard.registry.plugins.modules.image_sync"
VENV_BIN = pathlib.Path(sys.executable).parent


def responses(registry: Registry) -> int:
    """Requests the registry has answered so far."""
    return registry.log.read_text(errors="replace").count("response completed")


def build_and_push(work: pathlib.Path, source: Registry) -> tuple[int, int]:
    """The 20 images in source; returns (tags, bytes of distinct blobs)."""
    tags = 0
    for number in range(20):
        repository = REPOSITORIES[number % len(REPOSITORIES)]
        tag = "1.%d" % number
        layout = work / "oci" / repository.replace("/", "_")
        subprocess.run([sys.executable, str(ROOT / "tools" / "oci_image.py"), str(layout), "--tag", tag,
                        "--layers", "1", "--layer-size", OWN_SIZES[number % len(OWN_SIZES)],
                        "--base-layers", BASE, "--base-seed", "bench"],
                       check=True, capture_output=True)
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci:%s:%s" % (layout, tag),
                        "docker://%s/%s:%s" % (source.host, repository, tag)], check=True, capture_output=True)
        tags += 1
    blobs = {}
    for layout in (work / "oci").iterdir():
        for blob in (layout / "blobs" / "sha256").iterdir():
            blobs[blob.name] = blob.stat().st_size
    return tags, sum(blobs.values())


class Tool:
    name = ""

    def __init__(self, work: pathlib.Path, source: Registry, workers: int) -> None:
        self.work, self.source, self.workers = work, source, workers

    def run(self, destination: Registry) -> dict:
        raise NotImplementedError


class Skopeo(Tool):
    name = "skopeo sync"

    def run(self, destination: Registry) -> dict:
        spec = self.work / "skopeo-sync.yml"
        spec.write_text(json.dumps({self.source.host: {
            "tls-verify": False, "images-by-tag-regex": {repository: ".*" for repository in REPOSITORIES}}}))
        argv = ["skopeo", "sync", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false",
                "--preserve-digests", str(spec), destination.host + "/bench"]
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        seconds = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit("skopeo sync failed: %s" % done.stderr[-2000:])
        return {"seconds": seconds, "reported_requests": None}


class ImageSync(Tool):
    """The module in its own process, as dockyard-replicate runs it on a host."""
    name = "image_sync"

    def args(self, destination: Registry) -> dict:
        return {"source": {"registry_url": self.source.url}, "destination": {"registry_url": destination.url},
                "repositories": REPOSITORIES, "workers": self.workers,
                "checkpoint": str(destination.workdir / "checkpoint.json")}

    def run(self, destination: Registry) -> dict:
        job = destination.workdir / "job.json"
        job.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": self.args(destination)}))
        env = dict(os.environ, PYTHONPATH=str(COLLECTIONS))
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", MODULE, str(job)], capture_output=True, text=True,
                              env=env, check=False)
        seconds = time.monotonic() - started
        try:
            result = json.loads(done.stdout)
        except ValueError:
            raise SystemExit("image_sync did not answer: %s %s" % (done.stdout[-1000:], done.stderr[-1000:]))
        if result.get("failed"):
            raise SystemExit("image_sync failed: %s" % result.get("msg"))
        requests = result.get("requests", {})
        return {"seconds": seconds, "copied": len(result.get("copied", [])),
                "reported_requests": requests.get("source", 0) + requests.get("destination", 0)}


class Playbook(ImageSync):
    """playbooks/replicate.yml with the same job, from the controller."""
    name = "replicate.yml"

    def run(self, destination: Registry) -> dict:
        variables = destination.workdir / "vars.json"
        variables.write_text(json.dumps({"dockyard_replication_jobs": [dict(self.args(destination), name="bench")]}))
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_LOCALHOST_WARNING="0",
                   ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_PYTHON_INTERPRETER=sys.executable)
        started = time.monotonic()
        done = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                               str(ROOT / "playbooks" / "replicate.yml"), "-e", "@%s" % variables],
                              capture_output=True, text=True, env=env, check=False)
        seconds = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit("replicate.yml failed: %s" % done.stdout[-2000:])
        return {"seconds": seconds, "reported_requests": None}


def copy_twice(tool: Tool, work: pathlib.Path, label: str, tags: int) -> dict:
    """First copy into a fresh destination, then a second run on it; requests counted in the logs."""
    destination = Registry(work / label)
    destination.start()
    try:
        before = responses(tool.source) + responses(destination)
        first = tool.run(destination)
        middle = responses(tool.source) + responses(destination)
        second = tool.run(destination)
        after = responses(tool.source) + responses(destination)
        for repository in REPOSITORIES:
            if destination.tags(repository) != tool.source.tags(repository):
                raise SystemExit("%s did not copy every tag of %s" % (tool.name, repository))
    finally:
        destination.stop()
        shutil.rmtree(destination.workdir, ignore_errors=True)
    return {"first_seconds": first["seconds"], "first_requests": middle - before,
            "second_seconds": second["seconds"], "second_requests": after - middle,
            "second_reported": second["reported_requests"], "tags": tags}


def spread(values: list[float]) -> str:
    return "%.2f / %.2f / %.2f" % (min(values), statistics.median(values), max(values))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4, help="image_sync's workers")
    args = parser.parse_args()
    for binary in ("docker-registry", "skopeo"):
        if shutil.which(binary) is None:
            raise SystemExit("%s is not installed (apt-get install %s)" % (binary, binary))

    work = pathlib.Path(tempfile.mkdtemp(prefix="dockyard-bench-replication-"))
    source = Registry(work / "source")
    source.start()
    try:
        started = time.monotonic()
        tags, size = build_and_push(work, source)
        print("source: %d tags in %d repositories, %.1f MiB of distinct blobs (pushed in %.1f s)"
              % (tags, len(REPOSITORIES), size / 2 ** 20, time.monotonic() - started))
        skopeo, image_sync = Skopeo(work, source, args.workers), ImageSync(work, source, args.workers)
        rows: dict[str, list[dict]] = {skopeo.name: [], image_sync.name: []}
        for pair in range(args.pairs):
            order = [skopeo, image_sync] if pair % 2 == 0 else [image_sync, skopeo]
            for tool in order:
                row = copy_twice(tool, work, "%s-%d" % (tool.name.replace(" ", "-"), pair), tags)
                rows[tool.name].append(row)
                print("pair %d %-12s first copy %6.2f s (%6.1f MiB/s, %4d requests)   second run %5.2f s, "
                      "%4d requests = %.2f per tag%s"
                      % (pair, tool.name, row["first_seconds"], size / 2 ** 20 / row["first_seconds"],
                         row["first_requests"], row["second_seconds"], row["second_requests"],
                         row["second_requests"] / tags,
                         "" if row["second_reported"] is None else " (image_sync counted %d)" % row["second_reported"]))
        playbook = copy_twice(Playbook(work, source, args.workers), work, "playbook", tags)
        ratios = [a["first_seconds"] / b["first_seconds"] for a, b in zip(rows[skopeo.name], rows[image_sync.name])]
        print()
        print("first copy, %d tags, %.1f MiB (min / median / max over %d pairs):" % (tags, size / 2 ** 20, args.pairs))
        for name, runs in rows.items():
            print("  %-14s %s s" % (name, spread([row["first_seconds"] for row in runs])))
        print("  throughput ratio image_sync / skopeo sync: %s (goal >= 1.0)" % spread(ratios))
        print("second run, requests per tag (both registries' logs; goal for image_sync <= 2):")
        for name, runs in rows.items():
            print("  %-14s %s" % (name, spread([row["second_requests"] / tags for row in runs])))
        print("replicate.yml (ansible-playbook, same job, once): first copy %.2f s, second run %.2f s, %.2f requests per tag"
              % (playbook["first_seconds"], playbook["second_seconds"], playbook["second_requests"] / tags))
    finally:
        source.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
