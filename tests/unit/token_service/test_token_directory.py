"""Directory users: LDAP binds, group mapping, filter escaping, the cache, fail-closed (ldap3's mock server)."""
from __future__ import annotations

import functools
import json
import ssl
import time

import ldap3
import pytest
from ldap3.core.exceptions import LDAPSocketOpenError

from token_fixtures import basic, call
from dockyard_token import directory
from dockyard_token.app import TokenService, check_config

BASE = "dc=dockyard,dc=test"
PEOPLE = "ou=people," + BASE
TEAM_A = "cn=Registry Team A,ou=groups," + BASE
READERS = "cn=registry-readers,ou=groups," + BASE
SETTINGS = {"url": "ldaps://ldap.example.test", "bind_dn": "cn=dockyard,ou=services," + BASE, "user_base": PEOPLE,
            "user_filter": "(&(objectClass=inetOrgPerson)(uid={user}))", "group_source": "memberof",
            "group_map": {"Registry Team A": "team-a", READERS.upper(): ["readers", "auditors"]}, "cache_ttl": 5}


class FakeDirectory:
    """ldap3's mock server with a small tree, and the filters and binds the code sends."""

    def __init__(self):
        self.server = ldap3.Server("fake-ldap")
        self.filters, self.binds = [], []
        self.down = False
        admin = self.connection(user="cn=dockyard,ou=services," + BASE, password="bind-pw")
        admin.strategy.add_entry("cn=dockyard,ou=services," + BASE, {"userPassword": "bind-pw", "cn": "dockyard"})
        for uid, groups in (("carol", [TEAM_A, READERS]), ("dave", [TEAM_A]), ("erin", [])):
            admin.strategy.add_entry("uid=%s,%s" % (uid, PEOPLE), {
                "uid": uid, "userPassword": uid + "-pw", "objectClass": ["inetOrgPerson"], "memberOf": groups})
        admin.strategy.add_entry("cn=Registry Team A,ou=groups," + BASE, {
            "cn": "Registry Team A", "objectClass": ["groupOfNames"],
            "member": ["uid=carol," + PEOPLE, "uid=dave," + PEOPLE]})
        admin.bind()
        self.admin = admin

    def connection(self, server=None, **options):
        if self.down:
            raise LDAPSocketOpenError("socket connection error while opening: [Errno 111] Connection refused")
        self.binds.append(options.get("user"))
        connection = ldap3.Connection(server or self.server, client_strategy=ldap3.MOCK_SYNC,
                                      **{key: value for key, value in options.items() if key != "receive_timeout"})
        search = connection.search

        def recording_search(base, search_filter, **kwargs):
            self.filters.append(search_filter)
            return search(base, search_filter, **kwargs)
        connection.search = recording_search
        return connection

    def make(self, **changes) -> directory.Directory:
        return directory.Directory(dict(SETTINGS, **changes), "bind-pw", server_factory=lambda: self.server,
                                   connection_factory=self.connection)


@pytest.fixture
def fake():
    return FakeDirectory()


def test_a_directory_user_gets_the_mapped_groups_only(fake):
    groups, cached, reason = fake.make().authenticate("carol", "carol-pw")
    assert (groups, cached, reason) == (("auditors", "readers", "team-a"), False, "")
    assert fake.binds[-2:] == ["cn=dockyard,ou=services," + BASE, "uid=carol," + PEOPLE]
    assert fake.make().authenticate("erin", "erin-pw")[0] == ()


@pytest.mark.parametrize("login,password,reason", [
    ("carol", "wrong", "wrong credentials"),
    ("nobody", "x", "unknown directory user"),
    ("carol", "", "wrong credentials"),
])
def test_wrong_credentials(fake, login, password, reason):
    assert fake.make().authenticate(login, password) == (None, False, reason)


def test_an_empty_password_never_reaches_the_directory(fake):
    # An LDAP bind with a DN and no password is an "unauthenticated bind": servers answer success.
    fake.binds.clear()
    assert fake.make().authenticate("carol", "")[0] is None
    assert fake.binds == []


@pytest.mark.parametrize("login", ["*", "carol)(uid=*", "*)(|(uid=*", "carol\\", "c*", "carol)(objectClass=*"])
def test_filter_injection_finds_nothing(fake, login):
    # Unescaped, "*" would match every user and the bind with carol's password would succeed.
    assert fake.make().authenticate(login, "carol-pw") == (None, False, "unknown directory user")
    sent = fake.filters[-1]
    assert sent.startswith("(&(objectClass=inetOrgPerson)(uid=") and "*" not in sent[len("(&(objectClass=inetOrgPerson)(uid="):]


def test_filter_escaping_is_rfc4515():
    assert directory.escape_filter_chars("a*b(c)d\\e\0") == "a\\2ab\\28c\\29d\\5ce\\00"


def test_bind_template_escapes_the_dn(fake):
    found = fake.make(user_filter="", bind_dn="", bind_template="uid={user}," + PEOPLE)
    assert found.authenticate("carol", "carol-pw")[0] == ("auditors", "readers", "team-a")
    fake.binds.clear()
    assert found.authenticate("carol,ou=people", "carol-pw")[0] is None
    assert fake.binds == ["uid=carol\\,ou\\=people," + PEOPLE]


def test_group_search_escapes_the_dn(fake):
    found = fake.make(group_source="search", group_base="ou=groups," + BASE,
                      group_filter="(&(objectClass=groupOfNames)(member={dn}))")
    assert found.authenticate("dave", "dave-pw")[0] == ("team-a",)
    assert fake.filters[-1] == "(&(objectClass=groupOfNames)(member=uid=dave,ou=people,dc=dockyard,dc=test))"


