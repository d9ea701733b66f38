"""tools/sigstore.py: the encrypted key it writes opens with the passphrase and only with it."""
from __future__ import annotations

import json
import pathlib
import stat
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "tools"))
import sigstore  # noqa: E402  pylint: disable=wrong-import-position


def test_key_pair_round_trip(tmp_path: pathlib.Path) -> None:
    from cryptography.hazmat.primitives import serialization

    pair = sigstore.generate_key_pair(tmp_path / "keys", "correct horse")
    text = pair.private.read_text()
    assert text.startswith("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    assert stat.S_IMODE(pair.private.stat().st_mode) == 0o600 == stat.S_IMODE(pair.passphrase_file.stat().st_mode)
    envelope = json.loads(sigstore._unpem(text, sigstore.PRIVATE_PEM_TYPE))
    assert envelope["kdf"]["params"] == {"N": 32768, "r": 8, "p": 1} and envelope["cipher"]["name"] == "nacl/secretbox"
    private = serialization.load_der_private_key(sigstore.decrypt_private_key(text, b"correct horse"), None)
    public = serialization.load_pem_public_key(pair.public.read_bytes())
    assert private.public_key().public_numbers() == public.public_numbers()
    with pytest.raises(ValueError, match="wrong passphrase"):
        sigstore.decrypt_private_key(text, b"wrong horse")


def test_secretbox_detects_a_flipped_bit() -> None:
    key, nonce = bytes(range(32)), bytes(range(24))
    box = sigstore.secretbox_seal(b"x" * 100, nonce, key)
    assert len(box) == 116 and sigstore.secretbox_open(box, nonce, key) == b"x" * 100
    damaged = box[:50] + bytes([box[50] ^ 1]) + box[51:]
    with pytest.raises(ValueError):
        sigstore.secretbox_open(damaged, nonce, key)


def test_policy_requires_the_key_and_rejects_the_rest() -> None:
    policy = json.loads(sigstore.policy({"127.0.0.1:5000/apps": "/k.pub"},
                                        {"type": "remapIdentity", "prefix": "a", "signedPrefix": "b"}))
    assert policy["default"] == [{"type": "reject"}]
    assert policy["transports"]["docker"]["127.0.0.1:5000/apps"] == [
        {"type": "sigstoreSigned", "keyPath": "/k.pub",
         "signedIdentity": {"type": "remapIdentity", "prefix": "a", "signedPrefix": "b"}}]
    assert "use-sigstore-attachments: true" in sigstore.registries_d("127.0.0.1:5000")
