"""Enterprise identity with real parts: directory users from slapd, CI jobs with OIDC identity
tokens from a test issuer, both through the real gateway and token service, clients in the
registry instance (skopeo, curl). The scenario's settings: molecule/identity/molecule.yml."""
from __future__ import annotations

import json
import shlex
import time

import pytest
from conftest import ADMIN, IDP, IDP_CA, ROBOT, USERS, keygen, ldap_start, ldap_stop, mint, remove_key, set_member

from registry_checks import Instance, assert_check_mode_changes_nothing, claims, saved_robot, token, try_push, wait_for

AUDIT = "/var/log/dockyard/token/audit.jsonl"
# token_service__ldap.cache_ttl in molecule.yml: the longest a removed membership keeps working.
LDAP_CACHE_TTL = 5
CAROL = ("carol", USERS["carol"])
DAVE = ("dave", USERS["dave"])
ERIN = ("erin", USERS["erin"])
JOB_CLAIMS = {"project_path": "team-a/app", "ref_protected": "true"}


@pytest.fixture(scope="module")
def robot_secret(registry) -> str:
    return saved_robot(registry.name, ROBOT)[1]


def granted(registry: Instance, creds: tuple[str, str], *scopes: str) -> list[str]:
    """The scopes a token request with these credentials is granted; fails unless it is 200."""
    status, body = token(registry, creds, *scopes)
    assert status == 200, (status, body)
    return sorted(f"{item['type']}:{item['name']}:{','.join(sorted(item['actions']))}"
                  for item in claims(body["token"])["access"])


def last_audit(registry: Instance, account: str) -> dict:
    lines = [json.loads(line) for line in registry.run(f"tail -n 50 {AUDIT}").stdout.splitlines()]
    return [line for line in lines if line.get("event") == "token" and line.get("account") == account][-1]


# --- directory users ---------------------------------------------------------------------

def test_a_directory_user_pushes_where_their_group_may_and_nowhere_else(registry):
    assert try_push(registry, CAROL, "team-a/ldap:1", "carol-team-a").rc == 0
    assert try_push(registry, CAROL, "team-b/ldap:1", "carol-team-b").rc != 0
    # erin is in registry-readers only: pull on team-a, no push.
    assert granted(registry, ERIN, "repository:team-a/ldap:pull,push") == ["repository:team-a/ldap:pull"]
    line = last_audit(registry, "erin")
    assert line["source"] == "ldap" and line["groups"] == ["readers"] and line["subject"] == "user:erin"
    assert USERS["erin"] not in registry.run(f"cat {AUDIT}").stdout


def test_removed_from_the_group_refused_once_the_cache_expires(registry, idp):
    scope = "repository:team-a/ldap:push"
    assert granted(registry, DAVE, scope) == ["repository:team-a/ldap:push"]
    set_member(idp, "Registry Team A", "dave", False)
    try:
        removed_at = time.monotonic()
        refused = wait_for(lambda: granted(registry, DAVE, scope) == [], LDAP_CACHE_TTL + 20)
        assert refused, "dave kept push after leaving the group"
        # Both workers may have remembered dave; neither past the TTL.
        time.sleep(max(0.0, LDAP_CACHE_TTL + 1 - (time.monotonic() - removed_at)))
        assert all(granted(registry, DAVE, scope) == [] for _attempt in range(4))
    finally:
        set_member(idp, "Registry Team A", "dave", True)


def test_a_wrong_directory_password_is_401_and_counted(registry):
    status, _body = token(registry, ("carol", "not-carols-password"))
    assert status == 401
    line = last_audit(registry, "carol")
    assert line["result"] == "unauthorized" and line["reason"] == "wrong credentials"
    assert line["failures"]["address+account"] >= 1, line


@pytest.mark.parametrize("login", ["*", "carol)(uid=*", "*)(|(objectClass=*"])
def test_an_injection_in_the_user_name_finds_nothing(registry, login):
    # Unescaped, "(uid=*)" would find carol first and bind with her password.
    status, _body = token(registry, (login, USERS["carol"]))
    assert status == 401
    assert last_audit(registry, login)["reason"] == "unknown directory user"


def test_directory_down_local_robot_still_pushes_directory_users_refused(registry, idp, robot_secret):
    time.sleep(LDAP_CACHE_TTL + 1)  # nothing of carol's left in the cache
    ldap_stop(idp)
    try:
        assert try_push(registry, (ROBOT, robot_secret), "local/during-ldap-outage:1", "ldap-outage").rc == 0
        assert token(registry, ADMIN)[0] == 200
        status, body = token(registry, CAROL)
        assert status == 503 and body["errors"][0]["message"] == "ldap unavailable"
        line = last_audit(registry, "carol")
        assert line["result"] == "error" and line["source"] == "ldap" and line["reason"], line
    finally:
        ldap_start(idp)
    assert wait_for(lambda: token(registry, CAROL)[0] == 200, 15)


# The service's own directory code against the real slapd, in the other layouts and transports
# the role supports (the converged service uses LDAPS, a search and memberOf).
LAYOUT_CHECK = """
import json, sys
sys.path.insert(0, "/usr/lib/dockyard-token")
from dockyard_token import directory
settings, login, password = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
try:
    print(json.dumps(directory.Directory(settings, "molecule-ldap-bind").authenticate(login, password)[::2]))
except directory.Unavailable as exc:
    print(json.dumps(["unavailable", str(exc)]))
"""
LAYOUTS = {
    "starttls, group search": {"url": f"ldap://{IDP}", "start_tls": True, "group_source": "search",
                               "group_base": "ou=groups,dc=dockyard,dc=test",
                               "group_filter": "(&(objectClass=groupOfNames)(member={dn}))"},
    "bind template, memberOf": {"bind_template": "uid={user},ou=people,dc=dockyard,dc=test", "bind_dn": "",
                                "user_filter": "", "user_base": ""},
}


