"""The WSGI app driven directly: token format, status codes, audit, never a 500."""
from __future__ import annotations

import base64
import json
import time
import urllib.parse

import jwt
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from token_fixtures import ISSUER, SERVICE, basic, call, sample_store, write_key_pair
from dockyard_token import _accounts
from dockyard_token.app import Config, TokenService
from dockyard_token.keys import SigningKeyError, libtrust_key_id


def query(*scopes, service=SERVICE, **extra):
    pairs = [("service", service)] + [("scope", scope) for scope in scopes] + list(extra.items())
    return urllib.parse.urlencode(pairs)


def decode(app, token, key_pair):
    key, _key_path, _cert_path = key_pair
    return jwt.decode(token, key.public_key(), algorithms=["ES256"], audience=SERVICE, issuer=ISSUER)


def test_token_response_and_claims(app, key_pair):
    status, headers, body = call(app, query("repository:team-a/app:pull,push"), basic("alice", "alice-pw"))
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    assert body["token"] == body["access_token"] and body["expires_in"] == 300
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "ES256" and header["kid"] == libtrust_key_id(key_pair[0].public_key())
    assert "x5c" not in header
    claims = decode(app, body["token"], key_pair)
    assert claims["aud"] == SERVICE and isinstance(claims["aud"], str)
    assert claims["iss"] == ISSUER and claims["sub"] == "alice" and claims["jti"]
    assert claims["exp"] - claims["iat"] == 300 and claims["nbf"] <= time.time()
    assert claims["access"] == [{"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]}]


def test_kid_is_libtrust_format(key_pair):
    kid = libtrust_key_id(key_pair[0].public_key())
    groups = kid.split(":")
    # Base32 (a group may be all digits, so not isupper()).
    assert len(groups) == 12 and all(len(group) == 4 and set(group) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
                                     for group in groups)


def test_x5c_header_when_configured(config, key_pair):
    app = TokenService(config._replace(x5c=True))
    _status, _headers, body = call(app, query())
    assert len(jwt.get_unverified_header(body["token"])["x5c"]) == 1


def test_lack_of_rights_is_an_empty_access_list(app, key_pair):
    status, _headers, body = call(app, query("repository:team-b/secret:pull,push"), basic("alice", "alice-pw"))
    assert status == 200 and decode(app, body["token"], key_pair)["access"] == []


def test_anonymous(app, key_pair):
    status, _headers, body = call(app, query("repository:public/base:pull,push", "repository:team-a/x:pull"))
    claims = decode(app, body["token"], key_pair)
    assert status == 200 and claims["sub"] == ""
    assert claims["access"] == [{"type": "repository", "name": "public/base", "actions": ["pull"]}]


def test_login_without_scope(app, key_pair):
    status, _headers, body = call(app, query(account="alice"), basic("alice", "alice-pw"))
    assert status == 200 and decode(app, body["token"], key_pair)["access"] == []


@pytest.mark.parametrize("authorization", [basic("alice", "wrong"), basic("nobody", "x"), basic("mallory", "mallory-pw"),
                                           basic("robot$old", "old-secret"), basic("robot$off", "off-secret"),
                                           "Bearer xyz", "Basic %%%", basic("alice", "a" * 80)])
def test_wrong_credentials_are_401_with_basic_challenge(app, authorization):
    status, headers, body = call(app, query("repository:team-a/app:pull"), authorization)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic realm=")
    assert body["errors"][0]["code"] == "UNAUTHORIZED"


@pytest.mark.parametrize("query_string", [
    query(service="other"), query("repository:UPPER:pull"), query("nonsense"), "scope=" + "a" * 20000,
    query(*(["repository:a:pull"] * 40)), "&".join(["x=1"] * 100),
])
def test_malformed_requests_are_400(app, query_string):
    status, _headers, body = call(app, query_string, basic("alice", "alice-pw"))
    assert status == 400 and body["errors"][0]["code"] == "INVALID_REQUEST"


def test_account_must_match_credentials(app):
    assert call(app, query(account="bob"), basic("alice", "alice-pw"))[0] == 400


def test_other_paths_and_methods(app):
    assert call(app, path="/healthz")[0] == 200
    assert call(app, path="/v2/")[0] == 404
    status, headers, _body = call(app, query(), method="POST")
    assert status == 405 and headers["Allow"] == "GET"


def test_store_changes_apply_without_restart(app, store_path, key_pair):
    assert call(app, query(), basic("robot$team-a+ci", "ci-secret"))[0] == 200
    store = sample_store()
    store["robots"]["robot$team-a+ci"]["disabled"] = True
    _accounts.write_store(str(store_path), store)
    assert call(app, query(), basic("robot$team-a+ci", "ci-secret"))[0] == 401


def test_broken_store_fails_closed_with_503(app, store_path):
    store_path.write_text("[]")
    assert call(app, query(), basic("alice", "alice-pw"))[0] == 503


def test_audit_lines(app, config):
    call(app, query("repository:team-a/app:pull,delete"), basic("alice", "alice-pw"),
         HTTP_X_FORWARDED_FOR="6.6.6.6, 192.0.2.7")
    call(app, query(), basic("alice", "nope"), HTTP_X_REAL_IP="192.0.2.8", HTTP_X_FORWARDED_FOR="6.6.6.6")
    call(app, query(service="x"), HTTP_X_REAL_IP="not-an-ip")
    with open(config.audit_log, encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle]
    first, second, third = lines
    assert first["event"] == "token" and first["time"].endswith("Z")
    assert (first["result"], first["subject"], first["client_ip"]) == ("issued", "user:alice", "192.0.2.7")
    assert first["requested"] == ["repository:team-a/app:pull,delete"]
    assert first["granted"] == ["repository:team-a/app:pull"]
    assert (second["result"], second["account"], second["client_ip"]) == ("unauthorized", "alice", "192.0.2.8")
    assert second["subject"] is None and "nope" not in json.dumps(second)
    assert (third["result"], third["client_ip"]) == ("bad_request", "invalid")


def test_every_audit_line_names_the_node(config):
    app = TokenService(config._replace(node="registry-b.example.net"))
    call(app, query("repository:team-a/app:pull"), basic("alice", "alice-pw"))
    call(app, query(), basic("alice", "nope"))
    call(app, query(service="x"))
    with open(config.audit_log, encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle]
    assert [line["result"] for line in lines] == ["issued", "unauthorized", "bad_request"]
    assert all(line["node"] == "registry-b.example.net" for line in lines)


def test_audit_node_defaults_to_the_host_name(config):
    import socket
    call(TokenService(config), query())
    with open(config.audit_log, encoding="utf-8") as handle:
        (line,) = [json.loads(line) for line in handle]
    assert line["node"] == socket.gethostname() != ""


def test_refuses_to_start_with_a_foreign_certificate(config, tmp_path):
    _key, _key_path, other_cert = write_key_pair(tmp_path, "other")
    with pytest.raises(SigningKeyError):
        TokenService(config._replace(certificate=str(other_cert)))


def test_config_file(tmp_path, config):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config._asdict()))
    assert Config.from_file(str(path)) == config
    path.write_text(json.dumps(dict(config._asdict(), bogus=1)))
    with pytest.raises(ValueError):
        Config.from_file(str(path))


