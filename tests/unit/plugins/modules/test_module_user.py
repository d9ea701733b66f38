"""dockyard.registry.user against a temporary store."""
from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.dockyard.registry.plugins.module_utils import _accounts
from ansible_collections.dockyard.registry.plugins.modules import user


def test_create(run, four_cases):
    checked, applied, again, _checked_again = four_cases(user, name="alice", password="pw-1", groups=["team-a", "dev"])
    expected = {"name": "alice", "groups": ["dev", "team-a"], "disabled": False, "password": "(changed)"}
    assert checked["diff"] == {"before": {}, "after": expected}
    assert applied["user"] == {"name": "alice", "groups": ["dev", "team-a"], "disabled": False}
    assert applied["password_changed"] and not again["password_changed"]
    stored = run.store()["users"]["alice"]
    assert _accounts.check_secret("pw-1", stored["password_hash"]) and "pw-1" not in run.raw().decode()
    assert stat.S_IMODE(os.stat(run.store_path).st_mode) == 0o640


def test_password_change(run, four_cases):
    run(user, name="alice", password="pw-1")
    checked, _applied, again, _checked_again = four_cases(user, name="alice", password="pw-2")
    assert checked["password_changed"] and checked["diff"]["after"]["password"] == "(changed)"
    assert not again["password_changed"]
    assert _accounts.check_secret("pw-2", run.store()["users"]["alice"]["password_hash"])


def test_update_password_on_create_keeps_the_password(run):
    run(user, name="alice", password="pw-1")
    result = run(user, name="alice", password="pw-2", update_password="on_create")
    assert not result["changed"]
    assert _accounts.check_secret("pw-1", run.store()["users"]["alice"]["password_hash"])


def test_groups_replace_and_append(run, four_cases):
    run(user, name="bob", password="pw", groups=["a", "b"])
    four_cases(user, name="bob", groups=["c"], append=True)
    assert run.store()["users"]["bob"]["groups"] == ["a", "b", "c"]
    four_cases(user, name="bob", groups=["a"])
    assert run.store()["users"]["bob"]["groups"] == ["a"]
    assert not run(user, name="bob")["changed"]


def test_disable(run, four_cases):
    run(user, name="bob", password="pw")
    _checked, applied, _again, _checked_again = four_cases(user, name="bob", disabled=True)
    assert applied["user"]["disabled"] and applied["diff"]["before"]["disabled"] is False


def test_remove(run, four_cases):
    run(user, name="bob", password="pw")
    _checked, applied, _again, _checked_again = four_cases(user, name="bob", state="absent")
    assert applied["user"] is None and applied["diff"]["after"] == {}
    assert "bob" not in run.store()["users"]


def test_absent_when_there_is_no_store(run):
    result = run(user, name="ghost", state="absent")
    assert not result["changed"] and run.raw() == b""


@pytest.mark.parametrize("params, message", [
    ({"name": "Alice", "password": "x"}, "user name 'Alice' is invalid"),
    ({"name": "robot$x", "password": "x"}, "is invalid"),
    ({"name": "alice", "password": "x", "groups": ["Bad Group"]}, "group name 'Bad Group' is invalid"),
    ({"name": "alice"}, "password is required to create user alice"),
    ({"name": "alice", "password": "x" * 73}, "1-72 bytes"),
])
def test_invalid_input_fails_cleanly(run, params, message):
    result = run(user, **params)
    assert result["failed"] and message in result["msg"] and "Traceback" not in result["msg"]
    assert "exception" not in result


def test_corrupt_store_fails_cleanly(run):
    os.makedirs(os.path.dirname(run.store_path))
    with open(run.store_path, "w", encoding="utf-8") as handle:
        handle.write("{")
    result = run(user, name="alice", password="x")
    assert result["failed"] and "is not valid JSON" in result["msg"]


def test_password_is_not_returned(run):
    result = run(user, name="alice", password="very-secret-pw")
    assert "very-secret-pw" not in repr(result)
