"""dockyard.registry.access_rule against a temporary store."""
from __future__ import annotations

import pytest

from ansible_collections.dockyard.registry.plugins.modules import access_rule


def test_add(run, four_cases):
    checked, applied, _again, _checked_again = four_cases(
        access_rule, subject="group:team-a", repository="team-a/*", actions=["push", "pull", "pull"])
    rule = {"subject": "group:team-a", "repository": "team-a/*", "actions": ["pull", "push"]}
    assert checked["rule"] == rule and applied["rule"] == rule
    assert applied["diff"] == {"before": {}, "after": rule}
    assert run.store()["rules"] == [rule]


def test_change_actions(run, four_cases):
    run(access_rule, subject="anonymous", repository="public/*", actions=["pull"])
    _checked, applied, _again, _checked_again = four_cases(
        access_rule, subject="anonymous", repository="public/*", actions=["pull", "push"])
    assert applied["diff"]["before"]["actions"] == ["pull"] and applied["rule"]["actions"] == ["pull", "push"]
    assert len(run.store()["rules"]) == 1


def test_rules_are_keyed_by_subject_and_pattern(run):
    run(access_rule, subject="authenticated", repository="${user}/*", actions=["pull", "push", "delete"])
    run(access_rule, subject="group:admins", repository="*", actions=["catalog"])
    run(access_rule, subject="robot:robot$team-a+ci", repository="team-a/*", actions=["pull"])
    assert len(run.store()["rules"]) == 3


def test_remove(run, four_cases):
    run(access_rule, subject="group:team-a", repository="team-a/*", actions=["pull"])
    _checked, applied, _again, _checked_again = four_cases(
        access_rule, subject="group:team-a", repository="team-a/*", state="absent")
    assert applied["rule"] is None and run.store()["rules"] == []


@pytest.mark.parametrize("params, message", [
    ({"subject": "team-a", "repository": "x", "actions": ["pull"]}, "subject 'team-a' is invalid"),
    ({"subject": "robot:ci", "repository": "x", "actions": ["pull"]}, "robot account name 'ci' is invalid"),
    ({"subject": "user:a", "repository": "Team/*", "actions": ["pull"]}, "repository pattern 'Team/*' is invalid"),
    ({"subject": "user:a", "repository": "a/**", "actions": ["pull"]}, "is invalid"),
    ({"subject": "user:a", "repository": "a//b", "actions": ["pull"]}, "is invalid"),
    ({"subject": "user:a", "repository": "a/*", "actions": ["catalog"]}, "only granted with the repository pattern '*'"),
    ({"subject": "user:a", "repository": "a/*", "actions": ["write"]}, "value of actions must be one or more of"),
    ({"subject": "user:a", "repository": "a/*"}, "state is present but all of the following are missing: actions"),
])
def test_invalid_input_fails_cleanly(run, params, message):
    result = run(access_rule, **params)
    assert result["failed"] and message in result["msg"], result["msg"]