# --- properties: whatever arrives, the answer is 200, 400, 401 or 429 --------------------------

QUERY_PARTS = st.sampled_from(["service=", SERVICE, "scope=", "repository:", "registry:catalog:*", "team-a/app",
                               ":pull", ",push", "&", "=", "%", "%3A", "%FF", "+", "account=", "alice", ";", "\x00"])
HEADERS = st.one_of(st.none(), st.text(max_size=300), st.sampled_from([basic("alice", "alice-pw"), basic("x", "y")]),
                    st.binary(max_size=200).map(lambda b: "Basic " + base64.b64encode(b).decode()))


# Bounds on CPU time (thread_time), not wall time: a busy machine must not fail them, while
# a parser that backtracks exponentially still would.
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=2000), st.lists(QUERY_PARTS, max_size=200).map("".join)), HEADERS)
def test_never_500(app, query_string, authorization):
    started = time.thread_time()
    status, _headers, body = call(app, query_string, authorization)
    assert status in (200, 400, 401, 429), body  # 429: repeated failed logins (limits.py)
    assert time.thread_time() - started < 0.5


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from("a-_./:,*%="), min_size=1, max_size=64).map(lambda s: (s * 8192)[:8192]))
def test_8k_queries_answer_fast(app, blob):
    for query_string in (blob, "scope=" + blob, "service=%s&scope=repository:%s:pull" % (SERVICE, blob)):
        started = time.thread_time()
        assert call(app, query_string)[0] in (200, 400)
        assert time.thread_time() - started < 0.05


def test_an_unwritable_audit_file_does_not_refuse_tokens(config, tmp_path, capsys):
    from dockyard_token.audit import AuditLog
    app = TokenService(config, AuditLog(str(tmp_path / "missing-directory" / "audit.jsonl"), stdout=True))
    status, _headers, body = call(app, query("repository:team-a/app:pull"), basic("alice", "alice-pw"))
    assert status == 200 and body["token"]
    captured = capsys.readouterr()
    assert "not written" in captured.err and '"result": "issued"' in captured.out
