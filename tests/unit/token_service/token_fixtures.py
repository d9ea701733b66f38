"""Helpers for the token service tests: its package on sys.path, key pairs, a sample store, WSGI calls."""
from __future__ import annotations

import base64
import datetime
import hmac
import json
import pathlib
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import NameOID

FILES = pathlib.Path(__file__).resolve().parents[3] / "roles" / "token_service" / "files"
if str(FILES) not in sys.path:
    sys.path.insert(0, str(FILES))

from dockyard_token import _accounts  # noqa: E402  pylint: disable=wrong-import-position

ISSUER = "test-issuer"
SERVICE = "registry.test"


def write_key_pair(directory: pathlib.Path, name: str = "token") -> tuple:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    key_path, cert_path = directory / (name + ".key"), directory / (name + ".crt")
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, key_path, cert_path


def sample_store() -> dict:
    store = _accounts.empty_store()
    store["users"] = {
        "admin": {"password_hash": _accounts.hash_secret("admin-pw", 4), "groups": ["admins"]},
        "alice": {"password_hash": _accounts.hash_secret("alice-pw", 4), "groups": ["team-a"]},
        "bob": {"password_hash": _accounts.hash_secret("bob-pw", 4), "groups": []},
        "mallory": {"password_hash": _accounts.hash_secret("mallory-pw", 4), "groups": ["team-a"], "disabled": True},
    }
    store["robots"] = {
        "robot$team-a+ci": {"secret_hash": _accounts.hash_secret("ci-secret", 4),
                            "permissions": [{"repository": "team-a/*", "actions": ["pull", "push"]}]},
        "robot$team-a+puller": {"secret_hash": _accounts.hash_secret("pull-secret", 4),
                                "permissions": [{"repository": "team-a/*", "actions": ["pull"]}]},
        "robot$old": {"secret_hash": _accounts.hash_secret("old-secret", 4), "expires_at": "2001-01-01T00:00:00Z",
                      "permissions": [{"repository": "*", "actions": ["pull"]}]},
        "robot$off": {"secret_hash": _accounts.hash_secret("off-secret", 4), "disabled": True,
                      "permissions": [{"repository": "*", "actions": ["pull"]}]},
    }
    store["rules"] = [
        {"subject": "group:admins", "repository": "*", "actions": ["pull", "push", "delete", "catalog"]},
        {"subject": "group:team-a", "repository": "team-a/*", "actions": ["pull", "push"]},
        {"subject": "authenticated", "repository": "${user}/*", "actions": ["pull", "push", "delete"]},
        {"subject": "anonymous", "repository": "public/*", "actions": ["pull"]},
        {"subject": "user:bob", "repository": "team-b/x", "actions": ["pull"]},
    ]
    return _accounts.validate_store(store)


def call_raw(app, query="", authorization=None, method="GET", path="/auth/token", **headers):
    """(status, headers, body bytes) of one WSGI request."""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "REMOTE_ADDR": ""}
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    environ.update(headers)
    seen = {}

    def start_response(status, response_headers):
        seen["status"] = int(status.split()[0])
        seen["headers"] = dict(response_headers)

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


def call(app, *args, **kwargs):
    """(status, headers, JSON body or None) of one WSGI request (see call_raw)."""
    status, headers, body = call_raw(app, *args, **kwargs)
    return status, headers, json.loads(body) if body else None


# --- OIDC identity tokens, made as an issuer (or a forger) would -------------------------

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk(public_key, kid: str, alg: str) -> dict:
    """The JWK of an RSA or EC P-256 public key."""
    numbers = public_key.public_numbers()
    if isinstance(public_key, rsa.RSAPublicKey):
        size = (numbers.n.bit_length() + 7) // 8
        return {"kty": "RSA", "kid": kid, "alg": alg, "use": "sig", "e": b64url(numbers.e.to_bytes(3, "big")),
                "n": b64url(numbers.n.to_bytes(size, "big"))}
    return {"kty": "EC", "crv": "P-256", "kid": kid, "alg": alg, "use": "sig",
            "x": b64url(numbers.x.to_bytes(32, "big")), "y": b64url(numbers.y.to_bytes(32, "big"))}


def mint(key, claims: dict, alg: str = "RS256", kid: str | None = "k1", header: dict | None = None) -> str:
    """A compact JWS of ``claims``: RS256/ES256 with ``key``; ``none`` unsigned; ``HS256`` with
    ``key`` (bytes) as the HMAC secret (the key-confusion forgery)."""
    head = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid is not None else {}), **(header or {})}
    signing_input = (b64url(json.dumps(head).encode()) + "." + b64url(json.dumps(claims).encode())).encode()
    if alg == "none":
        signature = b""
    elif alg == "HS256":
        signature = hmac.digest(key, signing_input, "sha256")
    elif alg == "RS256":
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = utils.decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return signing_input.decode() + "." + b64url(signature)


def basic(account: str, password: str) -> str:
    return "Basic " + base64.b64encode(("%s:%s" % (account, password)).encode()).decode()
