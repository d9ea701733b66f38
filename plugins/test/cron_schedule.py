# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: cron_schedule
author: Dockyard developers (!UNKNOWN)
version_added: 0.1.0
short_description: Is a string five valid cron fields
description:
  - True when the input is a cron schedule of five fields (minute, hour, day of month, month, day of week).
  - Each field is C(*) or a comma-separated list of numbers, ranges (C(1-5)) and steps (C(*/15), C(0-30/5)), within the field's range.
  - Months and days of the week may be given by their three-letter English names.
options:
  _input:
    description: The schedule to check.
    type: string
    required: true
"""

EXAMPLES = r"""
- name: Refuse a schedule cron would not understand
  ansible.builtin.assert:
    that: schedule is dockyard.registry.cron_schedule
"""

RETURN = r"""
_value:
  description: Whether the input is a valid five-field cron schedule.
  type: boolean
"""

import re

_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_ITEM = re.compile(r"(?:(\*)|([0-9a-z]+)(?:-([0-9a-z]+))?)(?:/([0-9]+))?")


def _value(token: str, low: int, names: tuple[str, ...]) -> int | None:
    if token.isdigit():
        return int(token)
    if token in names:
        return names.index(token) + low if low == 1 else names.index(token)
    return None


def _valid_field(text: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    for item in text.split(","):
        match = _ITEM.fullmatch(item)
        if not match:
            return False
        star, first, last, step = match.groups()
        if step is not None and not 1 <= int(step) <= high:
            return False
        if star:
            continue
        start = _value(first, low, names)
        end = start if last is None else _value(last, low, names)
        if start is None or end is None or not low <= start <= end <= high:
            return False
    return True


def cron_schedule(value: object) -> bool:
    """True when value is five valid cron fields."""
    if not isinstance(value, str):
        return False
    fields = value.lower().split()
    if len(fields) != len(_FIELDS):
        return False
    return all(_valid_field(text, low, high, names) for text, (_name, low, high, names) in zip(fields, _FIELDS))


class TestModule:
    def tests(self) -> dict:
        return {"cron_schedule": cron_schedule}