def test_two_entries_for_one_name_are_refused(fake):
    fake.admin.strategy.add_entry("uid=carol,ou=contractors," + PEOPLE, {
        "uid": "carol", "userPassword": "other-pw", "objectClass": ["inetOrgPerson"]})
    assert fake.make().authenticate("carol", "other-pw") == (None, False, "ambiguous directory user")


def test_successes_are_cached_for_the_ttl_only(fake, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    found = fake.make()
    assert found.authenticate("dave", "dave-pw") == (("team-a",), False, "")
    fake.admin.modify("uid=dave," + PEOPLE, {"memberOf": [(ldap3.MODIFY_REPLACE, [])]})
    assert found.authenticate("dave", "dave-pw") == (("team-a",), True, "")
    assert found.authenticate("dave", "wrong")[0] is None, "a cached success never accepts another password"
    clock[0] += SETTINGS["cache_ttl"]
    assert found.authenticate("dave", "dave-pw") == ((), False, ""), "removed from the group after the TTL"


def test_a_directory_that_is_down_fails_closed(fake):
    fake.down = True
    with pytest.raises(directory.Unavailable, match="Connection refused"):
        fake.make().authenticate("carol", "carol-pw")


def test_a_tls_error_outside_ldap3_fails_closed_too(fake):
    def broken(*_args, **_kwargs):
        raise ssl.SSLError("certificate verify failed")
    found = directory.Directory(SETTINGS, "bind-pw", server_factory=lambda: fake.server, connection_factory=broken)
    with pytest.raises(directory.Unavailable, match="SSLError"):
        found.authenticate("carol", "carol-pw")


def test_a_refused_service_account_is_unavailable_not_wrong_credentials(fake):
    found = directory.Directory(SETTINGS, "not-the-bind-pw", server_factory=lambda: fake.server,
                                connection_factory=fake.connection)
    with pytest.raises(directory.Unavailable, match="service account"):
        found.authenticate("carol", "carol-pw")


@pytest.mark.parametrize("change,message", [
    ({"url": "ldap://ldap.example.test"}, "needs start_tls: true"),
    ({"url": "http://ldap.example.test"}, "url must be ldaps://"),
    ({"user_filter": "(uid=carol)"}, "user_filter needs {user}"),
    ({"bind_template": "uid={user}," + PEOPLE}, "either user_filter"),
    ({"group_source": "search"}, "needs group_base and group_filter"),
    ({"group_source": "nested"}, "group_source must be"),
    ({"group_map": {"x": "Not A Group"}}, "group_map: group name"),
    ({"timeout": 0}, "timeout must be"),
    ({"colour": "blue"}, "unknown settings colour"),
])
def test_bad_settings_are_refused_with_a_clear_error(tmp_path, config, change, message):
    with pytest.raises(ValueError, match=message.split("(")[0]):
        directory.Directory(dict(SETTINGS, **change), "bind-pw")
    secret = tmp_path / "ldap.secret"
    secret.write_text("bind-pw\n")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(dict(config._asdict(), ldap=dict(SETTINGS, **change),
                                    ldap_bind_password_file=str(secret))))
    assert message in check_config(str(path))


@pytest.fixture
def directory_app(config, fake, monkeypatch, tmp_path):
    monkeypatch.setattr(directory.Directory, "__init__", functools.partialmethod(
        directory.Directory.__init__, server_factory=lambda: fake.server, connection_factory=fake.connection))
    secret = tmp_path / "ldap.secret"
    secret.write_text("bind-pw\n")
    return TokenService(config._replace(ldap=SETTINGS, ldap_bind_password_file=str(secret), limit_pair_failures=3))


def audit(config) -> list:
    with open(config.audit_log, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_directory_users_beside_local_accounts(directory_app, config):
    status, _headers, body = call(directory_app, "scope=repository:team-a/app:pull,push", basic("carol", "carol-pw"))
    assert status == 200
    line = audit(config)[-1]
    assert line["source"] == "ldap" and line["subject"] == "user:carol" and line["groups"] == ["auditors", "readers", "team-a"]
    assert line["granted"] == ["repository:team-a/app:pull,push"]
    assert "carol-pw" not in json.dumps(audit(config)) and body["token"]
    # Local accounts are never looked up in the directory, whatever the case of the name.
    assert call(directory_app, "", basic("alice", "alice-pw"))[0] == 200
    assert audit(config)[-1]["source"] == "local"
    assert call(directory_app, "", basic("ALICE", "carol-pw"))[0] == 401
    assert audit(config)[-1]["source"] == "local"


def test_wrong_directory_passwords_count_towards_the_limits(directory_app, config):
    statuses = [call(directory_app, "", basic("carol", "guess-%d" % attempt))[0] for attempt in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert audit(config)[-2]["failures"]


def test_directory_down_refuses_directory_users_and_keeps_local_ones(directory_app, config, fake):
    fake.down = True
    status, _headers, body = call(directory_app, "", basic("carol", "carol-pw"))
    assert status == 503 and body["errors"][0]["message"] == "ldap unavailable"
    line = audit(config)[-1]
    assert line["result"] == "error" and line["source"] == "ldap" and "Connection refused" in line["reason"]
    assert call(directory_app, "scope=repository:team-a/x:push", basic("robot$team-a+ci", "ci-secret"))[0] == 200
    assert call(directory_app, "", basic("alice", "alice-pw"))[0] == 200
