"""dockyard-registry-gc: collect the garbage of a Docker Distribution 2.8 registry, safely.

lock -> dry run -> (refuse --delete-untagged while indexes exist) -> restart read-only
-> garbage-collect -> always: restart read-write, purge the gateway blob cache, probe
-> one report line.  On a cluster (several nodes on one store) playbooks/gc.yml runs the
same sequence as steps across the nodes: --step readonly on every node, --step collect on
one, --step restore on every node.  Installed by the dockyard.registry registry role; see
docs/garbage-collection.md.  Exit codes: 0 done (or nothing to do), 1 failed or refused,
75 another run holds the lock.
"""
from __future__ import annotations

import argparse
import fcntl
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

PROG = "dockyard-registry-gc"
DEFAULT_CONFIG = "/etc/dockyard/registry-gc.json"
EXIT_OK, EXIT_FAILED, EXIT_LOCKED = 0, 1, 75
READONLY_VAR = "REGISTRY_STORAGE_MAINTENANCE_READONLY"
# Single quotes: systemd strips bare double quotes from Environment= values.
DROPIN_TEXT = f"[Service]\nEnvironment='{READONLY_VAR}={{\"enabled\":true}}'\n"
INDEX_MEDIA_TYPES = frozenset({
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
})
UNREADABLE = object()
SUMMARY_RE = re.compile(
    r"^(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion\s*$", re.M)
EMPTY_STORE_RE = re.compile(r"Path not found: /docker/registry/v2/repositories")
V2 = ("docker", "registry", "v2")
CONFIG_KEYS = {
    "registry_binary": (str,), "registry_config": (str,), "registry_user": (str, type(None)),
    "service": (str,), "readonly_dropin": (str,), "socket": (str,),
    "storage_root": (str, type(None)), "cache_dirs": (list,), "delete_untagged": (bool,),
    "lock_file": (str,), "probe_timeout": (int, float), "environment_file": (str, type(None)),
    "cluster_nodes": (list,), "metrics_file": (str, type(None)),
}
STEPS = ("readonly", "collect", "restore")
ABSOLUTE_KEYS = ("registry_binary", "registry_config", "readonly_dropin", "socket",
                 "storage_root", "lock_file", "environment_file", "metrics_file")


