# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: hostname
author: Dockyard developers (!UNKNOWN)
version_added: 0.1.0
short_description: Is a string a fully valid DNS host name
description:
  - True when the input is a DNS name that a TLS certificate and nginx C(server_name) can carry.
  - Labels of 1 to 63 letters, digits and inner hyphens, separated by dots, 253 characters at most.
  - No trailing dot, no wildcard, no IP address, no port.
options:
  _input:
    description: The name to check.
    type: string
    required: true
"""

EXAMPLES = r"""
- name: Refuse a server name that is not a host name
  ansible.builtin.assert:
    that: gateway__server_name is dockyard.registry.hostname
"""

RETURN = r"""
_value:
  description: Whether the input is a valid DNS host name.
  type: boolean
"""

import re

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def hostname(value: object) -> bool:
    """True when value is a DNS host name (not an IP address)."""
    if not isinstance(value, str) or not 0 < len(value) <= 253:
        return False
    labels = value.lower().split(".")
    if labels[-1].isdigit():
        return False
    return all(_LABEL.fullmatch(label) for label in labels)


class TestModule:
    def tests(self) -> dict:
        return {"hostname": hostname}
