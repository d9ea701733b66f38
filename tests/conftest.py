"""Make this checkout importable as ``ansible_collections.dockyard.registry``.

Unit and integration tests import the collection's plugins by their real names; this
links the checkout into ``.build/collections`` once and puts that folder on sys.path.
Integration tests hand the same folder to ansible-playbook as ANSIBLE_COLLECTIONS_PATH.
"""
from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / ".build" / "collections"
_LINK = COLLECTIONS / "ansible_collections" / "dockyard" / "registry"

if not _LINK.exists():
    _LINK.parent.mkdir(parents=True, exist_ok=True)
    _LINK.symlink_to(ROOT, target_is_directory=True)
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
