#!/usr/bin/python
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: access_rule
short_description: Grant a subject actions on a repository pattern in the registry's token service
version_added: 0.1.0
description:
  - Sets one access rule of the token service's account store. A rule is identified by its O(subject)
    and its O(repository) pattern; O(actions) replaces the actions that rule grants.
  - Default deny. Rules only ever add rights; there is no deny rule. The rights of a request are the
    union of every rule that applies to it (and, for a robot, of its own permissions, see
    M(dockyard.registry.robot_account)).
  - "Subjects: V(user:NAME), V(group:NAME), V(robot:NAME); V(authenticated) applies to every user
    (not to robots); V(anonymous) applies to every request, with or without credentials."
  - "Patterns match the whole repository name. V(*) matches any characters, V(/) included:
    V(team-a/*) matches V(team-a/app) and V(team-a/tools/lint) but not V(team-a) nor V(team-ab/app).
    V(${user}) stands for the name of the user asking (never a robot or anonymous), for personal
    namespaces such as V(${user}/*)."
extends_documentation_fragment:
  - dockyard.registry.accounts_store
attributes:
  check_mode:
    support: full
    description: Says whether the rule would be added, changed or removed; writes nothing.
  diff_mode:
    support: full
    description: Shows the rule before and after.
options:
  subject:
    description:
      - Who the rule applies to.
    type: str
    required: true
  repository:
    description:
      - Repository pattern, such as V(team-a/*), V(team-a/app), V(*) or V(${user}/*).
    type: str
    required: true
  actions:
    description:
      - What the subject may do there. V(catalog) (C(registry:catalog:*), list every repository name)
        needs the pattern V(*). Required with O(state=present).
    type: list
    elements: str
    choices: [pull, push, delete, catalog]
  state:
    description:
      - Whether the rule exists.
    type: str
    choices: [present, absent]
    default: present
author:
  - Dockyard developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Team A pulls and pushes its own repositories
  dockyard.registry.access_rule:
    subject: group:team-a
    repository: team-a/*
    actions: [pull, push]

- name: Admins may do everything, and list the catalog
  dockyard.registry.access_rule:
    subject: group:admins
    repository: "*"
    actions: [pull, push, delete, catalog]

- name: Every user owns a personal namespace
  dockyard.registry.access_rule:
    subject: authenticated
    repository: "${user}/*"
    actions: [pull, push, delete]

- name: Public base images, for everyone
  dockyard.registry.access_rule:
    subject: anonymous
    repository: public/*
    actions: [pull]

- name: No more personal namespaces
  dockyard.registry.access_rule:
    subject: authenticated
    repository: "${user}/*"
    state: absent

# On a cluster (a play on the registry group, with become): change the account primary
# only, then copy its store to every node; each node applies it at its next token request.
- name: Team B pulls team-a's images, set on the account primary
  dockyard.registry.access_rule:
    subject: group:team-b
    repository: team-a/*
    actions: [pull]
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
rule:
  description: The rule afterwards (in check mode, as it would be); null when absent.
  returned: always
  type: dict
  sample: {"subject": "group:team-a", "repository": "team-a/*", "actions": ["pull", "push"]}
"""

import copy

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dockyard.registry.plugins.module_utils import _accounts
from ansible_collections.dockyard.registry.plugins.module_utils._results import exit_with


class RuleReconciler:
    def __init__(self, params: dict, check_mode: bool) -> None:
        self.params = params
        self.check_mode = check_mode

    def run(self) -> dict:
        params = self.params
        subject = _accounts.check_subject(params["subject"])
        pattern = _accounts.check_pattern(params["repository"])
        actions = None
        if params["state"] == "present":
            if not params["actions"]:
                raise _accounts.InvalidValue("actions is required with state=present")
            actions = _accounts.check_actions(params["actions"], pattern)
        with _accounts.Transaction(params["store_path"], params["store_group"], self.check_mode) as tx:
            rule = _accounts.find_rule(tx.store, subject, pattern)
            before = copy.deepcopy(rule)
            if actions is None:
                tx.store["rules"] = [item for item in tx.store["rules"] if item is not rule]
                after = None
            elif rule is None:
                after = {"subject": subject, "repository": pattern, "actions": actions}
                tx.store["rules"].append(after)
            else:
                rule["actions"] = actions
                after = rule
        return {"changed": tx.changed, "rule": after, "diff": {"before": before or {}, "after": after or {}}}


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            _accounts.STORE_ARGUMENT_SPEC,
            subject={"type": "str", "required": True},
            repository={"type": "str", "required": True},
            actions={"type": "list", "elements": "str", "choices": list(_accounts.ACTIONS)},
            state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        ),
        required_if=[("state", "present", ("actions",))],
        supports_check_mode=True,
    )
    try:
        result = RuleReconciler(module.params, module.check_mode).run()
    except _accounts.AccountsError as error:
        module.fail_json(msg=str(error))
    exit_with(module, result)


if __name__ == "__main__":
    main()
