"""Checks of a provisioned registry host, run inside the instance with real clients."""
from __future__ import annotations

import base64
import json
import os
import re
import shlex
import subprocess
import time
import urllib.parse

import testinfra

REGISTRY = "registry.dockyard.test"
PUSHER = ("dockyard", "molecule-push-secret")
READER = ("reader", "molecule-read-secret")
STORE = "/var/lib/docker-registry/docker/registry/v2"


def instance_name(role: str) -> str:
    """A scenario's instance as its molecule.yml spells it: dockyard-ROLE and the suffix that
    names one checkout's instances apart (DOCKYARD_INSTANCE_SUFFIX)."""
    return f"dockyard-{role}{os.environ.get('DOCKYARD_INSTANCE_SUFFIX', '')}"


def scenario_instance(role: str) -> "Instance":
    """Another instance of the scenario than the one testinfra runs the checks for."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return Instance(testinfra.get_host(f"ansible://{instance_name(role)}?ansible_inventory={inventory}"))


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
                   seed: str = "molecule", creds: tuple[str, str] = PUSHER, registry: str = REGISTRY) -> str:
        """Write an OCI image in the instance, push it to `registry`, return its manifest digest."""
        layout = f"/tmp/oci-{seed}-{tag}"
        big_layer = f"--big-layer {big}" if big else ""
        digest = self.run(f"rm -rf {layout} && oci-image {layout} --tag {tag} --layers {layers} "
                          f"{big_layer} --seed {seed}").stdout.strip()
        self.run(f"skopeo copy -q --dest-creds {shlex.quote(':'.join(creds))} oci:{layout}:{tag} "
                 f"docker://{registry}/{reference}")
        return digest

    def inspect(self, reference: str, *, creds: tuple[str, str] = READER, registry: str = REGISTRY) -> dict:
        return json.loads(self.run(f"skopeo inspect --creds {shlex.quote(':'.join(creds))} "
                                   f"docker://{registry}/{reference}").stdout)

    def start_workload(self, name: str, repository: str, creds: tuple[str, str]) -> None:
        """Start registry-workload (molecule/shared/workload.py) in the background: pushes and
        pulls through REGISTRY until stop_workload(name)."""
        self.run(f"rm -f /tmp/{name}.log /tmp/{name}.stop && (nohup registry-workload run --registry {REGISTRY} "
                 f"--creds {shlex.quote(':'.join(creds))} --repository {repository} --log /tmp/{name}.log "
                 f"--stop /tmp/{name}.stop > /tmp/{name}.out 2>&1 & echo $! > /tmp/{name}.pid)")

    def workload_count(self, name: str) -> int:
        """Operations the workload has finished so far."""
        return int(self.run(f"cat /tmp/{name}.log 2>/dev/null | wc -l").stdout.strip())

    def stop_workload(self, name: str, repository: str, creds: tuple[str, str]) -> dict:
        """Stop the workload after its current operation; pull every push it reported
        successful and return registry-workload's report (lost, failed, outage_seconds …)."""
        self.run(f"touch /tmp/{name}.stop")
        self.wait_until(f"! kill -0 $(cat /tmp/{name}.pid) 2>/dev/null", attempts=900)
        return json.loads(self.run(f"registry-workload verify --registry {REGISTRY} "
                                   f"--creds {shlex.quote(':'.join(creds))} --repository {repository} "
                                   f"--log /tmp/{name}.log").stdout)

    def main_pid(self, unit: str) -> int:
        return int(self.run(f"systemctl show -p MainPID --value {unit}").stdout.strip())

    def proc_status(self, pid: int) -> dict[str, str]:
        """Fields of /proc/PID/status (what the kernel applied, not what a unit file asks for)."""
        text = self.run(f"cat /proc/{pid}/status").stdout
        return {name: value.strip() for name, _sep, value in
                (line.partition(":\t") for line in text.splitlines()) if value}

    def exposure(self, unit: str) -> tuple[float, str]:
        """The overall score of `systemd-analyze security UNIT`, and its line."""
        line = self.run(f"systemd-analyze security {unit} | tail -n 1").stdout
        return float(line.split(f"{unit}:")[1].split()[0]), line

    def scrape(self, url: str, *, socket: str = "") -> dict[tuple, float]:
        """The samples of a Prometheus text exposition at URL (through a unix socket when given),
        as parse_metrics returns them."""
        via = f"--unix-socket {shlex.quote(socket)}" if socket else ""
        return parse_metrics(self.run(f"curl -sS --fail {via} {shlex.quote(url)}").stdout)

    def wait_until(self, condition: str, *, attempts: int = 50) -> None:
        """Check a shell condition every 0.2 s until it holds; fail after `attempts` tries."""
        self.run(f"for i in $(seq {attempts}); do ( {condition} ) && exit 0; sleep 0.2; done; exit 1")


