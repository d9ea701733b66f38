"""Render the gateway role's own nginx.conf.j2 for a gateway on loopback (tests, benchmarks).

The file is made by Ansible itself: ``ansible-playbook`` runs ``ansible.builtin.template`` on
``roles/gateway/templates/nginx.conf.j2`` with the role's ``defaults/main.yml`` and
``vars/main.yml`` and checks it with ``nginx -t`` as the role does (``validate:``). Only role
variables are changed: :func:`loopback_vars` points ports, upstreams (TCP on loopback),
certificate, htpasswd, cache, logs and pid file at a working directory.

nginx runs as the role runs it (``user www-data``, workers without root): the working
directory must be readable by www-data (:func:`workdir` makes one). Start it with
:func:`nginx_argv`.

    .venv/bin/python tools/gateway_render.py OUT.conf VARS.json   # VARS: role variables
"""
from __future__ import annotations

import json
import os
import pathlib
import pwd
import shutil
import subprocess
import sys
import tempfile
import typing as t

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROLE = ROOT / "roles" / "gateway"
NGINX_USER = "www-data"


class RenderError(Exception):
    """The template did not render or nginx -t refused the result."""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")


def workdir(prefix: str = "dockyard-gateway-") -> pathlib.Path:
    """A new directory nginx's workers (www-data) can read; remove it with shutil.rmtree."""
    path = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def give_to_nginx(*paths: pathlib.Path) -> None:
    """Directories and files nginx's workers write (cache) or read per request (htpasswd)."""
    if os.geteuid() != 0:
        return  # workers run as this user
    user = pwd.getpwnam(NGINX_USER)
    for path in paths:
        os.chown(path, user.pw_uid, user.pw_gid)


def loopback_vars(work: pathlib.Path, *, https_port: int, http_port: int, registry: str, certificate: pathlib.Path,
                  key: pathlib.Path, auth: str = "htpasswd", token: str = "", htpasswd: pathlib.Path | None = None,
                  server_name: str = "localhost", **extra: t.Any) -> dict[str, t.Any]:
    """Role variables of a gateway on loopback whose files all live in ``work``.

    Clients must use ``server_name`` (default ``localhost``) in the URL: TLS without SNI, as
    for an IP address, is refused as the role refuses unknown names.

    ``registry`` and ``token`` are upstream servers (``127.0.0.1:PORT`` or ``unix:PATH``);
    ``extra`` sets further role variables (``gateway__blob_cache_enabled``, rate limits …).
    """
    cache = work / "cache"
    cache.mkdir(exist_ok=True)
    give_to_nginx(cache)
    values: dict[str, t.Any] = {
        "gateway__server_name": server_name, "gateway__server_aliases": [],
        "gateway__auth": auth, "gateway__https_port": https_port, "gateway__http_port": http_port,
        "gateway__listen_ipv6": False, "gateway__registry_upstream": registry,
        "gateway__blob_cache_path": str(cache), "gateway__audit_log": str(work / "access.log"),
        "gateway__limit_nofile": 4096, "gateway__worker_connections": 1024,
        "_gateway__nginx_pid": str(work / "nginx.pid"), "_gateway__nginx_error_log": str(work / "error.log"),
        "_gateway__certificate": str(certificate), "_gateway__certificate_key": str(key),
        # Its fixed ports would collide between test workers; the Molecule scenario
        # `operations` checks the metrics listener.
        "gateway__metrics_enabled": False,
    }
    if token:
        values["gateway__token_upstream"] = token
    if htpasswd is not None:
        give_to_nginx(htpasswd)
        values["_gateway__htpasswd"] = str(htpasswd)
    values.update(extra)
    return values


def render(dest: pathlib.Path, variables: dict[str, t.Any], validate: bool = True) -> pathlib.Path:
    """Write the role's nginx.conf to ``dest`` with ``variables`` as extra vars; nginx -t checks it."""
    dest = dest.resolve()
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="dockyard-render-"))
    try:
        task: dict[str, t.Any] = {"src": str(ROLE / "templates" / "nginx.conf.j2"), "dest": str(dest), "mode": "0644"}
        if validate:
            task["validate"] = "%s -t -q -c %%s" % (nginx_binary() or "nginx")
        # Minimal facts (distribution and release): the template may choose per release, and
        # this machine's nginx (validate) is the one this release ships.
        play = [{"hosts": "localhost", "gather_facts": True, "gather_subset": ["!all"],
                 "vars_files": [str(ROLE / "defaults" / "main.yml"), str(ROLE / "vars" / "main.yml")],
                 "tasks": [{"name": "Load the settings of this Debian release",
                            "ansible.builtin.include_vars": str(ROLE / "vars" / "{{ _gateway__release }}.yml")},
                           {"name": "Render nginx.conf", "ansible.builtin.template": task}]}]
        (scratch / "render.yml").write_text(json.dumps(play), encoding="utf-8")
        (scratch / "vars.json").write_text(json.dumps(variables), encoding="utf-8")
        env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0",
                   ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_RETRY_FILES_ENABLED="0",
                   ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_STDOUT_CALLBACK="default")
        playbook = pathlib.Path(sys.executable).parent / "ansible-playbook"
        done = subprocess.run([str(playbook), "-i", "localhost,", "-c", "local", str(scratch / "render.yml"),
                               "-e", "@%s" % (scratch / "vars.json")],
                              capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=300, check=False)
        if done.returncode:
            raise RenderError("rendering %s failed:\n%s" % (dest, (done.stdout + done.stderr)[-4000:]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return dest


def nginx_argv(conf: pathlib.Path) -> list[str]:
    """nginx in the foreground with this configuration (its pid file and logs are in the config)."""
    return [nginx_binary() or "nginx", "-p", str(conf.parent), "-c", str(conf), "-e", str(conf.parent / "error.log"),
            "-g", "daemon off;"]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        render(pathlib.Path(argv[0]), json.loads(pathlib.Path(argv[1]).read_text(encoding="utf-8")))
    except RenderError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
