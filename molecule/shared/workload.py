"""registry-workload: what clients do while a registry is disrupted, and what became of it.

Installed in the test instances as /usr/local/bin/registry-workload by molecule/shared/prepare.yml.

  registry-workload run --registry NAME --creds USER:PASS --repository REPO --log FILE --stop FILE
      Until FILE (--stop) exists: write a new OCI image (oci-image, a fresh seed each time),
      push it with skopeo as REPO:wN, then pull the last pushed tag back into an OCI layout
      (skopeo verifies every blob) and compare its manifest digest. One JSON line per
      operation in --log: op, n, ok, digest, start, end, error.
  registry-workload verify --registry NAME --creds USER:PASS --repository REPO --log FILE
      Pull every push the log says succeeded; print one JSON report: pushes and pulls that
      succeeded and failed during the run, the failures' errors, the outage (first failure to
      the next success after the last failure, in seconds) and the pushes reported
      successful that no longer pull with their digest (lost).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

WORKDIR = "/tmp/registry-workload"
TIMEOUT = 120


def attempt(command: list[str]) -> tuple[bool, str]:
    """Run a client command; (succeeded, its last line of error output)."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {TIMEOUT} s"
    lines = (result.stderr or result.stdout).strip().splitlines()
    return result.returncode == 0, "" if result.returncode == 0 else (lines[-1] if lines else f"exit {result.returncode}")


def pulled_digest(arguments: argparse.Namespace, tag: str) -> tuple[str | None, str]:
    """Copy REPO:tag into a fresh OCI layout; its manifest digest, or None and the error."""
    layout = os.path.join(WORKDIR, "pulled")
    shutil.rmtree(layout, ignore_errors=True)
    ok, error = attempt(["skopeo", "copy", "-q", "--src-creds", arguments.creds,
                         f"docker://{arguments.registry}/{arguments.repository}:{tag}", f"oci:{layout}:{tag}"])
    if not ok:
        return None, error
    with open(os.path.join(layout, "index.json"), encoding="utf-8") as index:
        return json.load(index)["manifests"][0]["digest"], ""


def run(arguments: argparse.Namespace) -> None:
    os.makedirs(WORKDIR, exist_ok=True)
    last_pushed = None
    number = 0
    with open(arguments.log, "a", encoding="utf-8") as log:
        def record(**fields) -> None:
            log.write(json.dumps(fields) + "\n")
            log.flush()

        while not os.path.exists(arguments.stop):
            number += 1
            tag = f"w{number}"
            layout = os.path.join(WORKDIR, "image")
            shutil.rmtree(layout, ignore_errors=True)
            digest = subprocess.run(["oci-image", layout, "--tag", tag, "--layers", "2",
                                     "--seed", f"{arguments.repository}-{tag}-{time.time_ns()}"],
                                    capture_output=True, text=True, check=True).stdout.strip()
            start = time.time()
            ok, error = attempt(["skopeo", "copy", "-q", "--dest-creds", arguments.creds,
                                 f"oci:{layout}:{tag}", f"docker://{arguments.registry}/{arguments.repository}:{tag}"])
            record(op="push", n=number, tag=tag, ok=ok, digest=digest, start=start, end=time.time(), error=error)
            if ok:
                last_pushed = (tag, digest)
            if last_pushed:
                start = time.time()
                got, error = pulled_digest(arguments, last_pushed[0])
                ok = got == last_pushed[1]
                if got and not ok:
                    error = f"digest {got}, pushed {last_pushed[1]}"
                record(op="pull", n=number, tag=last_pushed[0], ok=ok, digest=got, start=start, end=time.time(),
                       error=error)


def verify(arguments: argparse.Namespace) -> None:
    with open(arguments.log, encoding="utf-8") as log:
        records = [json.loads(line) for line in log if line.strip()]
    failures = [entry for entry in records if not entry["ok"]]
    outage = 0.0
    if failures:
        last_failure = max(entry["end"] for entry in failures)
        recovered = [entry["end"] for entry in records if entry["ok"] and entry["start"] >= last_failure]
        outage = (min(recovered) if recovered else last_failure) - min(entry["start"] for entry in failures)
    lost = []
    for entry in records:
        if entry["op"] == "push" and entry["ok"]:
            got, error = pulled_digest(arguments, entry["tag"])
            if got != entry["digest"]:
                lost.append({"tag": entry["tag"], "digest": entry["digest"], "got": got, "error": error})
    report = {op: {"ok": sum(1 for entry in records if entry["op"] == op and entry["ok"]),
                   "failed": sum(1 for entry in records if entry["op"] == op and not entry["ok"])}
              for op in ("push", "pull")}
    report.update(errors=sorted({entry["error"] for entry in failures}), outage_seconds=round(outage, 1),
                  lost=lost)
    json.dump(report, sys.stdout)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(prog="registry-workload", description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["run", "verify"])
    parser.add_argument("--registry", required=True)
    parser.add_argument("--creds", required=True)
    parser.add_argument("--repository", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--stop", help="run until this file exists")
    arguments = parser.parse_args()
    if arguments.mode == "run":
        if not arguments.stop:
            parser.error("run needs --stop")
        run(arguments)
    else:
        verify(arguments)


if __name__ == "__main__":
    main()
