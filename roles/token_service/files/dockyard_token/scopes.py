# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse the ``scope`` parameter and the Basic ``Authorization`` header, in linear time.

Scope grammar (Distribution token spec)::

    scope         := resourcescope [ ' ' resourcescope ]*
    resourcescope := resourcetype ":" resourcename ":" action [ ',' action ]*
    resourcetype  := /[a-z0-9]+/ [ '(' /[a-z0-9]+/ ')' ]
    resourcename  := [ hostname '/' ] component [ '/' component ]*

The resource name may itself hold a ':' (``host:5000/name``), so a scope is split at
its FIRST ':' (type) and its LAST ':' (actions). A regex transcribed from the grammar
(``component := alnum (separator alnum)*`` with ``separator := [-]*``) backtracks
exponentially in Python's engine; the small regexes below cannot, and every input is
bounded in length before any of them runs.
"""
from __future__ import annotations

import base64
import binascii
import functools
import re
import typing as t

MAX_SCOPES = 32
MAX_SCOPE_LENGTH = 512
MAX_NAME_LENGTH = 255  # Distribution's reference.NameTotalLengthMax
MAX_AUTHORIZATION_LENGTH = 12288

_TYPE_RE = re.compile(r"([a-z0-9]+)(?:\(([a-z0-9]+)\))?\Z")
_ACTION_RE = re.compile(r"(?:[a-z]*|\*)\Z")
# No two quantified parts can match the same characters, so no backtracking blow-up.
_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_HOST_PART_RE = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?\Z")
_PORT_RE = re.compile(r"[0-9]{1,5}\Z")


class RequestError(ValueError):
    """The request is malformed: answered with 400."""


class CredentialsError(ValueError):
    """The Authorization header is unusable: answered with 401."""


class Scope(t.NamedTuple):
    type: str
    resource_class: str
    name: str
    actions: tuple

    def __str__(self) -> str:
        kind = "%s(%s)" % (self.type, self.resource_class) if self.resource_class else self.type
        return "%s:%s:%s" % (kind, self.name, ",".join(self.actions))


def _valid_host(text: str) -> bool:
    host, sep, port = text.partition(":")
    if sep and not _PORT_RE.match(port):
        return False
    return all(_HOST_PART_RE.match(part) for part in host.split("."))


def valid_repository_name(name: str) -> bool:
    if not name or len(name) > MAX_NAME_LENGTH:
        return False
    components = name.split("/")
    # The grammar is ambiguous ("a.b/c" is a host or a path component): either reading will do.
    if all(_COMPONENT_RE.match(component) for component in components[1:]):
        if _COMPONENT_RE.match(components[0]):
            return True
        return len(components) > 1 and _valid_host(components[0])
    return False


@functools.lru_cache(maxsize=4096)
def parse_scope(text: str) -> Scope:
    """One ``type:name:actions`` scope; raises RequestError. Valid ones are remembered (clients
    ask for the same few scopes again and again)."""
    if len(text) > MAX_SCOPE_LENGTH:
        raise RequestError("scope longer than %d characters" % MAX_SCOPE_LENGTH)
    kind, sep1, rest = text.partition(":")
    name, sep2, action_text = rest.rpartition(":")
    if not sep1 or not sep2:
        raise RequestError("scope %r is not TYPE:NAME:ACTIONS" % text[:80])
    type_match = _TYPE_RE.match(kind)
    if not type_match:
        raise RequestError("scope %r has an invalid resource type" % text[:80])
    actions: list = []
    for action in action_text.split(","):
        if not _ACTION_RE.match(action):
            raise RequestError("scope %r has an invalid action" % text[:80])
        if action and action not in actions:
            actions.append(action)
    resource_type, resource_class = type_match.group(1), type_match.group(2) or ""
    if resource_type == "repository":
        if not valid_repository_name(name):
            raise RequestError("scope %r has an invalid repository name" % text[:80])
    elif not name or len(name) > MAX_NAME_LENGTH or any(char.isspace() for char in name):
        raise RequestError("scope %r has an invalid resource name" % text[:80])
    return Scope(resource_type, resource_class, name, tuple(actions))


def parse_scopes(values: t.Iterable[str]) -> list:
    """All ``scope`` query values (each may hold several space-separated scopes)."""
    scopes: list = []
    for value in values:
        for text in value.split(" "):
            if not text:
                continue
            if len(scopes) == MAX_SCOPES:
                raise RequestError("more than %d scopes" % MAX_SCOPES)
            scopes.append(parse_scope(text))
    return scopes


def parse_basic(header: t.Optional[str]) -> t.Optional[tuple]:
    """``(account, password)`` from ``Basic base64(account:password)``; None without a header.

    Raises CredentialsError for any other scheme or a malformed value.
    """
    if header is None or header == "":
        return None
    if len(header) > MAX_AUTHORIZATION_LENGTH:
        raise CredentialsError("Authorization header too long")
    scheme, _sep, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise CredentialsError("only Basic credentials are accepted")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise CredentialsError("malformed Basic credentials") from None
    account, sep, password = decoded.partition(":")
    if not sep or not account or not password:
        raise CredentialsError("malformed Basic credentials")
    return account, password
