"""Workload identity: OIDC identity tokens as the password of the fixed account, every refusal reason."""
from __future__ import annotations

import json
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from token_fixtures import basic, call, jwk, mint
from dockyard_token import oidc
from dockyard_token.app import TokenService, check_config

ISSUER_URL = "https://ci.example.test/ci"
OTHER_URL = "https://ci.example.test/other"
AUDIENCE = "registry.test"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUSH_SCOPE = "scope=repository:team-a/app/web:pull,push"


def claims(**changes) -> dict:
    now = int(time.time())
    base = {"iss": ISSUER_URL, "aud": AUDIENCE, "sub": "project_path:team-a/app:ref_type:branch:ref:main",
            "iat": now, "nbf": now, "exp": now + 300, "project_path": "team-a/app", "ref_protected": "true"}
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def write_jwks(path, *keys) -> None:
    path.write_text(json.dumps({"keys": list(keys)}))


@pytest.fixture
def jwks_files(tmp_path):
    ci, other = tmp_path / "ci.jwks", tmp_path / "other.jwks"
    write_jwks(ci, jwk(RSA_KEY.public_key(), "k1", "RS256"), jwk(EC_KEY.public_key(), "e1", "ES256"))
    write_jwks(other, jwk(OTHER_KEY.public_key(), "o1", "RS256"))
    return ci, other


def issuers(jwks_files) -> list:
    ci, other = jwks_files
    return [
        {"name": "ci", "issuer": ISSUER_URL, "audience": AUDIENCE, "jwks_file": str(ci), "max_age": 600,
         "rules": [{"claims": {"project_path": "team-a/app", "ref_protected": "true"},
                    "repository": "team-a/app/*", "actions": ["pull", "push"]}]},
        {"name": "other", "issuer": OTHER_URL, "audience": AUDIENCE, "jwks_file": str(other),
         "rules": [{"claims": {"project_path": "team-b/*"}, "repository": "team-b/*", "actions": ["pull", "push"]}]},
    ]


@pytest.fixture
def workload_app(config, jwks_files):
    return TokenService(config._replace(oidc_issuers=tuple(issuers(jwks_files))))


def audit(config) -> list:
    with open(config.audit_log, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def granted(response) -> list:
    status, _headers, body = response
    assert status == 200, body
    payload = body["token"].split(".")[1]
    return json.loads(oidc._b64decode(payload))["access"]


@pytest.mark.parametrize("key,alg,kid", [(RSA_KEY, "RS256", "k1"), (EC_KEY, "ES256", "e1")])
def test_a_job_token_with_matching_claims_gets_exactly_the_rule(workload_app, config, key, alg, kid):
    token = mint(key, claims(), alg, kid)
    access = granted(call(workload_app, PUSH_SCOPE + "&scope=repository:team-b/x:pull&scope=repository:other:push",
                          basic("oidc", token)))
    assert access == [{"type": "repository", "name": "team-a/app/web", "actions": ["pull", "push"]}]
    line = audit(config)[-1]
    assert line["result"] == "issued" and line["source"] == "oidc" and line["issuer"] == "ci"
    assert line["sub"] == "project_path:team-a/app:ref_type:branch:ref:main"
    assert line["matched"] == [{"project_path": "team-a/app", "ref_protected": "true"}]
    assert line["subject"].startswith("workload:ci:")
    assert token not in json.dumps(audit(config)), "the identity token must never be logged"


def forged_tokens():
    public_pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "issuer 'https://evil.example.test' is not trusted": mint(RSA_KEY, claims(iss="https://evil.example.test")),
        "audience does not include registry.test": mint(RSA_KEY, claims(aud="someone-else")),
        "token expired": mint(RSA_KEY, claims(exp=int(time.time()) - 120)),
        "token older than 600 s": mint(RSA_KEY, claims(iat=int(time.time()) - 900, nbf=int(time.time()) - 900)),
        "token not valid yet": mint(RSA_KEY, claims(nbf=int(time.time()) + 600)),
        "algorithm 'none' is not accepted from issuer ci": mint(None, claims(), "none"),
        "algorithm 'HS256' is not accepted from issuer ci": mint(public_pem, claims(), "HS256"),
        "no key of issuer ci matches kid 'unknown' and RS256": mint(RSA_KEY, claims(), kid="unknown"),
        "no key of issuer ci matches kid 'e1' and RS256": mint(RSA_KEY, claims(), kid="e1"),
        "bad signature": mint(OTHER_KEY, claims(), kid="k1"),
        "no rule of issuer ci matches the token's claims": mint(RSA_KEY, claims(ref_protected="false")),
        "no rule of issuer other matches the token's claims": mint(OTHER_KEY, claims(iss=OTHER_URL), kid="o1"),
        "token without a subject": mint(RSA_KEY, claims(sub=None)),
        "exp and iat must be numbers": mint(RSA_KEY, claims(exp="tomorrow")),
        "not a signed JWT (three dot-separated parts)": "abc.def",
        "malformed JWT": "e30.!!!.abc",
        "token longer than 8192 characters": mint(RSA_KEY, claims(pad="x" * 6000)),
    }


