"""Checks of a provisioned registry host, run inside the instance with real clients."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess

REGISTRY = "registry.dockyard.test"
PUSHER = ("dockyard", "molecule-push-secret")
READER = ("reader", "molecule-read-secret")
STORE = "/var/lib/docker-registry/docker/registry/v2"


class Instance:
    """Runs commands in the test instance and speaks HTTP to its gateway with curl."""

    def __init__(self, host):
        self.host = host

    @property
    def name(self) -> str:
        """The instance's inventory name: scenarios run on several Debian releases at once."""
        return self.host.backend.get_hostname()

    def run(self, command: str, *, ok: bool = True):
        result = self.host.run(command)
        if ok:
            assert result.rc == 0, f"{command!r} failed ({result.rc}): {result.stderr or result.stdout}"
        return result

    def http(self, path: str, *, method: str = "GET", creds: tuple[str, str] | None = None,
             host: str = REGISTRY, extra: str = "") -> tuple[int, dict[str, str], int]:
        """Status, lower-cased headers and body size of one request through the gateway.

        The body is left in /tmp/body (blobs are binary)."""
        auth = f"-u {shlex.quote(':'.join(creds))}" if creds else ""
        head = "-I" if method == "HEAD" else f"-X {method}"
        result = self.run(f"curl -sS --http1.1 -H 'Expect:' {head} {auth} {extra} -D /tmp/headers "
                          f"-o /tmp/body {shlex.quote(f'https://{host}{path}')}; stat -c %s /tmp/body")
        block = self.host.file("/tmp/headers").content_string.replace("\r", "").strip().split("\n\n")[-1]
        lines = block.split("\n")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return int(lines[0].split()[1]), headers, int(result.stdout.strip() or 0)

    def body(self) -> str:
        return self.host.file("/tmp/body").content_string

    def push_image(self, reference: str, *, tag: str = "latest", layers: int = 2, big: str = "",
                   seed: str = "molecule", creds: tuple[str, str] = PUSHER) -> str:
        """Write an OCI image in the instance, push it, return its manifest digest."""
        layout = f"/tmp/oci-{seed}-{tag}"
        big_layer = f"--big-layer {big}" if big else ""
        digest = self.run(f"rm -rf {layout} && oci-image {layout} --tag {tag} --layers {layers} "
                          f"{big_layer} --seed {seed}").stdout.strip()
        self.run(f"skopeo copy -q --dest-creds {':'.join(creds)} oci:{layout}:{tag} docker://{REGISTRY}/{reference}")
        return digest

    def inspect(self, reference: str, *, creds: tuple[str, str] = READER) -> dict:
        return json.loads(self.run(f"skopeo inspect --creds {':'.join(creds)} docker://{REGISTRY}/{reference}").stdout)

    def main_pid(self, unit: str) -> int:
        return int(self.run(f"systemctl show -p MainPID --value {unit}").stdout.strip())


def playbook(*arguments: str, limit: str = "") -> subprocess.CompletedProcess:
    """Run a playbook from the controller against the scenario's inventory (or one instance of it)."""
    project = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(project, ".build", "collections"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    command = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
               *(["--limit", limit] if limit else []), *arguments]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)


def recap(output: str) -> dict[str, int]:
    """The PLAY RECAP counters, added up over every instance the playbook ran on."""
    lines = re.findall(r"^dockyard-\S+\s+:\s+(.*)$", output, re.MULTILINE)
    assert lines, output[-2000:]
    counts: dict[str, int] = {}
    for line in lines:
        for key, value in re.findall(r"(\w+)=(\d+)", line):
            counts[key] = counts.get(key, 0) + int(value)
    return counts


def assert_check_mode_changes_nothing(secret: str) -> None:
    result = playbook("--check", "--diff", "-e", "dockyard_hosts=registry", "dockyard.registry.site")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    counts = recap(result.stdout)
    assert counts["changed"] == 0 and counts["failed"] == 0, changed_tasks(result.stdout)
    assert secret not in result.stdout + result.stderr


def assert_nginx_config_is_clean(instance: Instance) -> None:
    """`nginx -t` says only that the configuration is fine: no [warn] or [notice] lines,
    on whichever nginx the release ships (1.22 and 1.26 want different HTTP/2 syntax)."""
    result = instance.run("nginx -t")
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("nginx: ") for line in lines), result.stderr


def changed_tasks(output: str) -> list[str]:
    """The tasks that reported a change, with the lines that say so."""
    found, task = [], ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("changed:") or line.startswith("fatal:"):
            found.append(f"{task} {line}")
    return found
