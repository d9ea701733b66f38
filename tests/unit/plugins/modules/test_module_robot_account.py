"""dockyard.registry.robot_account against a temporary store."""
from __future__ import annotations

import base64
import datetime
import json

import pytest

from ansible_collections.dockyard.registry.plugins.module_utils import _accounts
from ansible_collections.dockyard.registry.plugins.modules import robot_account

NAME = "robot$team-a+ci"
PUSH = [{"repository": "team-a/*", "actions": ["push", "pull"]}]


def test_create(run, four_cases):
    checked, applied, again, again_checked = four_cases(
        robot_account, name=NAME, permissions=PUSH, expires_in="90d", description="CI", registry_host="reg.example:443")
    assert checked["secret"] is None and checked["docker_config"] is None
    secret = applied["secret"]
    assert secret and len(secret) >= 40
    assert again["secret"] is None and again_checked["secret"] is None and again["docker_config"] is None
    auth = applied["docker_config"]["auths"]["reg.example:443"]["auth"]
    assert base64.b64decode(auth).decode() == "%s:%s" % (NAME, secret)
    robot = run.store()["robots"][NAME]
    assert _accounts.check_secret(secret, robot["secret_hash"]) and secret not in run.raw().decode()
    assert robot["permissions"] == [{"repository": "team-a/*", "actions": ["pull", "push"]}]
    expires = _accounts.parse_time(robot["expires_at"])
    assert abs((expires - _accounts.utcnow()) - datetime.timedelta(days=90)) < datetime.timedelta(minutes=1)
    assert applied["robot"]["created_at"] == applied["robot"]["rotated_at"]
    assert not applied["expires_soon"] and applied["diff"]["before"] == {}
    assert "secret" not in repr(applied["diff"]).replace("secret_hash", "")


def test_later_runs_do_not_move_expires_in(run):
    first = run(robot_account, name=NAME, permissions=PUSH, expires_in="90d")
    second = run(robot_account, name=NAME, permissions=PUSH, expires_in="30d")
    assert not second["changed"] and second["robot"]["expires_at"] == first["robot"]["expires_at"]


def test_rotate(run):
    first = run(robot_account, name=NAME, permissions=PUSH)
    checked = run(robot_account, name=NAME, rotate=True, check_mode=True)
    assert checked["changed"] and checked["secret"] is None
    assert _accounts.check_secret(first["secret"], run.store()["robots"][NAME]["secret_hash"])
    rotated = run(robot_account, name=NAME, rotate=True, expires_in="1d")
    assert rotated["changed"] and rotated["secret"] != first["secret"]
    stored = run.store()["robots"][NAME]["secret_hash"]
    assert _accounts.check_secret(rotated["secret"], stored) and not _accounts.check_secret(first["secret"], stored)
    assert rotated["robot"]["expires_at"] is not None and rotated["expires_soon"]


def test_change_permissions(run, four_cases):
    run(robot_account, name=NAME, permissions=PUSH)
    _checked, applied, _again, _checked_again = four_cases(
        robot_account, name=NAME, permissions=[{"repository": "team-a/app", "actions": ["pull"]}])
    assert applied["diff"]["before"]["permissions"] != applied["diff"]["after"]["permissions"]
    assert applied["secret"] is None


def test_revoke_and_reenable(run, four_cases):
    run(robot_account, name=NAME, permissions=PUSH)
    four_cases(robot_account, name=NAME, disabled=True)
    assert run.store()["robots"][NAME]["disabled"]
    four_cases(robot_account, name=NAME, disabled=False)


def test_expires_at_and_never(run, four_cases):
    run(robot_account, name=NAME, permissions=PUSH)
    _checked, applied, _again, _checked_again = four_cases(robot_account, name=NAME, expires_at="2030-01-31")
    assert applied["robot"]["expires_at"] == "2030-01-31T00:00:00Z" and not applied["expires_soon"]
    four_cases(robot_account, name=NAME, expires_at="2030-01-31T12:00:00+02:00")
    assert run.store()["robots"][NAME]["expires_at"] == "2030-01-31T10:00:00Z"
    four_cases(robot_account, name=NAME, expires_at="never")
    assert run.store()["robots"][NAME]["expires_at"] is None


def test_expires_soon_and_expired(run):
    soon = (_accounts.utcnow() + datetime.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = run(robot_account, name=NAME, permissions=PUSH, expires_at=soon)
    assert result["expires_soon"] and not result["robot"]["expired"]
    assert "expires at" in json.dumps(result["warnings"])
    assert not run(robot_account, name=NAME, warn_before="1d")["expires_soon"]
    result = run(robot_account, name=NAME, expires_at="2001-01-01")
    assert result["robot"]["expired"] and result["expires_soon"]


def test_remove(run, four_cases):
    run(robot_account, name=NAME, permissions=PUSH)
    _checked, applied, _again, _checked_again = four_cases(robot_account, name=NAME, state="absent")
    assert applied["robot"] is None and NAME not in run.store()["robots"]


@pytest.mark.parametrize("params, message", [
    ({"name": "ci"}, "robot account name 'ci' is invalid"),
    ({"name": "robot$Team"}, "is invalid"),
    ({"name": NAME, "permissions": [{"repository": "Team-A/*", "actions": ["pull"]}]}, "repository pattern"),
    ({"name": NAME, "permissions": [{"repository": "a/*", "actions": ["fly"]}]}, "must be one or more of"),
    ({"name": NAME, "permissions": [{"repository": "a/*", "actions": ["catalog"]}]}, "catalog"),
    ({"name": NAME, "expires_in": "90 days"}, "duration '90 days' is invalid"),
    ({"name": NAME, "expires_in": "0d"}, "is invalid"),
    ({"name": NAME, "expires_at": "next tuesday"}, "time 'next tuesday' is invalid"),
    ({"name": NAME, "expires_in": "1d", "expires_at": "2030-01-01"}, "mutually exclusive"),
    ({"name": NAME, "warn_before": "soon"}, "duration 'soon' is invalid"),
])
def test_invalid_input_fails_cleanly(run, params, message):
    result = run(robot_account, **params)
    assert result["failed"] and message in result["msg"], result["msg"]
    assert run.raw() == b""