@pytest.mark.parametrize("reason", list(forged_tokens()))
def test_every_wrong_token_is_refused_with_its_reason(workload_app, config, reason):
    status, headers, _body = call(workload_app, PUSH_SCOPE, basic("oidc", forged_tokens()[reason]))
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic ")
    line = audit(config)[-1]
    assert line["result"] == "unauthorized" and line["reason"] == reason and line["source"] == "oidc"


def test_a_second_issuers_token_never_gets_the_first_issuers_rules(workload_app):
    # A valid token of "other" whose claims would satisfy "ci"'s rule: only "other"'s rules apply.
    token = mint(OTHER_KEY, claims(iss=OTHER_URL, project_path="team-b/tool"), kid="o1")
    access = granted(call(workload_app, PUSH_SCOPE + "&scope=repository:team-b/tool:push", basic("oidc", token)))
    assert access == [{"type": "repository", "name": "team-b/tool", "actions": ["push"]}]
    # And a token signed by "other"'s key claiming to come from "ci" fails the signature.
    forged = mint(OTHER_KEY, claims(), kid="k1")
    assert call(workload_app, PUSH_SCOPE, basic("oidc", forged))[0] == 401


def test_workload_refusals_do_not_lock_out_other_jobs(workload_app):
    for _attempt in range(15):
        assert call(workload_app, PUSH_SCOPE, basic("oidc", mint(OTHER_KEY, claims())))[0] == 401
    assert granted(call(workload_app, PUSH_SCOPE, basic("oidc", mint(RSA_KEY, claims()))))


def test_list_and_boolean_claims_and_patterns():
    rule = oidc.Rule((("groups", ("deploy*",)), ("protected", ("true",))), "x/*", frozenset({"pull"}))
    assert rule.matches({"groups": ["dev", "deployers"], "protected": True})
    assert not rule.matches({"groups": ["dev"], "protected": True})
    assert not rule.matches({"groups": ["deployers"], "protected": False})
    assert not rule.matches({"groups": {"deploy": 1}, "protected": True})
    assert not rule.matches({"protected": True})


def test_jwks_file_rotation_needs_no_restart(workload_app, jwks_files):
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_jwks(jwks_files[0], jwk(new_key.public_key(), "k2", "RS256"))
    assert granted(call(workload_app, PUSH_SCOPE, basic("oidc", mint(new_key, claims(), kid="k2"))))
    assert call(workload_app, PUSH_SCOPE, basic("oidc", mint(RSA_KEY, claims(), kid="k1")))[0] == 401


class FakeIssuerSite:
    """Discovery and JWKS documents by URL, and a clock the test moves."""

    def __init__(self):
        self.documents = {
            ISSUER_URL + "/.well-known/openid-configuration": {"issuer": ISSUER_URL, "jwks_uri": ISSUER_URL + "/jwks"},
            ISSUER_URL + "/jwks": {"keys": [jwk(RSA_KEY.public_key(), "k1", "RS256")]},
        }
        self.requests = []
        self.now = 1000.0
        self.down = False

    def fetch(self, url, _context, _timeout):
        self.requests.append(url)
        if self.down:
            raise oidc.Unavailable("cannot fetch %s: connection refused" % url)
        return self.documents[url]


@pytest.fixture
def site(monkeypatch):
    fake = FakeIssuerSite()
    monkeypatch.setattr(oidc, "_fetch_json", fake.fetch)
    return fake


def fetched_issuer(site, refresh=300):
    issuer = oidc.Issuer({"name": "ci", "issuer": ISSUER_URL, "audience": AUDIENCE, "jwks_refresh": refresh,
                          "rules": [{"claims": {"project_path": "team-a/app"}, "repository": "team-a/*",
                                     "actions": ["pull"]}]})
    issuer.keyset.clock = lambda: site.now
    return issuer