class GCError(Exception):
    def __init__(self, step: str, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.step = step
        self.exit_code = exit_code


class Interrupted(BaseException):
    pass


# ---------------------------------------------------------------- configuration

def load_config(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        raise GCError("config", f"cannot read {path}: {exc}") from None
    validate_config(config, path)
    return config


def validate_config(config: object, path: str = "config") -> None:
    if not isinstance(config, dict):
        raise GCError("config", f"{path} must hold a JSON object")
    missing = sorted(set(CONFIG_KEYS) - set(config))
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if missing or unknown:
        raise GCError("config", f"{path}: missing keys {missing}, unknown keys {unknown}")
    for key, types in CONFIG_KEYS.items():
        if not isinstance(config[key], types) or (bool in types) != isinstance(config[key], bool):
            raise GCError("config", f"{path}: {key} has the wrong type ({config[key]!r})")
    for key in ABSOLUTE_KEYS:
        if config[key] is not None and not os.path.isabs(config[key]):
            raise GCError("config", f"{path}: {key} must be an absolute path, not {config[key]!r}")
    for cache in config["cache_dirs"]:
        if not isinstance(cache, str) or not os.path.isabs(cache):
            raise GCError("config", f"{path}: cache_dirs entries must be absolute paths ({cache!r})")
        if len(os.path.normpath(cache).strip("/").split("/")) < 2:
            raise GCError("config", f"{path}: refusing to purge a top-level directory ({cache!r})")
    if not config["cluster_nodes"] or not all(isinstance(node, str) and node for node in config["cluster_nodes"]):
        raise GCError("config", f"{path}: cluster_nodes must list the names of the nodes sharing the store")
    if config["probe_timeout"] <= 0:
        raise GCError("config", f"{path}: probe_timeout must be positive")
    if not os.access(config["registry_binary"], os.X_OK):
        raise GCError("config", f"registry binary {config['registry_binary']} is missing or not executable")
    if not os.path.isfile(config["registry_config"]):
        raise GCError("config", f"registry config {config['registry_config']} is missing")
    if config["registry_user"] is not None and shutil.which("runuser") is None:
        raise GCError("config", "runuser is missing (needed to run as registry_user)")


# ---------------------------------------------------------------- pure helpers

def parse_gc_output(text: str) -> dict:
    """Counts from the output of `docker-registry garbage-collect` (dry run or not)."""
    match = None
    for match in SUMMARY_RE.finditer(text):
        pass
    if match is None:
        raise ValueError("no 'N blobs marked, …' summary line in the garbage-collect output")
    return {"marked": int(match[1]), "blobs": int(match[2]), "manifests": int(match[3])}


def blob_path(storage_root: str, digest: str) -> str:
    algorithm, _separator, hexdigest = digest.partition(":")
    if algorithm != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexdigest):
        raise ValueError(f"unexpected digest {digest!r}")
    return os.path.join(storage_root, *V2, "blobs", "sha256", hexdigest[:2], hexdigest, "data")


def is_index(document: object) -> bool:
    """Whether a stored manifest may have children that --delete-untagged would delete.

    mediaType is optional in an OCI index, and 2.8 stores only the bytes (the Content-Type of
    the PUT is not kept): it reads a document without mediaType as an index when it has a
    "manifests" field.  Any document with "manifests" counts here, whatever its mediaType
    says; a guard errs on the side of refusing.
    """
    if not isinstance(document, dict):
        return False
    return document.get("mediaType") in INDEX_MEDIA_TYPES or "manifests" in document


def find_indexes(storage_root: str) -> list[str]:
    """`repo@digest` of every image index / manifest list stored under storage_root."""
    repositories = os.path.join(storage_root, *V2, "repositories")
    found = []
    for dirpath, dirnames, _filenames in os.walk(repositories, onerror=_raise):
        if "_manifests" in dirnames:
            repo = os.path.relpath(dirpath, repositories)
            revisions = os.path.join(dirpath, "_manifests", "revisions", "sha256")
            for entry in sorted(os.listdir(revisions)) if os.path.isdir(revisions) else ():
                digest = _read_link(os.path.join(revisions, entry, "link"))
                document = _read_manifest(storage_root, digest) if digest else None
                if document is UNREADABLE:
                    found.append(f"{repo}@{digest} (unreadable, so not ruled out)")
                elif is_index(document):
                    found.append(f"{repo}@{digest}")
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("_"))
    return found


def _raise(error: OSError) -> None:
    raise error


def _read_link(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return None


def _read_manifest(storage_root: str, digest: str) -> object:
    """The stored manifest's document; None when its blob is gone, UNREADABLE when it is not JSON."""
    try:
        with open(blob_path(storage_root, digest), "rb") as handle:
            return json.loads(handle.read())
    except FileNotFoundError:
        return None
    except ValueError:
        return UNREADABLE


def tree_size(path: str) -> int:
    total = 0
    for dirpath, _dirnames, filenames in os.walk(path, onerror=_raise):
        for name in filenames:
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def purge_dir_contents(path: str) -> int:
    if not os.path.isdir(path):
        return 0
    count = 0
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
        count += 1
    return count


def format_report(fields: dict) -> str:
    def text(value: object) -> str:
        if value is None:
            return "unknown"
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, float):
            return f"{value:.1f}"
        value = str(value)
        return json.dumps(value) if re.search(r'[\s"]', value) else value
    return f"{PROG}: " + " ".join(f"{key}={text(value)}" for key, value in fields.items())


# ---------------------------------------------------------------- side effects

