# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Dockyard's token server for Docker Distribution (token auth spec), run by gunicorn."""