def test_fetched_keys_are_cached_refreshed_and_rotated(site):
    keyset = fetched_issuer(site).keyset
    assert set(keyset.keys("k1")) == {"k1"} and len(site.requests) == 2
    keyset.keys("k1")
    assert len(site.requests) == 2, "a fresh JWKS is not fetched again"
    # A new key: the unknown kid makes one early refetch, then no more than one per MIN_REFETCH.
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    site.documents[ISSUER_URL + "/jwks"] = {"keys": [jwk(new_key.public_key(), "k2", "RS256")]}
    site.now += oidc.MIN_REFETCH
    assert "k2" in keyset.keys("k2") and len(site.requests) == 4
    keyset.keys("forged-kid")
    assert len(site.requests) == 4, "unknown kids must not make the service hammer the issuer"
    assert "k1" not in keyset.keys("k1"), "a removed key is gone"


def test_an_unreachable_issuer_fails_closed_and_old_keys_expire(site):
    keyset = fetched_issuer(site, refresh=60).keyset
    site.down = True
    with pytest.raises(oidc.Unavailable, match="connection refused"):
        keyset.keys("k1")
    site.down = False
    with pytest.raises(oidc.Unavailable, match="connection refused"):
        keyset.keys("k1")  # a failed fetch is retried only after MIN_REFETCH
    site.now += oidc.MIN_REFETCH
    assert "k1" in keyset.keys("k1")
    site.down, site.now = True, site.now + 120
    assert "k1" in keyset.keys("k1"), "keys in hand stay usable for a while when a refresh fails"
    site.now += oidc.STALE_LIMIT
    with pytest.raises(oidc.Unavailable):
        keyset.keys("k1")


def test_discovery_naming_another_issuer_is_refused(site):
    site.documents[ISSUER_URL + "/.well-known/openid-configuration"]["issuer"] = "https://evil.example.test"
    with pytest.raises(oidc.Unavailable, match="names another issuer"):
        fetched_issuer(site).keyset.keys("k1")


def test_an_unavailable_issuer_is_503_with_its_reason(config, site):
    site.down = True
    app = TokenService(config._replace(oidc_issuers=({"name": "ci", "issuer": ISSUER_URL, "audience": AUDIENCE,
                                                      "rules": [{"claims": {"sub": "*"}, "repository": "x",
                                                                 "actions": ["pull"]}]},)))
    status, _headers, body = call(app, PUSH_SCOPE, basic("oidc", mint(RSA_KEY, claims())))
    assert status == 503 and body["errors"][0]["message"] == "oidc unavailable"
    assert "connection refused" in audit(config)[-1]["reason"]


@pytest.mark.parametrize("change,message", [
    ({"issuer": "http://ci.example.test"}, "issuer must be an https URL"),
    ({"algorithms": ["HS256"]}, "never none or HMAC"),
    ({"algorithms": ["none"]}, "never none or HMAC"),
    ({"rules": [{"claims": {}, "repository": "x", "actions": ["pull"]}]}, "at least one claim"),
    ({"rules": [{"claims": {"a": {"b": 1}}, "repository": "x", "actions": ["pull"]}]}, "string or a list"),
    ({"rules": [{"claims": {"a": "b"}, "repository": "/x", "actions": ["pull"]}]}, "pattern"),
    ({"rules": [{"claims": {"a": "b"}, "repository": "x", "actions": ["fly"]}]}, "unknown action"),
    ({"max_age": 0}, "max_age must be"),
    ({"jwks_uri": "http://x/jwks"}, "jwks_uri must be an https URL"),
    ({"colour": "blue"}, "unknown settings colour"),
    ({"name": "CI!"}, "OIDC issuer name"),
])
def test_bad_issuer_settings_stop_the_service_with_a_clear_error(tmp_path, config, change, message):
    settings = {"name": "ci", "issuer": ISSUER_URL, "audience": AUDIENCE,
                "rules": [{"claims": {"sub": "x"}, "repository": "x", "actions": ["pull"]}], **change}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(dict(config._asdict(), oidc_issuers=[settings])))
    assert message in check_config(str(path))
    with pytest.raises((ValueError, TypeError), match=message.split("'")[0]):
        oidc.Federation([settings])


def test_two_issuers_with_one_url_are_refused(jwks_files):
    both = issuers(jwks_files)
    both[1]["issuer"] = ISSUER_URL
    with pytest.raises(ValueError, match="unique"):
        oidc.Federation(both)
