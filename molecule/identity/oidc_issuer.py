"""oidc-issuer: a test OpenID Connect issuer of workload identity tokens (CI jobs' ID tokens).

Installed on the identity provider instance as /usr/local/bin/oidc-issuer by
molecule/identity/prepare.yml, which writes its settings to /etc/oidc-issuer.json
({"base_url": "https://HOST:8443", "state_dir": …, "certificate": …, "key": …, "port": 8443}).
Every subdirectory of the state directory is one issuer, https://HOST:8443/NAME; its
signing keys are the KID.pem files in it (read anew for every request: keys rotate
without a restart).

  oidc-issuer serve
      HTTPS: GET /NAME/.well-known/openid-configuration and GET /NAME/jwks. One line per
      request in STATE/requests.log: time, method, path, status.
  oidc-issuer keygen --issuer NAME --kid KID --alg RS256|ES256
      A new key (RSA 2048 or P-256), published at once. `remove` unpublishes (deletes) it.
  oidc-issuer mint --issuer NAME --kid KID [--claims JSON] [--aud A] [--iss URL]
                   [--exp-in S] [--iat-ago S] [--nbf-in S] [--drop CLAIM]
                   [--alg none|HS256-with-public-key|RS256|ES256] [--sign-with-kid KID2] [--kid-header X]
      Print a compact JWT. Defaults: iss the issuer's URL, aud registry.dockyard.test,
      sub DEFAULT_SUBJECT, iat and nbf now, exp in 300 s; --claims is merged over them and
      --drop removes claims. Forgeries: --alg none (no signature), HS256-with-public-key
      (HMAC keyed with the RSA public key's PEM), RS256/ES256 (only the header's alg changes),
      --sign-with-kid (signed with another key of the issuer than the header's kid),
      --kid-header (any kid in the header).
"""
from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import hmac
import http.server
import json
import os
import pathlib
import re
import ssl
import sys
import threading
import time
import urllib.parse

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

