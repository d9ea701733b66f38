"""Fixtures of the registry unit tests; the fake itself lives in registry_fakes.py."""
from __future__ import annotations

import typing as t

import pytest
from registry_fakes import FakeRegistry, make_client

from ansible_collections.dockyard.registry.plugins.module_utils._registry import transport as transport_module
from ansible_collections.dockyard.registry.plugins.module_utils._registry.client import RegistryClient


@pytest.fixture()
def fake() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture()
def client(fake: FakeRegistry) -> RegistryClient:
    return make_client(fake)


@pytest.fixture()
def patched_transport(fake: FakeRegistry, monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    """Route modules' real ``Transport`` (built in main()) to the fake registry."""
    class FakeRequest:
        def __init__(self, **_kwargs: t.Any) -> None:
            self.open = fake

    monkeypatch.setattr(transport_module, "Request", FakeRequest)
    return fake
