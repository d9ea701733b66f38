# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Directory users: passwords checked against LDAP or Active Directory, directory groups
mapped to Dockyard groups (docs/identity.md).

Two ways to find the user: a service account searches ``user_base`` with ``user_filter``
(``{user}`` is the login name, filter-escaped), then the user's own DN binds with the
password; or ``bind_template`` (``{user}`` DN-escaped) binds directly. Groups come from
the entry's ``memberOf`` or a search of ``group_base`` with ``group_filter`` (``{dn}``,
``{user}``, both escaped). Only groups named in ``group_map`` (by name or DN, any case)
count, under the Dockyard group names they map to.

The connection is always protected: ``ldaps://``, or ``ldap://`` with StartTLS, with
certificate and host name checks. An empty password is refused before any bind (LDAP
would take it for an unauthenticated bind and answer success). Successes are remembered
for ``cache_ttl`` seconds under an HMAC of name and password (never the password); so a
user removed from a group keeps its rights at most that long.
"""
from __future__ import annotations

import os
import socket
import ssl
import typing as t
import urllib.parse

from . import _accounts
from .accounts import SuccessCache

try:
    import ldap3
    from ldap3.core import exceptions as ldap_exceptions
    from ldap3.utils.conv import escape_filter_chars
    from ldap3.utils.dn import escape_rdn
    HAS_LDAP3 = True
except ImportError:  # the role installs python3-ldap3 when a directory is configured
    HAS_LDAP3 = False

SETTINGS = {"url", "start_tls", "ca_file", "bind_dn", "bind_template", "user_base", "user_filter",
            "group_source", "group_base", "group_filter", "group_name_attribute", "group_map", "timeout",
            "cache_ttl"}
GROUP_SOURCES = ("memberof", "search")
MAX_LOGIN = 256
MAX_GROUPS = 1000


class Unavailable(Exception):
    """The directory cannot be asked (down, TLS, service account refused): fail closed."""


def check_settings(settings: dict, bind_password: str) -> dict:
    """Validated settings with defaults; ValueError names what is wrong."""
    if not HAS_LDAP3:
        raise ValueError("a directory is configured but the Python library ldap3 is missing (Debian: python3-ldap3)")
    unknown = set(settings) - SETTINGS
    if unknown:
        raise ValueError("ldap: unknown settings %s" % ", ".join(sorted(unknown)))
    result = {"start_tls": False, "ca_file": "", "bind_dn": "", "bind_template": "", "user_base": "",
              "user_filter": "", "group_source": "memberof", "group_base": "", "group_filter": "",
              "group_name_attribute": "cn", "group_map": {}, "timeout": 5, "cache_ttl": 60}
    result.update(settings)
    url = urllib.parse.urlsplit(str(result.get("url") or ""))
    if url.scheme not in ("ldaps", "ldap") or not url.hostname or url.path not in ("", "/"):
        raise ValueError("ldap: url must be ldaps://HOST[:PORT] or ldap://HOST[:PORT], not %r" % result.get("url"))
    if url.scheme == "ldap" and result["start_tls"] is not True:
        raise ValueError("ldap: an ldap:// url needs start_tls: true (passwords never travel in clear)")
    if bool(result["bind_template"]) == bool(result["user_filter"]):
        raise ValueError("ldap: set either user_filter (with bind_dn and user_base) or bind_template")
    if result["user_filter"]:
        if "{user}" not in result["user_filter"] or not result["user_base"] or not result["bind_dn"]:
            raise ValueError("ldap: user_filter needs {user}, user_base and bind_dn")
        if not bind_password:
            raise ValueError("ldap: bind_dn needs the service account's password")
    elif "{user}" not in result["bind_template"]:
        raise ValueError("ldap: bind_template needs {user}")
    if result["group_source"] not in GROUP_SOURCES:
        raise ValueError("ldap: group_source must be one of %s" % ", ".join(GROUP_SOURCES))
    if result["group_source"] == "search" and not (result["group_base"] and result["group_filter"]):
        raise ValueError("ldap: group_source search needs group_base and group_filter")
    group_map = result["group_map"]
    if not isinstance(group_map, dict) or not all(isinstance(key, str) and key for key in group_map):
        raise ValueError("ldap: group_map maps directory group names or DNs to Dockyard group names")
    try:
        # Directory names compare in any case: {lower-case name or DN: (Dockyard groups...)}.
        result["group_map"] = {key.lower(): tuple(_accounts.check_group_name(name) for name in
                                                  (value if isinstance(value, list) else [value]))
                               for key, value in group_map.items()}
    except _accounts.InvalidValue as exc:
        raise ValueError("ldap: group_map: %s" % exc) from None
    for name, low, high in (("timeout", 1, 60), ("cache_ttl", 0, 3600)):
        value = result[name]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError("ldap: %s must be %d-%d seconds, not %r" % (name, low, high, value))
    if result["ca_file"] and not os.access(result["ca_file"], os.R_OK):
        raise ValueError("ldap: ca_file %s cannot be read" % result["ca_file"])
    result["url"] = "%s://%s" % (url.scheme, url.netloc)
    return result


def group_name(value: str, attribute: str) -> str:
    """The name of a group DN: the value of its first RDN when that is ``attribute``."""
    try:
        first = ldap3.utils.dn.parse_dn(value)[0]
    except (ldap_exceptions.LDAPInvalidDnError, IndexError):
        return value
    return first[1] if first[0].lower() == attribute.lower() else value


class Directory:
    def __init__(self, settings: dict, bind_password: str = "", server_factory: t.Optional[t.Callable] = None,
                 connection_factory: t.Optional[t.Callable] = None) -> None:
        self.settings = check_settings(settings, bind_password)
        self._bind_password = bind_password
        self._server_factory = server_factory or self._server
        self._connection_factory = connection_factory or ldap3.Connection
        self.cache = SuccessCache(self.settings["cache_ttl"])

    def _server(self) -> t.Any:
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, version=ssl.PROTOCOL_TLS_CLIENT,
                        ca_certs_file=self.settings["ca_file"] or None)
        return ldap3.Server(self.settings["url"], use_ssl=self.settings["url"].startswith("ldaps:"), tls=tls,
                            connect_timeout=self.settings["timeout"], get_info=ldap3.NONE)

    def _bind(self, user_dn: str, password: str) -> t.Any:
        """A bound connection, None when the directory says the credentials are wrong."""
        connection = self._connection_factory(self._server_factory(), user=user_dn, password=password,
                                              receive_timeout=self.settings["timeout"], raise_exceptions=False,
                                              auto_referrals=False)
        connection.open()
        if getattr(connection, "socket", None) is not None:
            # Each LDAP message is a small TLS record: without this, Nagle's algorithm and the
            # peer's delayed ACK add 40 ms to every bind (measured: 48 ms -> 5.5 ms per bind).
            connection.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.settings["start_tls"] and not connection.start_tls():
            connection.unbind()
            raise Unavailable("StartTLS failed: %s" % (connection.result or {}).get("description", "no answer"))
        if connection.bind():
            return connection
        result = connection.result or {}
        connection.unbind()
        if result.get("description") == "invalidCredentials":
            return None
        raise Unavailable("bind refused: %s" % (result.get("description") or "no answer"))

    def _search(self, connection: t.Any, base: str, search_filter: str, attributes: list, scope: t.Any) -> list:
        if not connection.search(base, search_filter, search_scope=scope, attributes=attributes,
                                 size_limit=MAX_GROUPS, time_limit=self.settings["timeout"]):
            description = (connection.result or {}).get("description")
            if description not in ("success", "noSuchObject", None):
                raise Unavailable("search in %s failed: %s" % (base, description))
        return [entry for entry in connection.response or () if entry.get("type") == "searchResEntry"]

    def _groups(self, connection: t.Any, user_dn: str, login: str, entry: t.Optional[dict]) -> tuple:
        attribute = self.settings["group_name_attribute"]
        if self.settings["group_source"] == "memberof":
            if entry is None:
                found = self._search(connection, user_dn, "(objectClass=*)", ["memberOf"], ldap3.BASE)
                entry = found[0] if found else {}
            values = (entry.get("attributes") or {}).get("memberOf") or []
            names = [(value, group_name(value, attribute)) for value in values]
        else:
            search_filter = self.settings["group_filter"].format(dn=escape_filter_chars(user_dn),
                                                                 user=escape_filter_chars(login))
            found = self._search(connection, self.settings["group_base"], search_filter, [attribute], ldap3.SUBTREE)
            names = []
            for group in found:
                value = (group.get("attributes") or {}).get(attribute)
                value = value[0] if isinstance(value, list) and value else value
                names.append((group.get("dn", ""), value if isinstance(value, str) else group.get("dn", "")))
        group_map = self.settings["group_map"]
        groups: set = set()
        for dn, name in names:
            groups.update(group_map.get(str(dn).lower(), ()) or group_map.get(str(name).lower(), ()))
        return tuple(sorted(groups))

    def _lookup(self, login: str, password: str) -> tuple:
        """(groups, reason) from the directory; groups None when the credentials are wrong."""
        settings = self.settings
        try:
            if settings["bind_template"]:
                user_dn = settings["bind_template"].format(user=escape_rdn(login))
                connection = self._bind(user_dn, password)
                if connection is None:
                    return None, "wrong credentials"
                try:
                    return self._groups(connection, user_dn, login, None), ""
                finally:
                    connection.unbind()
            service = self._bind(settings["bind_dn"], self._bind_password)
            if service is None:
                raise Unavailable("the service account's bind was refused (invalidCredentials)")
            try:
                search_filter = settings["user_filter"].format(user=escape_filter_chars(login))
                entries = self._search(service, settings["user_base"], search_filter, ["memberOf"]
                                       if settings["group_source"] == "memberof" else [], ldap3.SUBTREE)
                if len(entries) != 1:
                    return None, "unknown directory user" if not entries else "ambiguous directory user"
                user_dn = entries[0]["dn"]
                connection = self._bind(user_dn, password)
                if connection is None:
                    return None, "wrong credentials"
                connection.unbind()
                return self._groups(service, user_dn, login, entries[0]), ""
            finally:
                service.unbind()
        except (ldap_exceptions.LDAPException, OSError) as exc:  # OSError: ssl and socket errors ldap3 lets through
            raise Unavailable("%s: %s" % (type(exc).__name__, exc)) from None

    def authenticate(self, login: str, password: str) -> tuple:
        """(groups or None, from_cache, reason); raises Unavailable when the directory cannot answer."""
        if not password or not login or len(login) > MAX_LOGIN or any(ord(char) < 32 for char in login):
            return None, False, "wrong credentials"
        groups = self.cache.get(login, password)
        if groups is not None:
            return groups, True, ""
        groups, reason = self._lookup(login, password)
        if groups is not None:
            self.cache.put(groups, login, password)
        return groups, False, reason
