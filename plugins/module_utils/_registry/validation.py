# Private to the dockyard.registry collection: not a public API, may change at any time.
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check module input before any request: names, tags, digests, patterns, durations."""
from __future__ import annotations

import re
import typing as t
import urllib.parse

from .errors import InvalidInput

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*"
REPOSITORY = re.compile(r"%s(?:/%s)*" % (_COMPONENT, _COMPONENT))
TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
# The digest algorithms the collection can verify, with the length of their hex encoding.
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_DURATION = re.compile(r"(\d+)\s*([wdhms])")
_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def repository(name: str) -> str:
    if not name or len(name) > 255 or not REPOSITORY.fullmatch(name):
        raise InvalidInput(
            "repository %r is not a valid repository name: lowercase letters and digits in "
            "path components separated by '/', with '.', '_', '__' or '-' inside components, "
            "at most 255 characters" % (name,))
    return name


def tag(name: str) -> str:
    if not name or not TAG.fullmatch(name):
        raise InvalidInput(
            "tag %r is not a valid tag: 1 to 128 characters of letters, digits, '_', '.' and "
            "'-', not starting with '.' or '-'" % (name,))
    return name


def digest_algorithm(value: str) -> str | None:
    """The algorithm of a digest the collection can verify (``sha256:<64 hex>`` ...); None otherwise."""
    algorithm, _separator, encoded = value.partition(":")
    length = DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None or len(encoded) != length or encoded.strip("0123456789abcdef"):
        return None
    return algorithm


def reference(value: str) -> str:
    """A tag or a digest."""
    if ":" in value:
        if digest_algorithm(value) is None:
            raise InvalidInput("%r is neither a tag nor a digest like sha256:<64 hex digits> (sha256, sha384 or "
                               "sha512, lowercase hex)" % (value,))
        return value
    return tag(value)


def patterns(values: t.Iterable[str], option: str) -> list[t.Pattern[str]]:
    compiled = []
    for value in values:
        try:
            compiled.append(re.compile(value))
        except re.error as error:
            raise InvalidInput("%s: %r is not a valid regular expression: %s" % (option, value, error)) from None
    return compiled


def duration(text: str, option: str = "older_than") -> float:
    """Seconds in a duration such as ``30d``, ``12h``, ``1w2d``, ``90m``, ``3600s`` or ``3600``."""
    value = str(text).strip().lower()
    if value.isdigit():
        return float(value)
    position = 0
    total = 0
    for match in _DURATION.finditer(value):
        if match.start() != position and value[position:match.start()].strip():
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if not value or position == 0 or value[position:].strip():
        raise InvalidInput(
            "%s: %r is not a duration; use numbers with units w, d, h, m, s such as 30d, 12h or 1d12h"
            % (option, text))
    return float(total)


def count(value: int | None, option: str) -> int | None:
    if value is not None and value < 0:
        raise InvalidInput("%s must be 0 or more, not %d" % (option, value))
    return value


def registry_url(value: str) -> str:
    parts = urllib.parse.urlsplit(value or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput("registry_url %r must be an http:// or https:// URL such as https://registry.example.com"
                           % (value,))
    return value.rstrip("/")
