# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: ip_network
author: Dockyard developers (!UNKNOWN)
version_added: 0.1.0
short_description: Is a string an IPv4 or IPv6 address or network
description:
  - True when the input is an IPv4 or IPv6 address (C(192.0.2.10), C(2001:db8::1)) or a network in CIDR
    notation (C(192.0.2.0/24), C(2001:db8::/32)) whose host bits are zero.
  - Names, ranges, zone indexes and anything with spaces are refused, as nginx's C(allow), HAProxy's C(src) and
    nftables would read them differently or not at all.
options:
  _input:
    description: The address or network to check.
    type: string
    required: true
"""

EXAMPLES = r"""
- name: Refuse a scraper address the allowlists could not take
  ansible.builtin.assert:
    that: dockyard_metrics_scrapers | reject('dockyard.registry.ip_network') | list | length == 0
"""

RETURN = r"""
_value:
  description: Whether the input is an IPv4 or IPv6 address or network.
  type: boolean
"""

import ipaddress
import re

_SHAPE = re.compile(r"[0-9A-Fa-f.:]+(/[0-9]{1,3})?")


def ip_network(value: object) -> bool:
    """True when value is an IPv4/IPv6 address or a network with its host bits zero."""
    if not isinstance(value, str) or not _SHAPE.fullmatch(value):
        return False
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        return False
    return True


class TestModule:
    def tests(self) -> dict:
        return {"ip_network": ip_network}
