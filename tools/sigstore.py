"""Sigstore signing with skopeo: key pairs without ``generate-sigstore-key``, and the recipe.

skopeo 1.9 (Debian 12) has no ``generate-sigstore-key`` (skopeo 1.11+ has), and Debian builds
it and podman 4.3 with sigstore disabled altogether ("Debian-local change: sigstore disabled"):
they neither sign nor verify. Debian 13's skopeo 1.18 does both; ``skopeo_command`` runs it from
the ``dockyard/debian-systemd:trixie`` image when the host's cannot. This tool writes the key pair:

- the private key: PEM ``ENCRYPTED SIGSTORE PRIVATE KEY`` whose body is the JSON envelope
  containers/image reads (the go-tuf "encrypted" format): ``kdf`` scrypt (N=32768, r=8, p=1,
  32-byte salt), ``cipher`` nacl/secretbox (XSalsa20-Poly1305, 24-byte nonce) and the
  ``ciphertext`` of the PKCS#8 DER of a P-256 key; byte strings in base64;
- the public key: PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo), what policy.json's ``keyPath`` names.

The secretbox is written here in plain Python (the key is 138 bytes; speed does not matter),
so nothing beyond ``cryptography`` (for the P-256 key) is needed.

It also writes the two configuration files a signing or verifying client needs and builds
the skopeo command lines, so that the integration tests and the Molecule checks (which run
the commands inside an instance) share one recipe:

    python3 tools/sigstore.py generate-key-pair DIR [--passphrase TEXT]
        -> DIR/sigstore.key, DIR/sigstore.pub, DIR/passphrase
    python3 tools/sigstore.py registries-d            # registries.d YAML: use-sigstore-attachments
    python3 tools/sigstore.py policy SCOPE=PUBKEY ... # policy.json: sigstoreSigned for each scope
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import pathlib
import secrets
import shutil
import struct
import subprocess
import sys
import typing as t

PRIVATE_PEM_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"
SCRYPT = {"N": 32768, "r": 8, "p": 1}  # the only parameters containers/image accepts
TRIXIE_IMAGE = "dockyard/debian-systemd:trixie"  # has Debian 13's skopeo 1.18
_MASK = 0xFFFFFFFF


# -- XSalsa20-Poly1305 (NaCl secretbox) ------------------------------------------------------

def _rotl(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (32 - shift))) & _MASK


def _salsa_rounds(state: list[int]) -> list[int]:
    x = list(state)
    for _double_round in range(10):
        for a, b, c, d in ((0, 4, 8, 12), (5, 9, 13, 1), (10, 14, 2, 6), (15, 3, 7, 11),
                           (0, 1, 2, 3), (5, 6, 7, 4), (10, 11, 8, 9), (15, 12, 13, 14)):
            x[b] ^= _rotl((x[a] + x[d]) & _MASK, 7)
            x[c] ^= _rotl((x[b] + x[a]) & _MASK, 9)
            x[d] ^= _rotl((x[c] + x[b]) & _MASK, 13)
            x[a] ^= _rotl((x[d] + x[c]) & _MASK, 18)
    return x


def _state(key: bytes, middle: bytes) -> list[int]:
    """The Salsa20 input: constants, key, and 16 bytes of nonce/counter (or HSalsa20 input)."""
    k = struct.unpack("<8I", key)
    m = struct.unpack("<4I", middle)
    constants = struct.unpack("<4I", b"expand 32-byte k")
    return [constants[0], *k[:4], constants[1], *m, constants[2], *k[4:], constants[3]]


def _hsalsa20(key: bytes, nonce16: bytes) -> bytes:
    x = _salsa_rounds(_state(key, nonce16))
    return struct.pack("<8I", *(x[i] for i in (0, 5, 10, 15, 6, 7, 8, 9)))


def _xsalsa20_stream(key: bytes, nonce: bytes, length: int) -> bytes:
    subkey = _hsalsa20(key, nonce[:16])
    out = bytearray()
    counter = 0
    while len(out) < length:
        state = _state(subkey, nonce[16:24] + struct.pack("<Q", counter))
        mixed = _salsa_rounds(state)
        out += struct.pack("<16I", *((a + b) & _MASK for a, b in zip(mixed, state)))
        counter += 1
    return bytes(out[:length])


def _poly1305(key: bytes, message: bytes) -> bytes:
    r = int.from_bytes(key[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(key[16:], "little")
    prime = (1 << 130) - 5
    accumulator = 0
    for start in range(0, len(message), 16):
        block = message[start:start + 16] + b"\x01"
        accumulator = (accumulator + int.from_bytes(block, "little")) * r % prime
    return ((accumulator + s) & ((1 << 128) - 1)).to_bytes(16, "little")


def secretbox_seal(plaintext: bytes, nonce: bytes, key: bytes) -> bytes:
    """NaCl ``crypto_secretbox``: the 16-byte Poly1305 tag, then the XSalsa20 ciphertext."""
    stream = _xsalsa20_stream(key, nonce, 32 + len(plaintext))
    ciphertext = bytes(a ^ b for a, b in zip(plaintext, stream[32:]))
    return _poly1305(stream[:32], ciphertext) + ciphertext


def secretbox_open(box: bytes, nonce: bytes, key: bytes) -> bytes:
    stream = _xsalsa20_stream(key, nonce, 32 + max(len(box) - 16, 0))
    tag, ciphertext = box[:16], box[16:]
    if len(box) < 16 or not secrets.compare_digest(_poly1305(stream[:32], ciphertext), tag):
        raise ValueError("secretbox: the tag does not match (wrong passphrase or damaged key)")
    return bytes(a ^ b for a, b in zip(ciphertext, stream[32:]))


# -- the encrypted private key --------------------------------------------------------------

def _scrypt(passphrase: bytes, salt: bytes) -> bytes:
    return hashlib.scrypt(passphrase, salt=salt, n=SCRYPT["N"], r=SCRYPT["r"], p=SCRYPT["p"],
                          maxmem=64 * 1024 * 1024, dklen=32)


def _pem(kind: str, data: bytes) -> str:
    body = base64.b64encode(data).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN %s-----\n%s\n-----END %s-----\n" % (kind, "\n".join(lines), kind)


def _unpem(text: str, kind: str) -> bytes:
    begin, end = "-----BEGIN %s-----" % kind, "-----END %s-----" % kind
    if begin not in text or end not in text:
        raise ValueError("not a PEM %s" % kind)
    return base64.b64decode("".join(text.split(begin, 1)[1].split(end, 1)[0].split()))


def encrypt_private_key(pkcs8_der: bytes, passphrase: bytes) -> str:
    salt, nonce = secrets.token_bytes(32), secrets.token_bytes(24)
    envelope = {
        "kdf": {"name": "scrypt", "params": SCRYPT, "salt": base64.b64encode(salt).decode()},
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(secretbox_seal(pkcs8_der, nonce, _scrypt(passphrase, salt))).decode(),
    }
    return _pem(PRIVATE_PEM_TYPE, json.dumps(envelope).encode())


def decrypt_private_key(pem_text: str, passphrase: bytes) -> bytes:
    """The PKCS#8 DER inside a sigstore private key (to check what this tool writes)."""
    envelope = json.loads(_unpem(pem_text, PRIVATE_PEM_TYPE))
    if envelope["kdf"]["name"] != "scrypt" or envelope["cipher"]["name"] != "nacl/secretbox":
        raise ValueError("unknown kdf or cipher")
    key = _scrypt(passphrase, base64.b64decode(envelope["kdf"]["salt"]))
    return secretbox_open(base64.b64decode(envelope["ciphertext"]),
                          base64.b64decode(envelope["cipher"]["nonce"]), key)


