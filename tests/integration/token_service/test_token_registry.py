"""Least privilege proven against the real docker-registry 2.8 with real HTTP and skopeo.

Accounts are made with the collection's modules; images are pushed and pulled with
skopeo; hand-made tokens prove the registry refuses anything but what the service signs.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pathlib
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from token_stack import ISSUER, PYTESTMARK, SERVICE, request_token, write_key_pair

pytestmark = PYTESTMARK

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "roles" / "token_service" / "files"))
from dockyard_token.keys import libtrust_key_id  # noqa: E402  pylint: disable=wrong-import-position

PASSWORDS = {"admin": "admin-pw-4d1e", "alice": "alice-pw-77ab"}


@pytest.fixture(scope="module")
def accounts(stack):
    results = stack.playbook([
        {"name": "admin", "dockyard.registry.user": {"name": "admin", "password": PASSWORDS["admin"],
                                                     "groups": ["admins"]}},
        {"name": "alice", "dockyard.registry.user": {"name": "alice", "password": PASSWORDS["alice"],
                                                     "groups": ["team-a"]}},
        {"name": "admins", "dockyard.registry.access_rule": {
            "subject": "group:admins", "repository": "*", "actions": ["pull", "push", "delete", "catalog"]}},
        {"name": "team-a", "dockyard.registry.access_rule": {
            "subject": "group:team-a", "repository": "team-a/*", "actions": ["pull"]}},
        {"name": "ci", "dockyard.registry.robot_account": {
            "name": "robot$team-a+ci", "expires_in": "30d", "registry_host": stack.host,
            "permissions": [{"repository": "team-a/*", "actions": ["pull", "push"]}]}},
        {"name": "puller", "dockyard.registry.robot_account": {
            "name": "robot$team-a+puller", "permissions": [{"repository": "team-a/*", "actions": ["pull"]}]}},
        {"name": "doomed", "dockyard.registry.robot_account": {
            "name": "robot$doomed", "permissions": [{"repository": "*", "actions": ["pull"]}]}},
        {"name": "dying", "dockyard.registry.robot_account": {
            "name": "robot$dying", "permissions": [{"repository": "*", "actions": ["pull"]}]}},
    ], "accounts")
    creds = {name: "%s:%s" % (name, password) for name, password in PASSWORDS.items()}
    for task, name in (("ci", "robot$team-a+ci"), ("puller", "robot$team-a+puller"),
                       ("doomed", "robot$doomed"), ("dying", "robot$dying")):
        assert results[task]["changed"] and results[task]["secret"]
        creds[task] = "%s:%s" % (name, results[task]["secret"])
    auth = results["ci"]["docker_config"]["auths"][stack.host]["auth"]
    assert base64.b64decode(auth).decode() == creds["ci"]
    image = stack.workdir / "image"
    subprocess.run([sys.executable, str(ROOT / "tools" / "oci_image.py"), str(image), "--tag", "1.0",
                    "--layers", "2", "--layer-size", "64K"], check=True, capture_output=True)
    for repository in ("team-a/app", "team-b/app"):
        copy(stack, "oci:%s:1.0" % image, "docker://%s/%s:1.0" % (stack.host, repository), dest_creds=creds["admin"])
    creds["image"] = str(image)
    return creds


# --- clients ----------------------------------------------------------------------------

def copy(stack, source, destination, src_creds=None, dest_creds=None, check=True):
    command = ["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--retry-times", "0"]
    command += ["--src-creds", src_creds] if src_creds else (["--src-no-creds"] if source.startswith("docker:") else [])
    command += ["--dest-creds", dest_creds] if dest_creds else (["--dest-no-creds"] if destination.startswith("docker:") else [])
    run = subprocess.run(command + [source, destination], capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert run.returncode == 0, run.stderr
    return run


def token_request(stack, creds, *scopes, account=None):
    status, _headers, body = request_token(stack.token_url, creds, scopes, account)
    return status, body


def get_token(stack, creds, *scopes):
    status, body = token_request(stack, creds, *scopes)
    assert status == 200, body
    return body["token"]


def registry_status(stack, path, token=None, method="GET"):
    request = urllib.request.Request(stack.registry + path, method=method)
    if token:
        request.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# --- skopeo: real pushes and pulls -----------------------------------------------------------

def test_pull_only_robot_pulls_but_cannot_push(stack, accounts, tmp_path):
    copy(stack, "docker://%s/team-a/app:1.0" % stack.host, "oci:%s:pulled" % tmp_path, src_creds=accounts["puller"])
    pushed = copy(stack, "oci:%s:1.0" % accounts["image"], "docker://%s/team-a/app:2.0" % stack.host,
                  dest_creds=accounts["puller"], check=False)
    assert pushed.returncode != 0 and ("denied" in pushed.stderr or "unauthorized" in pushed.stderr)


def test_team_a_robot_pushes_team_a_only(stack, accounts, tmp_path):
    copy(stack, "oci:%s:1.0" % accounts["image"], "docker://%s/team-a/ci-built:1.0" % stack.host,
         dest_creds=accounts["ci"])
    copy(stack, "docker://%s/team-a/ci-built:1.0" % stack.host, "oci:%s:x" % tmp_path, src_creds=accounts["ci"])
    assert copy(stack, "oci:%s:1.0" % accounts["image"], "docker://%s/team-b/x:1.0" % stack.host,
                dest_creds=accounts["ci"], check=False).returncode != 0
    assert copy(stack, "docker://%s/team-b/app:1.0" % stack.host, "oci:%s:y" % tmp_path,
                src_creds=accounts["ci"], check=False).returncode != 0


def test_group_rule_pull_only(stack, accounts, tmp_path):
    copy(stack, "docker://%s/team-a/app:1.0" % stack.host, "oci:%s:a" % tmp_path, src_creds=accounts["alice"])
    assert copy(stack, "docker://%s/team-b/app:1.0" % stack.host, "oci:%s:b" % tmp_path,
                src_creds=accounts["alice"], check=False).returncode != 0


def test_anonymous_is_denied(stack, accounts, tmp_path):
    assert copy(stack, "docker://%s/team-a/app:1.0" % stack.host, "oci:%s:anon" % tmp_path,
                check=False).returncode != 0
    status, body = token_request(stack, None, "repository:team-a/app:pull")
    assert status == 200
    assert registry_status(stack, "/v2/team-a/app/tags/list", body["token"])[0] == 401


def test_wrong_password_is_401_at_the_token_service(stack, accounts):
    status, body = token_request(stack, "alice:wrong", "repository:team-a/app:pull")
    assert status == 401 and body["errors"][0]["code"] == "UNAUTHORIZED"


def test_catalog_for_admins_only(stack, accounts):
    token = get_token(stack, accounts["admin"], "registry:catalog:*")
    status, body = registry_status(stack, "/v2/_catalog", token)
    assert status == 200 and {"team-a/app", "team-b/app"} <= set(json.loads(body)["repositories"])
    for who in ("alice", "ci"):
        assert registry_status(stack, "/v2/_catalog", get_token(stack, accounts[who], "registry:catalog:*"))[0] == 401


def test_revoked_and_expired_robots_are_refused_at_their_next_token_request(stack, accounts):
    for who in ("doomed", "dying"):
        token = get_token(stack, accounts[who], "repository:team-a/app:pull")
        assert registry_status(stack, "/v2/team-a/app/tags/list", token)[0] == 200
    stack.playbook([
        {"name": "revoke", "dockyard.registry.robot_account": {"name": "robot$doomed", "disabled": True}},
        {"name": "expire", "dockyard.registry.robot_account": {"name": "robot$dying", "expires_at": "2001-01-01"}},
    ], "revoke")
    for who in ("doomed", "dying"):
        assert token_request(stack, accounts[who], "repository:team-a/app:pull")[0] == 401


def test_audit_log(stack, accounts):
    lines = [json.loads(line) for line in stack.audit_log.read_text().splitlines()]
    lines = [line for line in lines if line["event"] == "token"]  # registry events: test_token_registry_events.py
    assert any(line["subject"] == "robot:robot$team-a+puller" and line["result"] == "issued" for line in lines)
    assert any(line["result"] == "unauthorized" and line.get("account") == "alice" for line in lines)
    assert not any(PASSWORDS["alice"] in json.dumps(line) for line in lines)


# --- forged tokens -------------------------------------------------------------------------

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def es256(key, signing_input: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def make_token(header: dict, claims: dict, sign) -> str:
    signing_input = ("%s.%s" % (b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()))).encode()
    return signing_input.decode() + "." + b64url(sign(signing_input))


def claims_for(repository="team-a/app", **overrides):
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "forger", "aud": SERVICE, "exp": now + 300, "nbf": now - 5, "iat": now - 5,
              "jti": "forged-%d" % now, "access": [{"type": "repository", "name": repository, "actions": ["pull"]}]}
    claims.update(overrides)
    return claims


@pytest.fixture(scope="module")
def trusted(stack):
    kid = libtrust_key_id(stack.key.public_key())
    return {"alg": "ES256", "typ": "JWT", "kid": kid}, (lambda data: es256(stack.key, data))


def test_control_a_well_made_token_is_accepted(stack, accounts, trusted):
    header, sign = trusted
    assert registry_status(stack, "/v2/team-a/app/tags/list", make_token(header, claims_for(), sign))[0] == 200


def test_x5c_header_is_accepted_too(stack, accounts):
    header = {"alg": "ES256", "typ": "JWT",
              "x5c": [base64.b64encode(stack.cert.public_bytes(serialization.Encoding.DER)).decode()]}
    token = make_token(header, claims_for(), lambda data: es256(stack.key, data))
    assert registry_status(stack, "/v2/team-a/app/tags/list", token)[0] == 200


@pytest.mark.parametrize("case", ["wrong_aud", "wrong_iss", "aud_array", "expired", "not_yet_valid", "other_repo",
                                  "push_with_pull_token"])
def test_registry_refuses_tokens_with_bad_claims(stack, accounts, trusted, case):
    header, sign = trusted
    now = int(time.time())
    claims = {
        "wrong_aud": claims_for(aud="other.service"),
        "wrong_iss": claims_for(iss="evil-issuer"),
        "aud_array": claims_for(aud=[SERVICE]),
        "expired": claims_for(exp=now - 120, nbf=now - 600, iat=now - 600),  # Distribution's leeway is 60 s
        "not_yet_valid": claims_for(nbf=now + 600),
        "other_repo": claims_for(repository="team-a/app"),
        "push_with_pull_token": claims_for(repository="team-a/app"),
    }[case]
    path = "/v2/team-b/app/tags/list" if case == "other_repo" else "/v2/team-a/app/tags/list"
    method = "POST" if case == "push_with_pull_token" else "GET"
    if method == "POST":
        path = "/v2/team-a/app/blobs/uploads/"
    assert registry_status(stack, path, make_token(header, claims, sign), method=method)[0] == 401


def test_registry_refuses_alg_none(stack, accounts, trusted):
    header = dict(trusted[0], alg="none")
    token = make_token(header, claims_for(), lambda data: b"")
    assert registry_status(stack, "/v2/team-a/app/tags/list", token)[0] == 401
    assert registry_status(stack, "/v2/team-a/app/tags/list", token.rstrip("."))[0] == 401


def test_registry_refuses_hs256_signed_with_the_public_key(stack, accounts, trusted):
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    public_pem = stack.key.public_key().public_bytes(serialization.Encoding.PEM, spki)
    public_der = stack.key.public_key().public_bytes(serialization.Encoding.DER, spki)
    for secret in (public_pem, public_der, stack.cert.public_bytes(serialization.Encoding.PEM)):
        token = make_token(dict(trusted[0], alg="HS256"), claims_for(),
                           lambda data, secret=secret: hmac.new(secret, data, hashlib.sha256).digest())
        assert registry_status(stack, "/v2/team-a/app/tags/list", token)[0] == 401


def test_registry_refuses_a_key_outside_the_bundle(stack, accounts, trusted, tmp_path):
    other_key, other_cert, _key_path, _cert_path = write_key_pair(tmp_path, "intruder")

    def sign(data):
        return es256(other_key, data)

    own_kid = {"alg": "ES256", "typ": "JWT", "kid": libtrust_key_id(other_key.public_key())}
    stolen_kid = trusted[0]
    own_x5c = {"alg": "ES256", "typ": "JWT",
               "x5c": [base64.b64encode(other_cert.public_bytes(serialization.Encoding.DER)).decode()]}
    for header in (own_kid, stolen_kid, own_x5c):
        assert registry_status(stack, "/v2/team-a/app/tags/list", make_token(header, claims_for(), sign))[0] == 401


def test_a_token_for_repo_a_does_not_open_repo_b(stack, accounts):
    token = get_token(stack, accounts["admin"], "repository:team-a/app:pull")
    assert registry_status(stack, "/v2/team-a/app/tags/list", token)[0] == 200
    assert registry_status(stack, "/v2/team-b/app/tags/list", token)[0] == 401