_SAMPLE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple, float]:
    """{(name, ((label, value), ...) sorted): value} of a Prometheus text exposition."""
    samples = {}
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if found and not line.startswith("#"):
            name, labels, number = found.groups()
            samples[(name, tuple(sorted(_LABEL.findall(labels or ""))))] = float(number)
    return samples


def metric(samples: dict[tuple, float], name: str, **labels: str) -> float:
    """One sample's value (KeyError when the series is not exposed)."""
    return samples[(name, tuple(sorted(labels.items())))]


def token(instance: Instance, creds: tuple[str, str] | None, *scopes: str, extra: str = "") -> tuple[int, dict]:
    """Ask the token service behind REGISTRY (or where `extra` connects) for a token."""
    query = urllib.parse.urlencode([("service", REGISTRY)] + [("scope", scope) for scope in scopes])
    auth = f"-u {shlex.quote(':'.join(creds))}" if creds else ""
    result = instance.run(f"curl -sS {auth} {extra} -o /tmp/token.json -w '%{{http_code}}' "
                          f"'https://{REGISTRY}/auth/token?{query}'")
    body = instance.host.file("/tmp/token.json").content_string
    return int(result.stdout), (json.loads(body) if body.startswith("{") else {})


def try_push(instance: Instance, creds: tuple[str, str] | None, reference: str, seed: str,
             registry: str = REGISTRY):
    """Push a new one-tag image (seed: its content) with skopeo, anonymously without creds;
    the command's result, for checks that expect a refusal as well as a success."""
    layout = f"/tmp/oci-{seed}"
    instance.run(f"rm -rf {layout} && oci-image {layout} --tag 1 --seed {seed}")
    auth = f"--dest-creds {shlex.quote(':'.join(creds))}" if creds else "--dest-no-creds"
    return instance.run(f"skopeo copy -q {auth} oci:{layout}:1 docker://{registry}/{reference}", ok=False)


def nft_counter(instance: Instance, name: str, table: str = "inet dockyard") -> int:
    """Packets a named nftables counter has counted (the firewall role's input_refused, egress_refused)."""
    answer = json.loads(instance.run(f"nft -j list counter {table} {name}").stdout)
    return next(item["counter"]["packets"] for item in answer["nftables"] if "counter" in item)


def saved_robot(primary: str, name: str) -> tuple[str, str]:
    """Credentials of a robot from the inventory, as the role saved them on the controller
    (token_service__robot_credentials_dir = the ephemeral directory's robots/; one file per
    account primary)."""
    secret_file = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "robots",
                               f"{primary}-{name.replace('$', '_')}.json")
    with open(secret_file, encoding="utf-8") as handle:
        return name, json.load(handle)["secret"]