class SystemdService:
    def __init__(self, unit: str) -> None:
        self.unit = unit

    def daemon_reload(self) -> None:
        run(["systemctl", "daemon-reload"])

    def restart(self) -> None:
        run(["systemctl", "restart", self.unit])

    def is_read_only(self) -> bool:
        """Whether the running registry process was started with the read-only setting."""
        pid = run(["systemctl", "show", "-p", "MainPID", "--value", self.unit]).strip()
        if not pid.isdigit() or pid == "0":
            raise RuntimeError(f"{self.unit} is not running")
        with open(f"/proc/{pid}/environ", "rb") as handle:
            variables = handle.read().split(b"\0")
        return f"{READONLY_VAR}={{\"enabled\":true}}".encode() in variables


def run(argv: list[str]) -> str:
    command = " ".join(argv)
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise RuntimeError(f"cannot run {command}: {exc}") from None
    if result.returncode != 0:
        raise RuntimeError(f"{command} exited {result.returncode}: {last_line(result.stderr)}")
    return result.stdout


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def read_environment(path: str | None) -> dict[str, str]:
    """KEY=VALUE lines of the registry's systemd EnvironmentFile (object-store credentials)."""
    if path is None:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise GCError("config", f"cannot read the registry's environment file {path}: {exc.strerror}") from None
    found = (line.partition("=") for line in lines if line.strip() and not line.lstrip().startswith("#"))
    return {name.strip(): value for name, sep, value in found if sep}


def garbage_collect(config: dict, dry_run: bool, delete_untagged: bool) -> dict | None:
    """Run garbage-collect; its counts, or None when the store has no repositories yet."""
    environment = dict(os.environ, **read_environment(config["environment_file"]))
    argv = [config["registry_binary"], "garbage-collect"]
    argv += ["--dry-run"] * dry_run + ["--delete-untagged"] * delete_untagged
    argv.append(config["registry_config"])
    if config["registry_user"] is not None:
        argv = ["runuser", "-u", config["registry_user"], "--"] + argv
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as output:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                env=environment)
        try:
            returncode = proc.wait()
        except BaseException:
            proc.terminate()
            proc.wait()
            raise
        output.seek(0)
        text = output.read()
    if returncode != 0:
        if EMPTY_STORE_RE.search(text):
            return None
        raise RuntimeError(f"garbage-collect exited {returncode}: {last_line(text)}")
    return parse_gc_output(text)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def probe(socket_path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        connection = UnixHTTPConnection(socket_path, timeout=min(5.0, timeout))
        try:
            connection.request("GET", "/v2/")
            response = connection.getresponse()
            response.read()
            # 401 with the API header: the registry serves, behind its own auth.
            if response.status == 200 or (
                    response.status == 401 and response.getheader("Docker-Distribution-API-Version")):
                return
            last = f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as exc:
            last = str(exc) or type(exc).__name__
        finally:
            connection.close()
        if time.monotonic() >= deadline:
            raise RuntimeError(f"GET /v2/ on {socket_path} did not answer 200 within {timeout:g}s ({last})")
        time.sleep(0.5)


def write_atomically(path: str, text: str) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".dockyard-gc-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


METRICS = (
    ("last_run_timestamp_seconds", "When the last garbage collection ended (unix time)."),
    ("last_run_success", "1 when the last garbage collection succeeded, 0 when it failed."),
    ("last_success_timestamp_seconds", "When a garbage collection last succeeded (unix time)."),
    ("blobs_deleted", "Blobs the last successful collection deleted."),
    ("manifests_deleted", "Manifests the last successful collection deleted."),
    ("bytes_freed", "Bytes of blob data the last successful collection freed."),
    ("duration_seconds", "How long the last successful collection took, read-only window included."),
)
METRIC_LINE_RE = re.compile(r"^dockyard_gc_([a-z_]+) (\S+)$")


def read_metrics(path: str) -> dict[str, float]:
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return {}
    values = {}
    for line in lines:
        match = METRIC_LINE_RE.match(line)
        if match:
            try:
                values[match.group(1)] = float(match.group(2))
            except ValueError:
                continue
    return values


def write_metrics(path: str, report: dict, now: float) -> None:
    """The node exporter's textfile collector reads these; a failed run keeps the last success."""
    values = read_metrics(path)
    values.update(last_run_timestamp_seconds=now, last_run_success=1 if report["result"] == "ok" else 0)
    if report["result"] == "ok":
        values.update(last_success_timestamp_seconds=now, blobs_deleted=report.get("blobs_deleted", 0),
                      manifests_deleted=report.get("manifests_deleted", 0),
                      bytes_freed=report.get("bytes_freed") or 0, duration_seconds=report["duration"])
    lines = []
    for name, text in METRICS:
        if name in values:
            lines += [f"# HELP dockyard_gc_{name} {text}", f"# TYPE dockyard_gc_{name} gauge",
                      f"dockyard_gc_{name} {values[name]:.17g}"]
    write_atomically(path, "\n".join(lines) + "\n")


def take_lock(path: str):
    try:
        handle = open(path, "a", encoding="utf-8")
    except OSError as exc:
        raise GCError("lock", f"cannot open lock file {path}: {exc}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise GCError("lock", f"another garbage collection holds {path}; not running twice",
                      EXIT_LOCKED) from None
    return handle


def on_signal(signum: int, _frame: object) -> None:
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}")


