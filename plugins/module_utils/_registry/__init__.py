# Private to the dockyard.registry collection: not a public API, may change at any time.
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A layered client of the Registry HTTP API v2 (Docker Distribution 2.8).

Layers, bottom up: ``transport`` (one HTTP exchange, retries) → ``auth`` (Basic and
Bearer challenges) → ``client`` (API operations, pagination, media types) →
``inventory``/``retention`` (what the modules reason about).  ``errors`` holds the
one exception hierarchy; ``common`` the shared module options.
"""
