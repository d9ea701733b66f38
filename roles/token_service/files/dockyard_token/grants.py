# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who may do what: identities, the rule index, and the intersection asked x granted.

Semantics (docs/token-auth.md has examples):

* default deny; rights only ever add up, there is no deny rule;
* ``anonymous`` rules apply to every request, with or without credentials;
* ``authenticated`` rules apply to every user account (not to robots);
* ``user:NAME`` and ``group:NAME`` rules apply to that user / the members of that group;
* a robot gets its own permissions plus ``robot:NAME`` rules plus ``anonymous`` rules;
* a directory user (directory.py) is a user whose groups are its mapped directory groups;
* a workload (a CI job's OIDC token, oidc.py) gets the permissions of the issuer's rules its
  claims match, plus ``anonymous`` rules;
* ``catalog`` grants ``registry:catalog:*``; ``*`` asked on a repository is granted only
  to a holder of pull, push and delete there.
"""
from __future__ import annotations

import typing as t

from . import _accounts
from .scopes import Scope

REPOSITORY_ACTIONS = ("pull", "push", "delete")
MEMO_SIZE = 8192


class Identity(t.NamedTuple):
    kind: str  # "anonymous", "user", "robot" or "workload"
    name: str = ""
    groups: tuple = ()
    # A workload's permissions: ((repository pattern, frozenset of actions), ...).
    permissions: tuple = ()

    @property
    def subject(self) -> str:
        return self.kind if self.kind == "anonymous" else "%s:%s" % (self.kind, self.name)


ANONYMOUS = Identity("anonymous")


class RuleIndex:
    """The store's rules grouped by subject, built once per store load."""

    def __init__(self, store: dict) -> None:
        self.store = store
        self.by_subject: dict = {}
        for rule in store["rules"]:
            self.by_subject.setdefault(rule["subject"], []).append((rule["repository"], frozenset(rule["actions"])))
        self.robot_permissions = {
            name: [(item["repository"], frozenset(item["actions"])) for item in robot["permissions"]]
            for name, robot in store["robots"].items()
        }
        self._allowed: dict = {}

    def entries_for(self, identity: Identity) -> list:
        subjects = ["anonymous"]
        entries: list = []
        if identity.kind == "user":
            subjects += ["authenticated", identity.subject] + ["group:%s" % group for group in identity.groups]
        elif identity.kind == "robot":
            subjects.append(identity.subject)
            entries.extend(self.robot_permissions.get(identity.name, ()))
        elif identity.kind == "workload":
            entries.extend(identity.permissions)
        for subject in subjects:
            entries.extend(self.by_subject.get(subject, ()))
        return entries

    def allowed(self, identity: Identity, repository: str) -> frozenset:
        """The actions allowed on a repository; remembered until the store changes (a new index)."""
        key = (identity, repository)
        found = self._allowed.get(key)
        if found is None:
            user = identity.name if identity.kind == "user" else None
            result: set = set()
            for pattern, actions in self.entries_for(identity):
                if not actions <= result and _accounts.match_pattern(pattern, repository, user):
                    result |= actions
            if len(self._allowed) >= MEMO_SIZE:
                self._allowed.clear()
            found = self._allowed[key] = frozenset(result)
        return found

    def catalog_allowed(self, identity: Identity) -> bool:
        return any("catalog" in actions for _pattern, actions in self.entries_for(identity))

    def grant(self, identity: Identity, scopes: t.Iterable[Scope]) -> list:
        """The token's ``access`` claim: what was asked AND is allowed, merged per resource."""
        merged: dict = {}
        for scope in scopes:
            if scope.resource_class:
                continue  # e.g. repository(plugin): nothing here grants those
            granted: list = []
            if scope.type == "repository":
                allowed = self.allowed(identity, scope.name)
                for action in scope.actions:
                    if action in allowed or (action == "*" and allowed.issuperset(REPOSITORY_ACTIONS)):
                        granted.append(action)
            elif scope.type == "registry" and scope.name == "catalog":
                if "*" in scope.actions and self.catalog_allowed(identity):
                    granted.append("*")
            if granted:
                actions = merged.setdefault((scope.type, scope.name), [])
                actions.extend(action for action in granted if action not in actions)
        return [{"type": kind, "name": name, "actions": actions} for (kind, name), actions in merged.items()]