# ---------------------------------------------------------------- the sequence

def step(name: str, action, *args):
    try:
        return action(*args)
    except (OSError, RuntimeError, ValueError) as exc:
        raise GCError(name, str(exc)) from None


def check_delete_untagged(config: dict) -> None:
    if config["storage_root"] is None:
        raise GCError("guard", "refusing --delete-untagged: storage is not the filesystem, so image "
                               "indexes cannot be ruled out (2.8 would delete their children)")
    indexes = step("guard", find_indexes, config["storage_root"])
    if indexes:
        shown = ", ".join(indexes[:3]) + (f" and {len(indexes) - 3} more" if len(indexes) > 3 else "")
        raise GCError("guard", f"refusing --delete-untagged: the store holds {len(indexes)} image "
                               f"index(es)/manifest list(s) whose children 2.8 would delete: {shown}")


def blobs_size(config: dict) -> int | None:
    if config["storage_root"] is None:
        return None
    return step("measure", tree_size, os.path.join(config["storage_root"], *V2, "blobs"))


def restore(config: dict, service, errors: list[str]) -> None:
    """Bring the registry back read-write, whatever happened before; collect errors."""
    def attempt(name: str, action, *args) -> None:
        try:
            action(*args)
        except (OSError, RuntimeError, ValueError) as exc:
            errors.append(f"{name}: {exc}")

    def remove_dropin() -> None:
        if os.path.lexists(config["readonly_dropin"]):
            os.unlink(config["readonly_dropin"])

    attempt("remove-dropin", remove_dropin)
    attempt("daemon-reload", service.daemon_reload)
    attempt("restart-read-write", service.restart)
    for cache in config["cache_dirs"]:
        attempt("purge-cache", purge_dir_contents, cache)
    attempt("probe-read-write", probe, config["socket"], config["probe_timeout"])


def go_read_only(config: dict, service) -> None:
    """Write the drop-in, restart the registry read-only and wait until it answers."""
    current = "readonly-dropin"
    try:
        step(current, write_atomically, config["readonly_dropin"], DROPIN_TEXT)
        current = "daemon-reload"
        step(current, service.daemon_reload)
        current = "restart-read-only"
        step(current, service.restart)
        current = "probe-read-only"
        step(current, probe, config["socket"], config["probe_timeout"])
    except Interrupted as exc:
        raise GCError(current, str(exc)) from None


