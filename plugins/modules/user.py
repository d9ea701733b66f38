#!/usr/bin/python
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: user
short_description: Manage user accounts and group memberships of the registry's token service
version_added: 0.1.0
description:
  - Creates, updates and removes a user of the token service's account store (bcrypt password hash,
    group memberships, disabled flag). What users may do is given by rules, see
    M(dockyard.registry.access_rule).
  - A password is hashed again only when it really changed (checked with bcrypt), so a second run with
    the same password changes nothing.
extends_documentation_fragment:
  - dockyard.registry.accounts_store
attributes:
  check_mode:
    support: full
    description: Says whether the user would be created, changed or removed; writes nothing.
  diff_mode:
    support: full
    description: Shows groups, disabled flag and whether the password changes (never a hash).
options:
  name:
    description:
      - User name, 1-64 characters of V(a-z), V(0-9), V(.), V(_), V(-), starting with a letter or digit.
    type: str
    required: true
  state:
    description:
      - Whether the user exists.
    type: str
    choices: [present, absent]
    default: present
  password:
    description:
      - Password, at most 72 bytes (bcrypt ignores the rest). Required to create a user.
    type: str
  update_password:
    description:
      - V(always) sets O(password) on existing users when it differs; V(on_create) sets it only for new users.
    type: str
    choices: [always, on_create]
    default: always
  groups:
    description:
      - Groups the user is a member of. Groups exist as long as a user is a member or a rule names them.
      - Omitted, an existing user keeps its groups (a new one has none).
    type: list
    elements: str
  append:
    description:
      - With V(true), O(groups) are added to the current ones instead of replacing them.
    type: bool
    default: false
  disabled:
    description:
      - A disabled user cannot get tokens; tokens already issued stay valid until they expire.
      - Omitted, an existing user keeps its flag (a new one is enabled).
    type: bool
author:
  - Dockyard developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Alice pushes to team-a
  dockyard.registry.user:
    name: alice
    password: "{{ vault_alice_password }}"
    groups: [team-a]

- name: Add Bob to the admins, keeping his other groups and password
  dockyard.registry.user:
    name: bob
    password: "{{ vault_bob_initial_password }}"
    update_password: on_create
    groups: [admins]
    append: true

- name: Lock Mallory out
  dockyard.registry.user:
    name: mallory
    disabled: true

- name: Remove Eve
  dockyard.registry.user:
    name: eve
    state: absent

# On a cluster (a play on the registry group, with become): change the account primary
# only, then copy its store to every node; each node applies it at its next token request.
- name: Move Alice to team-b on the account primary
  dockyard.registry.user:
    name: alice
    groups: [team-b]
  delegate_to: "{{ groups['registry'] | first }}"
  run_once: true

- name: Copy the primary's account store to the other nodes
  ansible.builtin.include_role:
    name: dockyard.registry.token_service
    tasks_from: sync_accounts
  vars:
    token_service__cluster_hosts: "{{ groups['registry'] }}"
"""

RETURN = r"""
user:
  description: The user afterwards (in check mode, as it would be); null when absent.
  returned: always
  type: dict
  sample: {"name": "alice", "groups": ["team-a"], "disabled": false}
password_changed:
  description: Whether the password (hash) was set or would be.
  returned: always
  type: bool
  sample: false
"""

import typing as t

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.dockyard.registry.plugins.module_utils import _accounts
from ansible_collections.dockyard.registry.plugins.module_utils._results import exit_with


def public_view(name: str, user: t.Optional[dict]) -> t.Optional[dict]:
    if user is None:
        return None
    return {"name": name, "groups": list(user["groups"]), "disabled": user["disabled"]}


class UserReconciler:
    def __init__(self, params: dict, check_mode: bool) -> None:
        self.params = params
        self.check_mode = check_mode

    def run(self) -> dict:
        params = self.params
        name = _accounts.check_user_name(params["name"])
        groups = [_accounts.check_group_name(group) for group in params["groups"] or []]
        password_changed = False
        with _accounts.Transaction(params["store_path"], params["store_group"], self.check_mode) as tx:
            users = tx.store["users"]
            before = public_view(name, users.get(name))
            if params["state"] == "absent":
                users.pop(name, None)
            else:
                current = users.get(name)
                if current is None:
                    if not params["password"]:
                        raise _accounts.InvalidValue("password is required to create user %s" % name)
                    current = users[name] = {"password_hash": "", "groups": [], "disabled": False}
                    password_changed = True
                elif params["password"] and params["update_password"] == "always":
                    password_changed = not _accounts.check_secret(params["password"], current["password_hash"])
                if password_changed:
                    current["password_hash"] = _accounts.hash_secret(params["password"])
                if params["groups"] is not None:
                    merged = set(groups) | (set(current["groups"]) if params["append"] else set())
                    current["groups"] = sorted(merged)
                if params["disabled"] is not None:
                    current["disabled"] = params["disabled"]
            after = public_view(name, users.get(name))
        diff_before = dict(before or {}, password="(set)") if before else {}
        diff_after = dict(after, password="(changed)" if password_changed else "(set)") if after else {}
        return {"changed": tx.changed, "user": after, "password_changed": password_changed,
                "diff": {"before": diff_before, "after": diff_after}}


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            _accounts.STORE_ARGUMENT_SPEC,
            name={"type": "str", "required": True},
            state={"type": "str", "choices": ["present", "absent"], "default": "present"},
            password={"type": "str", "no_log": True},
            update_password={"type": "str", "choices": ["always", "on_create"], "default": "always",
                             "no_log": False},
            groups={"type": "list", "elements": "str"},
            append={"type": "bool", "default": False},
            disabled={"type": "bool"},
        ),
        supports_check_mode=True,
    )
    if not _accounts.HAS_BCRYPT:
        module.fail_json(msg=missing_required_lib("bcrypt"), exception=str(_accounts.BCRYPT_IMPORT_ERROR))
    try:
        result = UserReconciler(module.params, module.check_mode).run()
    except _accounts.AccountsError as error:
        module.fail_json(msg=str(error))
    exit_with(module, result)


if __name__ == "__main__":
    main()