CONFIG = "/etc/oidc-issuer.json"
AUDIENCE = "registry.dockyard.test"
DEFAULT_SUBJECT = "project_path:team-a/app:ref_type:branch:ref:main"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
FORGERIES = ("none", "HS256-with-public-key", "RS256", "ES256")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class IssuerError(Exception):
    pass


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64int(value: int, length: int = 0) -> str:
    return b64url(value.to_bytes(length or (value.bit_length() + 7) // 8, "big"))


def checked(name: str, what: str) -> str:
    if not NAME.fullmatch(name):
        raise IssuerError(f"{what} {name!r}: use letters, digits, '.', '_' and '-'")
    return name


def key_path(config: dict, issuer: str, kid: str) -> pathlib.Path:
    return pathlib.Path(config["state_dir"], checked(issuer, "issuer"), checked(kid, "kid") + ".pem")


def load_key(path: pathlib.Path) -> PrivateKey:
    if not path.is_file():
        raise IssuerError(f"no key {path}")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
    return key


def algorithm(key: PrivateKey) -> str:
    return "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"


def jwk(kid: str, key: PrivateKey) -> dict:
    base = {"kid": kid, "alg": algorithm(key), "use": "sig"}
    if isinstance(key, rsa.RSAPrivateKey):
        rsa_numbers = key.public_key().public_numbers()
        return {"kty": "RSA", "n": b64int(rsa_numbers.n), "e": b64int(rsa_numbers.e), **base}
    ec_numbers = key.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": b64int(ec_numbers.x, 32), "y": b64int(ec_numbers.y, 32), **base}


def issuer_url(config: dict, issuer: str) -> str:
    return f"{config['base_url'].rstrip('/')}/{issuer}"


def keygen(config: dict, args: argparse.Namespace) -> None:
    path = key_path(config, args.issuer, args.kid)
    if path.exists():
        raise IssuerError(f"{path} exists: remove it first")
    key: PrivateKey = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if args.alg == "RS256"
                       else ec.generate_private_key(ec.SECP256R1()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
        handle.write(pem)


def remove(config: dict, args: argparse.Namespace) -> None:
    path = key_path(config, args.issuer, args.kid)
    if not path.exists():
        raise IssuerError(f"no key {path}")
    path.unlink()


def mint(config: dict, args: argparse.Namespace) -> None:
    key = load_key(key_path(config, args.issuer, args.sign_with_kid or args.kid))
    now = int(time.time())
    claims = {"iss": args.iss or issuer_url(config, args.issuer), "aud": args.aud, "sub": DEFAULT_SUBJECT,
              "iat": now - args.iat_ago, "nbf": now + args.nbf_in, "exp": now + args.exp_in}
    claims.update(json.loads(args.claims))
    for name in args.drop:
        claims.pop(name, None)
    alg = args.alg or algorithm(key)
    header = {"alg": "HS256" if alg == "HS256-with-public-key" else alg, "typ": "JWT",
              "kid": args.kid_header or args.kid}
    signing_input = ".".join(b64url(json.dumps(part, separators=(",", ":")).encode())
                             for part in (header, claims)).encode("ascii")
    if alg == "none":
        signature = b""
    elif alg == "HS256-with-public-key":
        public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        signature = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    print(f"{signing_input.decode('ascii')}.{b64url(signature)}")


class Handler(http.server.BaseHTTPRequestHandler):
    config: dict = {}
    lock = threading.Lock()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        parts = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
        issuer = parts[0]
        directory = pathlib.Path(self.config["state_dir"], issuer)
        if not NAME.fullmatch(issuer) or not directory.is_dir():
            self.reply(404, {"error": "no such issuer"})
        elif parts[1:] == [".well-known", "openid-configuration"]:
            url = issuer_url(self.config, issuer)
            self.reply(200, {"issuer": url, "jwks_uri": f"{url}/jwks", "response_types_supported": ["id_token"],
                             "subject_types_supported": ["public"],
                             "id_token_signing_alg_values_supported": ["RS256", "ES256"]})
        elif parts[1:] == ["jwks"]:
            self.reply(200, {"keys": [jwk(path.stem, load_key(path)) for path in sorted(directory.glob("*.pem"))]})
        else:
            self.reply(404, {"error": "not found"})

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body, indent=1).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = urllib.parse.urlsplit(self.path).path
        line = f"{datetime.datetime.now(datetime.timezone.utc).isoformat()} {self.command} {path} {code}\n"
        with self.lock, open(pathlib.Path(self.config["state_dir"], "requests.log"), "a", encoding="utf-8") as log:
            log.write(line)
        super().log_request(code, size)


def serve(config: dict, _args: argparse.Namespace) -> None:
    Handler.config = config
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(config["certificate"], config["key"])
    server = http.server.ThreadingHTTPServer(("", int(config.get("port", 8443))), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oidc-issuer", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", default=CONFIG, help="settings (JSON); default %(default)s")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve").set_defaults(run=serve)
    for name, run in (("keygen", keygen), ("remove", remove), ("mint", mint)):
        command = commands.add_parser(name)
        command.set_defaults(run=run)
        command.add_argument("--issuer", required=True)
        command.add_argument("--kid", required=True)
    commands.choices["keygen"].add_argument("--alg", choices=("RS256", "ES256"), default="RS256")
    minting = commands.choices["mint"]
    minting.add_argument("--claims", default="{}", help="JSON object merged over the default claims")
    minting.add_argument("--aud", default=AUDIENCE)
    minting.add_argument("--iss", default="")
    minting.add_argument("--exp-in", type=int, default=300, help="seconds; negative: expired")
    minting.add_argument("--iat-ago", type=int, default=0)
    minting.add_argument("--nbf-in", type=int, default=0)
    minting.add_argument("--drop", action="append", default=[], metavar="CLAIM")
    minting.add_argument("--alg", choices=FORGERIES, default="")
    minting.add_argument("--sign-with-kid", default="")
    minting.add_argument("--kid-header", default="")
    args = parser.parse_args(argv)
    with open(args.config, encoding="utf-8") as handle:
        config = json.load(handle)
    try:
        args.run(config, args)
    except (IssuerError, ValueError) as error:
        print(f"oidc-issuer: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
