# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: port_range
author: Dockyard developers (!UNKNOWN)
version_added: 0.1.0
short_description: Is a value a TCP or UDP port or a range of ports
description:
  - True when the input is a port number from 1 to 65535 (an integer, or a string of digits without leading zeros),
    or a range C(FIRST-LAST) of such ports with FIRST lower than LAST, as nftables takes it in C(tcp dport).
  - Booleans, 0, negative numbers, names (C(https)) and spaces are refused.
options:
  _input:
    description: The port or range to check.
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Refuse ports that are not ports
  ansible.builtin.assert:
    that: firewall__gateway_ports | reject('dockyard.registry.port_range') | list | length == 0
"""

RETURN = r"""
_value:
  description: Whether the input is a port or a range of ports.
  type: boolean
"""

import re

_PORT = re.compile(r"[1-9][0-9]{0,4}")


def _port(text: str) -> int | None:
    return int(text) if _PORT.fullmatch(text) and int(text) <= 65535 else None


def port_range(value: object) -> bool:
    """True when value is a port (1-65535) or a range FIRST-LAST of ports, FIRST < LAST."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 1 <= value <= 65535
    if not isinstance(value, str):
        return False
    first, sep, last = value.partition("-")
    low, high = _port(first), _port(last) if sep else None
    if not sep:
        return low is not None
    return low is not None and high is not None and low < high


class TestModule:
    def tests(self) -> dict:
        return {"port_range": port_range}
