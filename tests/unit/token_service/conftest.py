"""Fixtures for the token service: a key pair, a store file, the configured app."""
from __future__ import annotations

import pytest

from token_fixtures import ISSUER, SERVICE, _accounts, sample_store, write_key_pair


@pytest.fixture(autouse=True)
def fast_bcrypt(monkeypatch):
    monkeypatch.setattr(_accounts, "BCRYPT_ROUNDS", 4)


@pytest.fixture(scope="session")
def key_pair(tmp_path_factory):
    return write_key_pair(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "accounts.json"
    _accounts.write_store(str(path), sample_store())
    return path


@pytest.fixture
def config(tmp_path, key_pair, store_path):
    from dockyard_token.app import Config
    _key, key_path, cert_path = key_pair
    return Config(issuer=ISSUER, service=SERVICE, key=str(key_path), certificate=str(cert_path),
                  store=str(store_path), lifetime=300, audit_log=str(tmp_path / "audit.jsonl"), audit_stdout=False)


@pytest.fixture
def app(config):
    from dockyard_token.app import TokenService
    return TokenService(config)
