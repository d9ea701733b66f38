#!/usr/bin/python
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: htpasswd
short_description: Manage the bcrypt users of an htpasswd file that nginx checks
version_added: 0.1.0
author:
  - Dockyard developers (!UNKNOWN)
description:
  - Writes the users of an htpasswd file with bcrypt hashes of a chosen cost.
  - A hash is replaced only when the password or the cost really changed, so a second run changes nothing.
  - The file is written atomically; diff and the result name users, never hashes or passwords.
  - A new file is created with mode C(0600) unless O(mode) says otherwise; an existing file keeps its
    owner, group and mode unless the file options say otherwise.
  - A user listed more than once in the file (nginx uses the first line) is written once and reported
    in RV(updated). Comment lines are kept while nothing else changes.
requirements:
  - bcrypt (Debian package C(python3-bcrypt)) on the target.
attributes:
  check_mode:
    support: full
    description: Reports which users would be added, updated or removed; writes nothing.
  diff_mode:
    support: full
    description: Shows the user names before and after; never hashes or passwords.
options:
  path:
    description: Path of the htpasswd file.
    type: path
    required: true
  users:
    description: The users the file holds.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: User name (letters, digits, C(.), C(_), C(-); no C(:)).
        type: str
        required: true
      password:
        description:
          - The user's password; 1 to 72 bytes in UTF-8 (bcrypt uses no more), no NUL character.
        type: str
        required: true
  cost:
    description:
      - bcrypt cost factor (4 to 16). nginx verifies the hash on every request, so each step up halves
        the requests per second one core can authenticate.
    type: int
    default: 10
  exclusive:
    description: Remove users that are in the file but not in I(users).
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.files
"""

EXAMPLES = r"""
- name: Give the registry two users
  dockyard.registry.htpasswd:
    path: /etc/nginx/dockyard-htpasswd
    users:
      - name: alice
        password: "{{ vault_alice_password }}"
      - name: ci
        password: "{{ vault_ci_password }}"
    cost: 10
    owner: root
    group: www-data
    mode: "0640"
"""

RETURN = r"""
added:
  description: Users added.
  returned: always
  type: list
  elements: str
  sample: [alice]
updated:
  description: Users whose password or cost changed, or who were listed more than once in the file.
  returned: always
  type: list
  elements: str
  sample: []
removed:
  description: Users removed because I(exclusive) is set.
  returned: always
  type: list
  elements: str
  sample: [bob]
"""

import os
import re
import tempfile
import typing as t

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.dockyard.registry.plugins.module_utils._results import exit_with

try:
    import bcrypt
except ImportError:
    bcrypt = None

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_COST = re.compile(r"\$2[aby]\$(\d\d)\$")


class HtpasswdError(Exception):
    """An error the module reports as it is."""


def read_entries(path: str) -> tuple[dict[str, str], set[str]]:
    """The first hash of each user (the one nginx checks), and the users listed more than once."""
    if not os.path.exists(path):
        return {}, set()
    entries: dict[str, str] = {}
    repeated = set()
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            lines = handle.read().splitlines()
    except UnicodeDecodeError:
        raise HtpasswdError(f"{path} is not UTF-8 text; it is not an htpasswd file this module can manage") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, digest = line.partition(":")
        if not sep:
            raise HtpasswdError(f"{path}:{number} is not an htpasswd line (name:hash)")
        if name in entries:
            repeated.add(name)
        else:
            entries[name] = digest
    return entries, repeated


def matches(password: str, digest: str, cost: int) -> bool:
    found = _COST.match(digest)
    if not found or int(found.group(1)) != cost:
        return False
    try:
        return bcrypt.checkpw(password.encode(), digest.encode())
    except ValueError:
        return False


def check_password(name: str, password: str) -> None:
    if not password:
        raise HtpasswdError(f"user {name!r} has an empty password")
    if "\0" in password:
        raise HtpasswdError(f"the password of user {name!r} contains a NUL character, which bcrypt cannot hash")
    if len(password.encode("utf-8")) > 72:
        raise HtpasswdError(f"the password of user {name!r} is longer than 72 bytes in UTF-8; bcrypt ignores "
                            "everything after the 72nd byte, so use a shorter one")


def reconcile(current: dict[str, str], users: list[dict], cost: int, exclusive: bool,
              repeated: t.AbstractSet[str] = frozenset()) -> tuple[dict[str, str], dict]:
    wanted = {}
    report: dict[str, list[str]] = {"added": [], "updated": [], "removed": []}
    for user in users:
        name, password = user["name"], user["password"]
        if not _NAME.fullmatch(name):
            raise HtpasswdError(f"user name {name!r} is invalid: use 1 to 64 letters, digits, '.', '_' or '-'")
        if name in wanted:
            raise HtpasswdError(f"user {name!r} is listed twice")
        check_password(name, password)
        digest = current.get(name)
        if digest is not None and name not in repeated and matches(password, digest, cost):
            wanted[name] = digest
            continue
        report["updated" if digest is not None else "added"].append(name)
        wanted[name] = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost, prefix=b"2b")).decode()
    result = dict(wanted)
    for name, digest in current.items():
        if name in wanted:
            continue
        if exclusive:
            report["removed"].append(name)
        else:
            result[name] = digest
            if name in repeated:
                report["updated"].append(name)
    return result, report


def write_atomically(module: AnsibleModule, path: str, entries: dict[str, str]) -> None:
    directory = os.path.dirname(path) or "."
    creating = not os.path.exists(path)
    fd, temp = tempfile.mkstemp(prefix=".htpasswd.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines(f"{name}:{digest}\n" for name, digest in sorted(entries.items()))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o600)
        module.atomic_move(temp, path)
        if creating and module.params["mode"] is None:
            os.chmod(path, 0o600)  # atomic_move gives a new file 0666 & ~umask: hashes for all to read
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def run(module: AnsibleModule) -> dict:
    params = module.params
    if not 4 <= params["cost"] <= 16:
        raise HtpasswdError(f"cost must be between 4 and 16, not {params['cost']}")
    path = params["path"]
    if not os.path.isdir(os.path.dirname(path) or "."):
        raise HtpasswdError(f"the directory of {path} does not exist")
    current, repeated = read_entries(path)
    entries, report = reconcile(current, params["users"], params["cost"], params["exclusive"], repeated)
    changed = any(report.values()) or not os.path.exists(path)
    if changed and not module.check_mode:
        write_atomically(module, path, entries)
    file_args = module.load_file_common_arguments(params)
    if os.path.exists(path):
        changed = module.set_fs_attributes_if_different(file_args, changed)
    return dict(
        changed=changed,
        diff={"before": "".join(f"{n}\n" for n in sorted(current)), "after": "".join(f"{n}\n" for n in sorted(entries)),
              "before_header": f"{path} (users)", "after_header": f"{path} (users)"},
        **report,
    )


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            users=dict(type="list", elements="dict", required=True, options=dict(
                name=dict(type="str", required=True),
                password=dict(type="str", required=True, no_log=True),
            )),
            cost=dict(type="int", default=10),
            exclusive=dict(type="bool", default=True),
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    if bcrypt is None:
        module.fail_json(msg=missing_required_lib("bcrypt (Debian package python3-bcrypt)"))
    try:
        result = run(module)
    except (HtpasswdError, OSError) as error:
        module.fail_json(msg=str(error))
    exit_with(module, result)


if __name__ == "__main__":
    main()
