# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The signing key, its certificate (the registry's rootcertbundle) and its libtrust key ID."""
from __future__ import annotations

import base64
import hashlib
import json
import typing as t

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils


class SigningKeyError(Exception):
    """The key or certificate is unusable: the service refuses to start."""


def libtrust_key_id(public_key: t.Any) -> str:
    """The key ID Distribution 2.8 indexes its rootcertbundle by (docker/libtrust).

    SHA-256 of the DER SubjectPublicKeyInfo, truncated to 240 bits, base32 without
    padding, in twelve groups of four joined by ':'.
    """
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(encoded[index:index + 4] for index in range(0, len(encoded), 4))


class SigningKey(t.NamedTuple):
    private_key: t.Any
    key_id: str
    certificate_der_b64: str


def load_signing_key(key_path: str, certificate_path: str) -> SigningKey:
    try:
        with open(key_path, "rb") as handle:
            private_key = serialization.load_pem_private_key(handle.read(), password=None)
        with open(certificate_path, "rb") as handle:
            certificate = x509.load_pem_x509_certificate(handle.read())
    except (OSError, ValueError, TypeError) as exc:
        raise SigningKeyError("cannot load the signing key or certificate: %s" % exc) from None
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or private_key.curve.name != "secp256r1":
        raise SigningKeyError("%s must be an EC P-256 key (ES256)" % key_path)
    if certificate.public_key().public_numbers() != private_key.public_key().public_numbers():
        raise SigningKeyError("%s does not belong to the key %s" % (certificate_path, key_path))
    der = certificate.public_bytes(serialization.Encoding.DER)
    return SigningKey(private_key, libtrust_key_id(private_key.public_key()), base64.b64encode(der).decode("ascii"))


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class TokenSigner:
    """Signs JWTs with ES256 (RFC 7515/7518): the same bytes PyJWT would make, at half the cost.

    The header is encoded once; per token: the claims as compact JSON, SHA-256 of the
    signing input, an ECDSA P-256 signature, and its DER (r, s) turned into the JWS form,
    r and s as 32 big-endian bytes each.
    """

    def __init__(self, key: SigningKey, x5c: bool = False) -> None:
        header: dict = {"alg": "ES256", "typ": "JWT", "kid": key.key_id}
        if x5c:
            header["x5c"] = [key.certificate_der_b64]
        self.header = header
        self._prefix = _b64url(json.dumps(header, separators=(",", ":")).encode("utf-8")) + b"."
        self._private_key = key.private_key
        self._algorithm = ec.ECDSA(utils.Prehashed(hashes.SHA256()))

    def sign(self, claims: dict) -> str:
        signing_input = self._prefix + _b64url(json.dumps(claims, separators=(",", ":")).encode("utf-8"))
        der = self._private_key.sign(hashlib.sha256(signing_input).digest(), self._algorithm)
        r, s = utils.decode_dss_signature(der)
        return (signing_input + b"." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))).decode("ascii")
