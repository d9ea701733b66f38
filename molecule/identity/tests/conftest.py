"""The identity scenario's instances and its identity provider's controls.

The identity provider (prepare.yml) holds, under dc=dockyard,dc=test:
  ou=people    carol, dave, erin (inetOrgPerson, passwords in USERS)
  ou=services  cn=dockyard, the token service's bind (reads everything but userPassword)
  ou=groups    "Registry Team A" (carol, dave), "registry-readers" (erin, carol): groupOfNames,
               shown on the members as memberOf
and two OIDC issuers, issuer_url("ci") (keys ci-1 RS256, ci-es ES256) and issuer_url("other")
(other-1 RS256). Checks that change memberships or keys put them back.
"""
from __future__ import annotations

import json
import pathlib
import shlex
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))

from registry_checks import Instance, instance_name, scenario_instance  # noqa: E402  pylint: disable=wrong-import-position

IDP = instance_name("idp")
ADMIN = ("admin", "molecule-admin-secret")
ROBOT = "robot$ci"
BASE_DN = "dc=dockyard,dc=test"
PEOPLE = f"ou=people,{BASE_DN}"
GROUPS = f"ou=groups,{BASE_DN}"
USERS = {"carol": "molecule-carol-secret", "dave": "molecule-dave-secret", "erin": "molecule-erin-secret"}
LDAP_ADMIN = (f"cn=admin,{BASE_DN}", "molecule-ldap-admin")
LDAP_BIND = (f"cn=dockyard,ou=services,{BASE_DN}", "molecule-ldap-bind")
# On the registry host: the fixture CA alone (the system store trusts it as well).
IDP_CA = "/etc/dockyard-idp-ca.pem"
# On the identity provider: one line per request, "TIME METHOD PATH STATUS".
OIDC_REQUESTS = "/var/lib/oidc-issuer/requests.log"


def issuer_url(issuer: str) -> str:
    return f"https://{IDP}:8443/{issuer}"


def user_dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE}"


@pytest.fixture(scope="session")
def registry() -> Instance:
    """The token-mode registry; its checks' clients (skopeo, curl, ldap-utils, PyJWT) run here."""
    return scenario_instance("identity")


@pytest.fixture(scope="session")
def idp() -> Instance:
    """slapd and oidc-issuer."""
    return scenario_instance("idp")


def mint(idp: Instance, issuer: str = "ci", kid: str = "ci-1", **options: object) -> str:
    """An ID token from `oidc-issuer mint` (molecule/identity/oidc_issuer.py).

    Options are mint's, with underscores: claims (a dict, merged over iss, aud, sub, iat,
    nbf, exp), aud, iss, exp_in, iat_ago, nbf_in, drop (a list of claims), alg (none,
    HS256-with-public-key, RS256, ES256: forgeries), sign_with_kid, kid_header."""
    arguments = [f"--issuer {shlex.quote(issuer)} --kid {shlex.quote(kid)}"]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if name == "claims":
            value = json.dumps(value)
        values = value if isinstance(value, list) else [value]
        arguments += [f"{flag} {shlex.quote(str(item))}" for item in values]
    return idp.run(f"oidc-issuer mint {' '.join(arguments)}").stdout.strip()


def keygen(idp: Instance, issuer: str, kid: str, alg: str = "RS256") -> None:
    """Publish a new signing key at once (the JWKS is read anew for every request)."""
    idp.run(f"oidc-issuer keygen --issuer {issuer} --kid {kid} --alg {alg}")


def remove_key(idp: Instance, issuer: str, kid: str) -> None:
    """Unpublish (delete) a signing key."""
    idp.run(f"oidc-issuer remove --issuer {issuer} --kid {kid}")


def jwks_requests(idp: Instance, issuer: str) -> int:
    """How often the issuer's JWKS has been fetched since prepare."""
    return int(idp.run(f"grep -c ' GET /{issuer}/jwks ' {OIDC_REQUESTS}", ok=False).stdout.strip() or 0)


def ldap_modify(idp: Instance, ldif: str, *, done: tuple[int, ...] = ()) -> int:
    """Apply an LDIF as the directory's admin over ldapi (on the identity provider).

    Return codes in `done` mean "already so" (20: the value exists, 16: it does not,
    68: the entry exists, 32: no such entry). By hand, on the identity provider:
        ldapmodify -x -H ldapi:/// -D cn=admin,dc=dockyard,dc=test -w molecule-ldap-admin <<EOF
        dn: cn=Registry Team A,ou=groups,dc=dockyard,dc=test
        changetype: modify
        add: member
        member: uid=erin,ou=people,dc=dockyard,dc=test
        EOF"""
    result = idp.run(f"printf '%s' {shlex.quote(ldif)} | ldapmodify -x -H ldapi:/// "
                     f"-D {shlex.quote(LDAP_ADMIN[0])} -w {shlex.quote(LDAP_ADMIN[1])}", ok=False)
    assert result.rc in (0, *done), f"ldapmodify failed ({result.rc}): {result.stderr}\n{ldif}"
    return result.rc


def set_member(idp: Instance, group_cn: str, uid: str, present: bool) -> None:
    """Make a user a member of a group or not (idempotent). The memberOf of the user follows
    at once. A groupOfNames needs one member: removing the last one fails."""
    ldap_modify(idp, f"dn: cn={group_cn},{GROUPS}\nchangetype: modify\n"
                     f"{'add' if present else 'delete'}: member\nmember: {user_dn(uid)}\n",
                done=(20,) if present else (16,))


def ldap_stop(idp: Instance) -> None:
    idp.run("systemctl stop slapd")


def ldap_start(idp: Instance) -> None:
    idp.run("systemctl start slapd")
    idp.wait_until("ldapwhoami -x -H ldapi:/// >/dev/null 2>&1")


def issuer_stop(idp: Instance) -> None:
    idp.run("systemctl stop oidc-issuer")


def issuer_start(idp: Instance) -> None:
    idp.run("systemctl start oidc-issuer")
    idp.wait_until(f"curl -sf --cacert /etc/ldap/tls/ca.crt -o /dev/null {issuer_url('ci')}/.well-known/openid-configuration")
