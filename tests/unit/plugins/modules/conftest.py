"""Run the account-store modules in-process against a temporary store file."""
from __future__ import annotations

import grp
import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.dockyard.registry.plugins.module_utils import _accounts


class ModuleRun:
    """Run a module's main() in-process with fixed arguments; ``raw()`` is the file it manages."""

    def __init__(self, path: str, capsys, fixed: dict) -> None:
        self.path = path
        self.capsys = capsys
        self.fixed = fixed

    def __call__(self, module, check_mode: bool = False, **params) -> dict:
        args = dict(self.fixed, **params, _ansible_check_mode=check_mode, _ansible_diff=True)
        self.capsys.readouterr()
        with patch_module_args(args), pytest.raises(SystemExit):
            module.main()
        return json.loads(self.capsys.readouterr().out)

    def raw(self) -> bytes:
        try:
            with open(self.path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return b""


class StoreRun(ModuleRun):
    """The account-store modules, on a temporary store file."""

    def __init__(self, store_path: str, capsys) -> None:
        super().__init__(store_path, capsys,
                         {"store_path": store_path, "store_group": grp.getgrgid(os.getgid()).gr_name})
        self.store_path = store_path

    def store(self) -> dict:
        return _accounts.load_store(self.store_path)


@pytest.fixture(autouse=True)
def fast_bcrypt(monkeypatch):
    monkeypatch.setattr(_accounts, "BCRYPT_ROUNDS", 4)


@pytest.fixture
def run(tmp_path, capsys):
    return StoreRun(str(tmp_path / "token" / "accounts.json"), capsys)


@pytest.fixture
def file_run(tmp_path, capsys):
    """A module whose only file is ``path`` (htpasswd)."""
    path = str(tmp_path / "htpasswd")
    return ModuleRun(path, capsys, {"path": path})


def _four_cases(run, module, **params) -> list:
    """Check mode, changed, idempotent, idempotent in check mode; checks and idempotent runs must not write."""
    before = run.raw()
    checked = run(module, check_mode=True, **params)
    assert run.raw() == before, "check mode wrote the store"
    applied = run(module, **params)
    after = run.raw()
    again = run(module, **params)
    again_checked = run(module, check_mode=True, **params)
    assert run.raw() == after, "an idempotent run wrote the store"
    assert checked["changed"] and applied["changed"], (checked, applied)
    assert not again["changed"] and not again_checked["changed"], (again, again_checked)
    return [checked, applied, again, again_checked]


@pytest.fixture
def four_cases(run):
    return lambda module, **params: _four_cases(run, module, **params)


@pytest.fixture
def file_four_cases(file_run):
    return lambda module, **params: _four_cases(file_run, module, **params)