def layout(registry: Instance, change: dict, login: str, password: str) -> list:
    settings = {"url": f"ldaps://{IDP}", "ca_file": IDP_CA, "bind_dn": "cn=dockyard,ou=services,dc=dockyard,dc=test",
                "user_base": "ou=people,dc=dockyard,dc=test", "user_filter": "(&(objectClass=inetOrgPerson)(uid={user}))",
                "group_map": {"Registry Team A": "team-a", "registry-readers": "readers"}, "cache_ttl": 0, **change}
    return json.loads(registry.run(f"python3 -c {shlex.quote(LAYOUT_CHECK)} {shlex.quote(json.dumps(settings))} "
                                   f"{shlex.quote(login)} {shlex.quote(password)}").stdout)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_other_directory_layouts_and_starttls_with_the_real_directory(registry, name):
    assert layout(registry, LAYOUTS[name], *CAROL) == [["readers", "team-a"], ""]
    assert layout(registry, LAYOUTS[name], "carol", "wrong") == [None, "wrong credentials"]
    assert layout(registry, LAYOUTS[name], "carol,ou=people", USERS["carol"])[0] is None
    # Another CA than the one that signed slapd's certificate: refused, never sent a password.
    untrusted = layout(registry, dict(LAYOUTS[name], ca_file="/etc/ssl/certs/ISRG_Root_X1.pem"), *CAROL)
    assert untrusted[0] == "unavailable", untrusted


# --- workload identity (OIDC) --------------------------------------------------------------

def test_a_job_pushes_to_its_repository_only(registry, idp):
    job = ("oidc", mint(idp, claims=JOB_CLAIMS))
    assert try_push(registry, job, "team-a/app/web:1", "job-web").rc == 0
    assert try_push(registry, job, "team-a/other:1", "job-other").rc != 0
    assert granted(registry, ("oidc", mint(idp, kid="ci-es", claims=JOB_CLAIMS)),
                   "repository:team-a/app/api:push") == ["repository:team-a/app/api:push"]
    line = last_audit(registry, "oidc")
    assert line["source"] == "oidc" and line["issuer"] == "ci"
    assert line["sub"] == "project_path:team-a/app:ref_type:branch:ref:main"
    assert line["matched"] == [JOB_CLAIMS]
    assert registry.run(f"grep -c -- {shlex.quote(job[1][-40:])} {AUDIT}", ok=False).stdout.strip() == "0"


FORGERIES = {
    "wrong issuer": ({"iss": "https://evil.dockyard.test/ci"}, "is not trusted"),
    "wrong audience": ({"aud": "another-registry"}, "audience does not include"),
    "expired": ({"exp_in": -120}, "token expired"),
    "too old": ({"iat_ago": 900}, "token older than 600 s"),
    "alg none": ({"alg": "none"}, "algorithm 'none' is not accepted"),
    "HS256 signed with the public key": ({"alg": "HS256-with-public-key"}, "algorithm 'HS256' is not accepted"),
    "unknown kid": ({"kid_header": "no-such-key"}, "no key of issuer ci matches kid 'no-such-key'"),
    "claims that do not match": ({"claims": dict(JOB_CLAIMS, ref_protected="false")}, "no rule of issuer ci"),
    "second issuer's token for the first's rules": ({"issuer": "other", "kid": "other-1", "claims": JOB_CLAIMS},
                                                    "no rule of issuer other"),
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_forged_or_wrong_job_tokens_are_refused(registry, idp, forgery):
    options, reason = FORGERIES[forgery]
    options = dict(options)
    options.setdefault("claims", JOB_CLAIMS)
    status, _body = token(registry, ("oidc", mint(idp, **options)), "repository:team-a/app/web:push")
    assert status == 401
    line = last_audit(registry, "oidc")
    assert line["result"] == "unauthorized" and reason in line["reason"], line


def test_jwks_rotation_is_picked_up_without_a_restart(registry, idp):
    pid = registry.main_pid("dockyard-token.service")
    keygen(idp, "ci", "ci-2")
    new_job = ("oidc", mint(idp, kid="ci-2", claims=JOB_CLAIMS))
    scope = "repository:team-a/app/web:push"
    # A token with a new kid makes each worker fetch the JWKS early (at most every 10 s).
    assert wait_for(lambda: all(token(registry, new_job, scope)[0] == 200 for _attempt in range(4)), 40)
    old_job = ("oidc", mint(idp, kid="ci-1", claims=JOB_CLAIMS))
    assert token(registry, old_job, scope)[0] == 200
    remove_key(idp, "ci", "ci-1")
    try:
        # Signed before the removal, presented after it: refused once every worker refreshed.
        assert wait_for(lambda: all(token(registry, old_job, scope)[0] == 401 for _attempt in range(4)), 40)
        assert "no key of issuer ci matches kid 'ci-1'" in last_audit(registry, "oidc")["reason"]
        assert token(registry, new_job, scope)[0] == 200
    finally:
        keygen(idp, "ci", "ci-1")
        remove_key(idp, "ci", "ci-2")
    assert registry.main_pid("dockyard-token.service") == pid, "rotation needed no restart"


def test_identity_settings_leave_check_mode_clean_and_the_bind_password_unlogged(registry):
    assert_check_mode_changes_nothing("molecule-ldap-bind")
    secret = registry.host.file("/etc/dockyard/token/ldap.secret")
    assert secret.mode == 0o640 and secret.user == "root" and secret.group == "dockyard-token"
