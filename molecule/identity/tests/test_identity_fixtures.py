"""The identity provider the scenario's checks rely on, seen from the registry host."""
from __future__ import annotations

import json
import shlex

import pytest
from conftest import IDP, IDP_CA, LDAP_BIND, PEOPLE, USERS, issuer_url, jwks_requests, mint, set_member, user_dn

# A CA of the system store that did not sign the fixture's certificate.
OTHER_CA = "/etc/ssl/certs/ISRG_Root_X1.pem"
VERIFY = """
import sys, jwt
token, url, issuer = sys.argv[1:]
key = jwt.PyJWKClient(url).get_signing_key_from_jwt(token).key
print(jwt.decode(token, key, algorithms=["RS256", "ES256"], audience="registry.dockyard.test", issuer=issuer)["sub"])
"""


def whoami(registry, uri: str, uid: str, password: str, ca: str = IDP_CA, extra: str = ""):
    return registry.run(f"LDAPTLS_CACERT={ca} ldapwhoami -x {extra} -H {uri} -D {shlex.quote(user_dn(uid))} "
                        f"-w {shlex.quote(password)}", ok=False)


@pytest.mark.parametrize("uri, extra", [(f"ldaps://{IDP}", ""), (f"ldap://{IDP}", "-ZZ")], ids=["ldaps", "starttls"])
def test_directory_binds_over_verified_tls(registry, uri, extra):
    result = whoami(registry, uri, "carol", USERS["carol"], extra=extra)
    assert result.rc == 0 and result.stdout.strip() == f"dn:{user_dn('carol')}", result.stderr
    assert whoami(registry, uri, "carol", "wrong", extra=extra).rc == 49  # invalid credentials
    refused = whoami(registry, uri, "carol", USERS["carol"], ca=OTHER_CA, extra=f"{extra} -d 1")
    assert refused.rc != 0 and "TLS: peer cert untrusted" in refused.stderr, refused.stderr[-2000:]


def search_as_bind_account(registry, uid: str) -> str:
    return registry.run(f"ldapsearch -LLL -x -H ldaps://{IDP} -D {shlex.quote(LDAP_BIND[0])} "
                        f"-w {LDAP_BIND[1]} -b {PEOPLE} '(uid={uid})' memberOf userPassword").stdout


def test_bind_account_reads_groups_but_no_password(registry, idp):
    found = search_as_bind_account(registry, "carol")
    assert f"dn: {user_dn('carol')}" in found
    assert "memberOf: cn=Registry Team A,ou=groups,dc=dockyard,dc=test" in found
    assert "memberOf: cn=registry-readers,ou=groups,dc=dockyard,dc=test" in found
    assert "userPassword" not in found
    set_member(idp, "registry-readers", "dave", True)
    try:
        assert "memberOf: cn=registry-readers" in search_as_bind_account(registry, "dave")
    finally:
        set_member(idp, "registry-readers", "dave", False)
    set_member(idp, "registry-readers", "dave", False)
    assert "registry-readers" not in search_as_bind_account(registry, "dave")


def test_issuers_publish_their_own_keys(registry):
    keys = {}
    for issuer in ("ci", "other"):
        discovery = json.loads(registry.run(f"curl -sSf {issuer_url(issuer)}/.well-known/openid-configuration").stdout)
        assert discovery["issuer"] == issuer_url(issuer)
        assert discovery["jwks_uri"] == f"{issuer_url(issuer)}/jwks"
        jwks = json.loads(registry.run(f"curl -sSf --cacert {IDP_CA} {discovery['jwks_uri']}").stdout)
        keys[issuer] = {key["kid"]: (key["kty"], key["alg"]) for key in jwks["keys"]}
    assert keys == {"ci": {"ci-1": ("RSA", "RS256"), "ci-es": ("EC", "ES256")}, "other": {"other-1": ("RSA", "RS256")}}


@pytest.mark.parametrize("kid", ["ci-1", "ci-es"])
def test_minted_tokens_verify_with_pyjwt_and_the_jwks(registry, idp, kid):
    fetched = jwks_requests(idp, "ci")
    token = mint(idp, kid=kid, claims={"project_path": "team-a/app"})
    verified = registry.run(f"python3 -c {shlex.quote(VERIFY)} {token} {issuer_url('ci')}/jwks {issuer_url('ci')}")
    assert verified.stdout.strip() == "project_path:team-a/app:ref_type:branch:ref:main"
    assert jwks_requests(idp, "ci") == fetched + 1
    forged = mint(idp, kid=kid, alg="none")
    refused = registry.run(f"python3 -c {shlex.quote(VERIFY)} {forged} {issuer_url('ci')}/jwks {issuer_url('ci')}", ok=False)
    assert refused.rc != 0 and "alg" in refused.stderr, refused.stderr
