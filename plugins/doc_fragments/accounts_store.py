# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of the modules that edit the token service's account store (module_utils/_accounts.py)."""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  store_path:
    description:
      - The account store of the token service on the target host (see the P(dockyard.registry.token_service#role) role).
      - The file is replaced atomically (temporary file, C(fsync), rename); concurrent runs of these modules
        are serialised with a lock file beside it. The token service picks changes up at its next request.
    type: path
    default: /etc/dockyard/token/accounts.json
  store_group:
    description:
      - Group of the store file when a module creates it (mode C(0640), owner the connecting user).
        An existing file keeps its owner, group and mode.
      - The token service reads the file through this group.
    type: str
    default: dockyard-token
requirements:
  - bcrypt (Debian package C(python3-bcrypt)) on the target host.
notes:
  - Runs on the registry host that runs the token service, usually as root.
  - "On a cluster the nodes share one account store: run the module once, on the account primary (the first
    node of the cluster: C(run_once: true) with C(delegate_to)), then copy the primary's store to the other
    nodes with the role's task file C(sync_accounts) (see EXAMPLES and docs/cluster.md). A change made on
    another node is overwritten by the next copy."
"""
