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
        status, headers = self.response()
        return status, headers, int(result.stdout.strip() or 0)

    def response(self) -> tuple[int, dict[str, str]]:
        """Status and lower-cased headers of the last response curl wrote to /tmp/headers."""
        block = self.host.file("/tmp/headers").content_string.replace("\r", "").strip().split("\n\n")[-1]
        lines = block.split("\n")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return int(lines[0].split()[1]), headers

    def challenge(self, url: str, extra: str = "") -> tuple[int, str | None]:
        """curl's exit code and the WWW-Authenticate header of an anonymous GET of URL.

        The header is None when the gateway gave no response (refused handshake, closed
        connection). `extra`: curl options, after --http1.1 (so --http2 overrides it)."""
        result = self.run(f"rm -f /tmp/headers; curl -sS --http1.1 -o /dev/null -D /tmp/headers "
                          f"{extra} {shlex.quote(url)}", ok=False)
        if result.rc != 0:
            return result.rc, None
        return 0, self.response()[1].get("www-authenticate")

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


def playbook(*arguments: str) -> subprocess.CompletedProcess:
    """Run a playbook from the controller against the scenario's inventory."""
    project = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(project, ".build", "collections"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    command = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], *arguments]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)


def recap(output: str) -> dict[str, int]:
    """The PLAY RECAP counters of the instance."""
    line = re.search(r"^dockyard-\S+\s+:\s+(.*)$", output, re.MULTILINE)
    assert line, output[-2000:]
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line.group(1))}


def assert_check_mode_changes_nothing(secret: str) -> None:
    result = playbook("--check", "--diff", "-e", "dockyard_hosts=registry", "dockyard.registry.site")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    counts = recap(result.stdout)
    assert counts["changed"] == 0 and counts["failed"] == 0, changed_tasks(result.stdout)
    assert secret not in result.stdout + result.stderr


def changed_tasks(output: str) -> list[str]:
    """The tasks that reported a change, with the lines that say so."""
    found, task = [], ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("changed:") or line.startswith("fatal:"):
            found.append(f"{task} {line}")
    return found