def restore_or_raise(config: dict, service, failure: GCError | None) -> None:
    """Restore read-write, ignoring SIGTERM/SIGINT meanwhile; raise loudly if that failed."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM, signal.SIGINT)}
    errors: list[str] = []
    try:
        restore(config, service, errors)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if errors:
        cause = f" (after {failure.step} failed: {failure})" if failure else ""
        raise GCError(errors[0].split(":")[0], "REGISTRY NOT RESTORED READ-WRITE: "
                      + "; ".join(errors) + cause + f"; fix: rm -f {config['readonly_dropin']} && "
                      f"systemctl daemon-reload && systemctl restart {config['service']}")


def sweep(config: dict, delete_untagged: bool) -> dict:
    """garbage-collect itself, measured; the registry must be read-only everywhere."""
    before = blobs_size(config)
    try:
        result = step("garbage-collect", garbage_collect, config, False, delete_untagged)
    except Interrupted as exc:
        raise GCError("garbage-collect", str(exc)) from None
    after = blobs_size(config)
    return {"blobs": result["blobs"] if result else 0,
            "manifests": result["manifests"] if result else 0,
            "bytes_freed": None if before is None else before - after}


def collect(config: dict, delete_untagged: bool, service) -> dict:
    """The read-only window on a single node: restart read-only, collect, then always restore."""
    failure: GCError | None = None
    done: dict = {}
    try:
        go_read_only(config, service)
        done = sweep(config, delete_untagged)
    except GCError as exc:
        failure = exc
    finally:
        restore_or_raise(config, service, failure)
    if failure:
        raise failure
    return done


def plan(config: dict, delete_untagged: bool) -> tuple[int, int]:
    """The guard, then the dry run: how many blobs and manifests a collection would delete."""
    if delete_untagged:
        check_delete_untagged(config)
    planned = step("dry-run", garbage_collect, config, True, delete_untagged)
    return (planned["blobs"], planned["manifests"]) if planned else (0, 0)


def collected(done: dict, delete_untagged: bool, started: float) -> dict:
    return {"result": "ok", "changed": True, "blobs_deleted": done["blobs"],
            "manifests_deleted": done["manifests"], "bytes_freed": done["bytes_freed"],
            "duration": time.monotonic() - started, "delete_untagged": delete_untagged}


def main_sequence(config: dict, dry_run: bool, delete_untagged: bool, started: float) -> dict:
    service = SystemdService(config["service"])
    would_blobs, would_manifests = plan(config, delete_untagged)
    if dry_run:
        return {"result": "ok", "changed": False, "would_delete_blobs": would_blobs,
                "would_delete_manifests": would_manifests, "duration": time.monotonic() - started,
                "delete_untagged": delete_untagged, "dry_run": True}
    if would_blobs == 0 and would_manifests == 0:
        return {"result": "ok", "changed": False, "blobs_deleted": 0, "manifests_deleted": 0,
                "bytes_freed": 0, "duration": time.monotonic() - started,
                "delete_untagged": delete_untagged, "note": "nothing to do"}
    return collected(collect(config, delete_untagged, service), delete_untagged, started)


def refuse_whole_run_on_cluster(config: dict) -> None:
    nodes = config["cluster_nodes"]
    if len(nodes) > 1:
        raise GCError("cluster", f"this node is one of {len(nodes)} registry nodes sharing one store "
                                 f"({', '.join(nodes)}): collecting here alone would miss what the others "
                                 "accept meanwhile. Run playbooks/gc.yml from the controller (every node "
                                 "read-only, one collection, every node restored); see docs/cluster.md")


def run_step(name: str, config: dict, dry_run: bool, delete_untagged: bool, started: float) -> dict:
    """One step of the cluster flow of playbooks/gc.yml (on a single host, the same flow)."""
    service = SystemdService(config["service"])
    if name == "readonly":
        try:
            go_read_only(config, service)
        except GCError as failure:
            restore_or_raise(config, service, failure)
            raise
        return {"result": "ok", "changed": True, "phase": name, "read_only": True,
                "duration": time.monotonic() - started}
    if name == "restore":
        restore_or_raise(config, service, None)
        return {"result": "ok", "changed": True, "phase": name, "read_only": False,
                "duration": time.monotonic() - started}
    # collect --dry-run is the plan (guard and dry run). collect is the guard again (an index
    # may have arrived since) and the sweep, refused unless this node's registry really runs
    # read-only; no second dry run, so that the read-only window stays short.
    if dry_run:
        would_blobs, would_manifests = plan(config, delete_untagged)
        return {"result": "ok", "changed": False, "phase": name, "would_delete_blobs": would_blobs,
                "would_delete_manifests": would_manifests, "duration": time.monotonic() - started,
                "delete_untagged": delete_untagged, "dry_run": True}
    if delete_untagged:
        check_delete_untagged(config)
    if not step("check-read-only", service.is_read_only):
        raise GCError("check-read-only", "refusing to collect: the registry on this node is not running "
                                         "read-only; --step readonly must succeed on every node of the "
                                         "cluster first (playbooks/gc.yml does that)")
    return dict(collected(sweep(config, delete_untagged), delete_untagged, started), phase=name)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"JSON config (default {DEFAULT_CONFIG})")
    parser.add_argument("--dry-run", action="store_true", help="only report what would be deleted")
    parser.add_argument("--delete-untagged", action="store_true",
                        help="also delete untagged manifests (refused while image indexes exist)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--step", choices=STEPS,
                        help="one step of the cluster flow run by playbooks/gc.yml: readonly (restart "
                             "read-only), collect (garbage-collect; this node must be read-only), restore "
                             "(restart read-write, purge the blob cache, probe)")
    return parser.parse_args(argv)


def emit(report: dict, as_json: bool, stream) -> None:
    if as_json:
        report = dict(report, duration=round(report["duration"], 1))
        print(json.dumps(report, sort_keys=False), file=stream, flush=True)
    else:
        fields = {key: value for key, value in report.items() if key not in ("changed", "result")}
        print(format_report({"result": report["result"], **fields}), file=stream, flush=True)


def phase(args: argparse.Namespace) -> dict:
    return {"phase": args.step} if args.step else {}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    lock = None
    config = None
    try:
        config = load_config(args.config)
        if args.step is None and not args.dry_run:
            refuse_whole_run_on_cluster(config)
        lock = take_lock(config["lock_file"])
        delete_untagged = args.delete_untagged or config["delete_untagged"]
        if args.step is None:
            report = main_sequence(config, args.dry_run, delete_untagged, started)
        else:
            report = run_step(args.step, config, args.dry_run, delete_untagged, started)
    except GCError as exc:
        report = {"result": "failed", "changed": exc.step not in NO_CHANGE_STEPS, **phase(args), "step": exc.step,
                  "error": str(exc), "duration": time.monotonic() - started}
        record(config, args, report)
        emit(report, args.json, sys.stdout)
        return exc.exit_code
    except Interrupted as exc:
        report = {"result": "failed", "changed": False, **phase(args), "step": "interrupted", "error": str(exc),
                  "duration": time.monotonic() - started}
        record(config, args, dict(report, step="collect"))
        emit(report, args.json, sys.stdout)
        return EXIT_FAILED
    finally:
        if lock is not None:
            lock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    record(config, args, report)
    emit(report, args.json, sys.stdout)
    return EXIT_OK


def record(config: dict | None, args: argparse.Namespace, report: dict) -> None:
    """Metrics of a collection that ran (not of a dry run, a refusal or another run's lock)."""
    collecting = args.step in (None, "collect") and not args.dry_run
    if config is None or not config["metrics_file"] or not collecting or report.get("step") in ("lock", "cluster"):
        return
    try:
        write_metrics(config["metrics_file"], report, time.time())
    except OSError as exc:
        print(f"{PROG}: cannot write the metrics file {config['metrics_file']}: {exc}", file=sys.stderr)


NO_CHANGE_STEPS = frozenset({"config", "cluster", "lock", "guard", "dry-run", "check-read-only", "interrupted"})

if __name__ == "__main__":
    sys.exit(main())
