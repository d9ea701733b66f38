# Private to the dockyard.registry collection: not a public API, may change at any time.
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How every module of the collection hands its reconciled result to Ansible."""
from __future__ import annotations

import typing as t


def exit_with(module: t.Any, result: dict) -> None:
    """Exit with a reconciler's result; its diff only when the run asked for diffs."""
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)