class KeyPair(t.NamedTuple):
    private: pathlib.Path
    public: pathlib.Path
    passphrase_file: pathlib.Path


def generate_key_pair(directory: str | os.PathLike[str], passphrase: str | None = None) -> KeyPair:
    """Write sigstore.key (0600), sigstore.pub and passphrase (0600) into ``directory``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    folder = pathlib.Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    phrase = passphrase if passphrase is not None else secrets.token_urlsafe(18)
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    pair = KeyPair(folder / "sigstore.key", folder / "sigstore.pub", folder / "passphrase")
    for path, text in ((pair.private, encrypt_private_key(der, phrase.encode())), (pair.passphrase_file, phrase)):
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
    pair.public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return pair


# -- client configuration and command lines --------------------------------------------------

def registries_d(scope: str = "") -> str:
    """registries.d YAML that makes skopeo/podman write and read sigstore signatures as
    ``sha256-<hex>.sig`` tags next to the image (for ``scope``, or every registry)."""
    if scope:
        return "docker:\n  %s:\n    use-sigstore-attachments: true\n" % json.dumps(scope)
    return "default-docker:\n  use-sigstore-attachments: true\n"


def policy(scopes: t.Mapping[str, str], signed_identity: t.Mapping[str, str] | None = None) -> str:
    """policy.json: images of each scope (``host:port/repo``) must carry a sigstore signature by the
    public key at the path given; everything else is rejected, local layouts (dir:, oci:) accepted."""
    requirement: dict[str, t.Any] = {"type": "sigstoreSigned"}
    docker = {}
    for scope, public_key in scopes.items():
        entry = dict(requirement, keyPath=str(public_key))
        if signed_identity is not None:
            entry["signedIdentity"] = dict(signed_identity)
        docker[scope] = [entry]
    accept = {"": [{"type": "insecureAcceptAnything"}]}
    return json.dumps({"default": [{"type": "reject"}],
                       "transports": {"docker": docker, "dir": accept, "oci": accept}}, indent=2) + "\n"


def skopeo_supports_sigstore(skopeo: str = "skopeo") -> bool:
    """Debian 12's skopeo (and podman) are built with sigstore disabled: they refuse to sign
    ("Debian-local change: sigstore disabled") and reject every sigstoreSigned requirement."""
    path = shutil.which(skopeo)
    if path is None:
        return False
    with open(path, "rb") as handle:
        return b"sigstore disabled" not in handle.read()


def skopeo_command(mounts: t.Iterable[str] = (), image: str = TRIXIE_IMAGE) -> list[str] | None:
    """How to run a skopeo that can sign and verify sigstore signatures here: the host's own when
    it can, else Debian 13's in a throwaway container on the host network (``mounts`` are the
    directories it needs, mounted at the same paths); None when neither exists."""
    if skopeo_supports_sigstore():
        return ["skopeo"]
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "image", "inspect", image], capture_output=True,
                                        check=False).returncode != 0:
        return None
    volumes = [arg for path in sorted(set(map(str, mounts))) for arg in ("-v", "%s:%s" % (path, path))]
    return [docker, "run", "--rm", "--network", "host", *volumes, "--entrypoint", "skopeo", image]


def sign_argv(source: str, destination: str, key: KeyPair | t.Mapping[str, str], registries_dir: str,
              tls_verify: bool = False, skopeo: t.Sequence[str] = ("skopeo",)) -> list[str]:
    """skopeo copy that pushes ``source`` to ``destination`` (docker://...) and signs it there."""
    private = key.private if isinstance(key, KeyPair) else key["private"]
    phrase = key.passphrase_file if isinstance(key, KeyPair) else key["passphrase_file"]
    return [*skopeo, "--registries.d", str(registries_dir), "copy", "--quiet",
            "--dest-tls-verify=%s" % str(tls_verify).lower(), "--src-tls-verify=%s" % str(tls_verify).lower(),
            "--sign-by-sigstore-private-key", str(private), "--sign-passphrase-file", str(phrase),
            source, destination]


def verify_argv(image: str, target: str, policy_path: str, registries_dir: str, tls_verify: bool = False,
                skopeo: t.Sequence[str] = ("skopeo",)) -> list[str]:
    """skopeo copy out of the registry that succeeds only when policy.json accepts the signature."""
    return [*skopeo, "--registries.d", str(registries_dir), "--policy", str(policy_path), "copy", "--quiet",
            "--src-tls-verify=%s" % str(tls_verify).lower(), image, target]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate-key-pair", help="write sigstore.key, sigstore.pub, passphrase")
    generate.add_argument("directory")
    generate.add_argument("--passphrase", help="default: a random one, written to DIR/passphrase")
    scope = commands.add_parser("registries-d", help="print registries.d YAML with use-sigstore-attachments")
    scope.add_argument("--scope", default="", help="registry host[:port][/repo]; default every registry")
    rules = commands.add_parser("policy", help="print a policy.json requiring sigstore signatures")
    rules.add_argument("scopes", nargs="+", metavar="SCOPE=PUBLIC_KEY")
    args = parser.parse_args(argv)
    if args.command == "generate-key-pair":
        pair = generate_key_pair(args.directory, args.passphrase)
        print(json.dumps({name: str(value) for name, value in pair._asdict().items()}))
    elif args.command == "registries-d":
        sys.stdout.write(registries_d(args.scope))
    else:
        pairs = [item.partition("=") for item in args.scopes]
        if any(not sep or not name or not path for name, sep, path in pairs):
            parser.error("each scope is SCOPE=PUBLIC_KEY_PATH")
        sys.stdout.write(policy({name: path for name, _sep, path in pairs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