def wait_for(check, seconds: float, pause: float = 1.0):
    """Call check() until it returns a true value or the time is up; return its last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(pause)


def recreate_instance(name: str) -> None:
    """Destroy an instance and start a new, empty one in its place: same image, name,
    network aliases, mounts and Docker settings (what molecule created), nothing else kept."""
    info = json.loads(subprocess.run(["docker", "inspect", name], capture_output=True, text=True,
                                     check=True).stdout)[0]
    config, host_config = info["Config"], info["HostConfig"]
    command = ["docker", "run", "-d", "--name", name, "--hostname", config["Hostname"],
               "--cgroupns", host_config["CgroupnsMode"] or "private"]
    command += [argument for capability in host_config["CapAdd"] or [] for argument in ("--cap-add", capability)]
    command += [argument for bind in host_config["Binds"] or [] for argument in ("-v", bind)]
    command += [argument for path, options in (host_config["Tmpfs"] or {}).items()
                for argument in ("--tmpfs", f"{path}:{options}" if options else path)]
    command += [argument for option in host_config["SecurityOpt"] or [] for argument in ("--security-opt", option)]
    command += [argument for limit in host_config["Ulimits"] or []
                for argument in ("--ulimit", f"{limit['Name']}={limit['Soft']}:{limit['Hard']}")]
    command += [argument for entry in host_config["ExtraHosts"] or [] for argument in ("--add-host", entry)]
    command += [argument for key, value in config["Labels"].items() for argument in ("--label", f"{key}={value}")]
    networks = info["NetworkSettings"]["Networks"]
    first, *others = networks
    aliases = [alias for alias in networks[first]["Aliases"] or []
               if alias not in (name, config["Hostname"]) and not re.fullmatch(r"[0-9a-f]{12}", alias)]
    command += ["--network", first] + [argument for alias in aliases for argument in ("--network-alias", alias)]
    command += [config["Image"], *config["Cmd"]]
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=True)
    subprocess.run(command, capture_output=True, text=True, check=True)
    for network in others:
        subprocess.run(["docker", "network", "connect", network, name], capture_output=True, check=True)


def claims(jwt: str) -> dict:
    """The claims of a token, unverified (the registry checks the signature)."""
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def playbook(*arguments: str, limit: str = "") -> subprocess.CompletedProcess:
    """Run a playbook from the controller against the scenario's inventory (or one instance of it)."""
    project = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    # Molecule's ansible.cfg sends failure messages to stderr; the checks read them in stdout.
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(project, ".build", "collections"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_DISPLAY_FAILED_STDERR="0")
    command = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
               *(["--limit", limit] if limit else []), *arguments]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)


def run_module(host: str, module: str, arguments: dict) -> dict:
    """Run one of the collection's modules on an instance of the scenario (ad hoc, as the
    controller would) and return its result, failed or not."""
    project = os.environ["MOLECULE_PROJECT_DIRECTORY"]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(project, ".build", "collections"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_DISPLAY_FAILED_STDERR="0")
    answer = subprocess.run(["ansible", host, "-i", os.environ["MOLECULE_INVENTORY_FILE"], "-m", module,
                             "-a", json.dumps(arguments)], env=env, capture_output=True, text=True, timeout=900,
                            check=False)
    # minimal: "HOST | SUCCESS => {json}" (or CHANGED, FAILED!)
    _head, arrow, result = answer.stdout.partition(" => ")
    assert arrow, answer.stdout[-2000:] + answer.stderr[-2000:]
    return json.loads(result)


def recaps(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP counters of every instance, by name."""
    lines = re.findall(r"^(dockyard-\S+)\s+:\s+(.*)$", output, re.MULTILINE)
    assert lines, output[-2000:]
    return {name: {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
            for name, counts in lines}


def recap(output: str) -> dict[str, int]:
    """The PLAY RECAP counters, added up over every instance the playbook ran on."""
    counts: dict[str, int] = {}
    for host_counts in recaps(output).values():
        for key, value in host_counts.items():
            counts[key] = counts.get(key, 0) + value
    return counts


def assert_check_mode_changes_nothing(*secrets: str) -> None:
    result = playbook("--check", "--diff", "-e", "dockyard_hosts=registry", "dockyard.registry.site")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    for counts in recaps(result.stdout).values():
        assert counts["changed"] == 0 and counts["failed"] == 0, changed_tasks(result.stdout)
    for secret in secrets:
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
