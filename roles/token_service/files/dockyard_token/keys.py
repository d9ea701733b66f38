# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The signing key, its certificate (the registry's rootcertbundle) and its libtrust key ID."""
from __future__ import annotations

import base64
import hashlib
import typing as t

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


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
