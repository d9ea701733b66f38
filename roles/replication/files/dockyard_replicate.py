"""Run this host's replication jobs (docs/replication.md); dockyard-replication.service runs it.

Each job file in JOBS_DIR holds {"ANSIBLE_MODULE_ARGS": {...}} for the collection's image_sync
module, which runs as ``python3 -m`` with the module's own argument parsing (Debian's
ansible-core provides ansible.module_utils). One line per job goes to the journal, one per
tag that failed; the node exporter's textfile gets per-job figures. Exit 0: every job
succeeded; 1: at least one job or tag failed.

    dockyard-replicate [JOB ...]      (default: every job)
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import time

JOBS_DIR = pathlib.Path(os.environ.get("DOCKYARD_REPLICATION_JOBS", "/etc/dockyard/replication/jobs"))
LIBRARY = os.environ.get("DOCKYARD_REPLICATION_LIBRARY", "/usr/local/lib/dockyard/replication")
METRICS = os.environ.get("DOCKYARD_REPLICATION_METRICS", "")
MODULE = "ansible_collections.dockyard.registry.plugins.modules.image_sync"
PREFIX = "dockyard_replication_"
FAMILIES = {
    "last_run_timestamp_seconds": "When the job's last run ended (unix time).",
    "last_run_success": "1 when the job's last run copied every tag it should, 0 when it failed.",
    "last_success_timestamp_seconds": "When the job last succeeded (unix time).",
    "tags_copied": "Tags the job's last run copied.",
    "tags_failed": "Tags the job's last run failed to copy (every tag of a job that failed as a whole: -1).",
    "duration_seconds": "How long the job's last run took.",
}


def run_job(path: pathlib.Path) -> dict:
    started = time.monotonic()
    env = dict(os.environ, PYTHONPATH=LIBRARY, PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "-m", MODULE, str(path)], capture_output=True, text=True,
                          env=env, check=False)
    duration = time.monotonic() - started
    try:
        result = json.loads(done.stdout)
    except ValueError:
        result = {"failed": True, "msg": "the module did not answer in JSON (exit %d): %s"
                  % (done.returncode, (done.stderr or done.stdout).strip()[-500:])}
    result["duration"] = duration
    return result


def previous_successes(path: str) -> dict[str, str]:
    found: dict[str, str] = {}
    try:
        text = pathlib.Path(path).read_text()
    except OSError:
        return found
    for match in re.finditer(r'^%slast_success_timestamp_seconds\{replication_job="([^"]+)"\} (\S+)$' % PREFIX, text, re.M):
        found[match.group(1)] = match.group(2)
    return found


def write_metrics(path: str, runs: dict[str, dict]) -> None:
    directory = pathlib.Path(path).parent
    if not directory.is_dir():
        return
    successes = previous_successes(path)
    now = int(time.time())
    series: dict[str, list[str]] = {name: [] for name in FAMILIES}
    for job, result in sorted(runs.items()):
        ok = not result.get("failed") and not result.get("failed_tags")
        label = '{replication_job="%s"}' % job
        if ok:
            successes[job] = str(now)
        series["last_run_timestamp_seconds"].append("%s %d" % (label, now))
        series["last_run_success"].append("%s %d" % (label, 1 if ok else 0))
        if job in successes:
            series["last_success_timestamp_seconds"].append("%s %s" % (label, successes[job]))
        series["tags_copied"].append("%s %d" % (label, len(result.get("copied") or [])))
        whole = result.get("failed") is True and not result.get("failed_tags")
        series["tags_failed"].append("%s %d" % (label, -1 if whole else len(result.get("failed_tags") or [])))
        series["duration_seconds"].append("%s %.1f" % (label, result["duration"]))
    lines = []
    for name, help_text in FAMILIES.items():
        lines += ["# HELP %s%s %s" % (PREFIX, name, help_text), "# TYPE %s%s gauge" % (PREFIX, name)]
        lines += ["%s%s%s" % (PREFIX, name, sample) for sample in series[name]]
    temporary = directory / (".%s.tmp" % pathlib.Path(path).name)
    temporary.write_text("\n".join(lines) + "\n")
    temporary.chmod(0o644)
    temporary.replace(path)


def report(job: str, result: dict) -> bool:
    if result.get("failed") and not result.get("failed_tags"):
        print("dockyard-replicate: %s: FAILED: %s" % (job, result.get("msg", "no message")), flush=True)
        return False
    failures = result.get("failed_tags") or []
    requests = result.get("requests") or {}
    print("dockyard-replicate: %s: copied %d, unchanged %s, deleted %d, failed %d; %s blobs (%s bytes) sent, "
          "%s mounted, %s already there; %s requests to the source, %s to the destination; %.1f s"
          % (job, len(result.get("copied") or []), result.get("unchanged", 0), len(result.get("deleted") or []),
             len(failures), result.get("blobs_sent", 0), result.get("bytes_sent", 0), result.get("blobs_mounted", 0),
             result.get("blobs_skipped", 0), requests.get("source", "?"), requests.get("destination", "?"),
             result["duration"]), flush=True)
    for failure in failures:
        print("dockyard-replicate: %s: %s:%s: %s" % (job, failure.get("repository"), failure.get("tag"),
                                                     failure.get("msg")), flush=True)
    return not failures


def main(argv: list[str]) -> int:
    jobs = sorted(JOBS_DIR.glob("*.json"))
    if argv:
        unknown = set(argv) - {path.stem for path in jobs}
        if unknown:
            print("dockyard-replicate: no such job: %s" % ", ".join(sorted(unknown)), file=sys.stderr)
            return 2
        jobs = [path for path in jobs if path.stem in argv]
    runs = {}
    for path in jobs:
        runs[path.stem] = run_job(path)
    ok = [report(job, result) for job, result in runs.items()]
    if METRICS and not argv:
        write_metrics(METRICS, runs)
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
