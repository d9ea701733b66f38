# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""gunicorn entry point: ``gunicorn dockyard_token.wsgi:application``.

The configuration file is ``$DOCKYARD_TOKEN_CONFIG`` (default
/etc/dockyard/token/config.json); a bad key or config stops the service at start.
"""
from __future__ import annotations

import os

from .app import create_app

application = create_app(os.environ.get("DOCKYARD_TOKEN_CONFIG", "/etc/dockyard/token/config.json"))
