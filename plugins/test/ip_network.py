# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: ip_network
author: Dockyard developers (!UNKNOWN)
version_added: 0.1.0
short_description: Is a string an IPv4 or IPv6 address or network
description:
  - True when the input is one IPv4 or IPv6 address (C(192.0.2.10), C(2001:db8::10)) or a network in CIDR
    notation (C(192.0.2.0/24), C(2001:db8::/64)), as nftables takes it in C(ip saddr) and C(ip6 daddr).
  - Strict, so a typing error cannot widen a firewall rule; a network with host bits set (C(10.0.0.5/8)),
    leading zeros (C(010.0.0.1)), a zone index (C(fe80::1%eth0)), a host name, a range or spaces are refused.
  - C(0.0.0.0/0) and C(::/0) are every IPv4 and every IPv6 address.
options:
  _input:
    description: The address or network to check.
    type: string
    required: true
"""

EXAMPLES = r"""
- name: Refuse sources that are not addresses or networks
  ansible.builtin.assert:
    that: firewall__ssh_sources | reject('dockyard.registry.ip_network') | list | length == 0
"""

RETURN = r"""
_value:
  description: Whether the input is an IPv4 or IPv6 address or network.
  type: boolean
"""

import ipaddress
import re

_TEXT = re.compile(r"[0-9A-Fa-f:.]+(?:/[0-9]{1,3})?")


def ip_network(value: object) -> bool:
    """True when value is an IPv4 or IPv6 address, or a network without host bits."""
    if not isinstance(value, str) or not _TEXT.fullmatch(value):
        return False
    address, _sep, prefix = value.partition("/")
    if prefix and prefix != str(int(prefix)):
        return False
    try:
        ipaddress.ip_address(address)
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        return False
    return True


class TestModule:
    def tests(self) -> dict:
        return {"ip_network": ip_network}
