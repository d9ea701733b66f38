"""Grant logic: patterns, groups, robots, expiry, anonymous, catalog; the store view."""
from __future__ import annotations

import datetime
import os

import pytest

from token_fixtures import sample_store
from dockyard_token import _accounts
from dockyard_token.accounts import Authenticator, StoreUnavailable, StoreView
from dockyard_token.grants import ANONYMOUS, Identity, RuleIndex
from dockyard_token.scopes import parse_scopes

ADMIN = Identity("user", "admin", ("admins",))
ALICE = Identity("user", "alice", ("team-a",))
BOB = Identity("user", "bob")
CI = Identity("robot", "robot$team-a+ci")
PULLER = Identity("robot", "robot$team-a+puller")


@pytest.fixture
def index():
    return RuleIndex(sample_store())


def granted(index, identity, *scopes):
    return {(item["type"], item["name"]): item["actions"] for item in index.grant(identity, parse_scopes(scopes))}


@pytest.mark.parametrize("pattern, name, user, expected", [
    ("*", "anything/at/all", None, True),
    ("team-a/*", "team-a/app", None, True),
    ("team-a/*", "team-a/sub/app", None, True),
    ("team-a/*", "team-a", None, False),
    ("team-a/*", "team-ab/app", None, False),
    ("team-a*", "team-ab/app", None, True),
    ("team-a/app", "team-a/app", None, True),
    ("team-a/app", "team-a/app2", None, False),
    ("*/base", "library/base", None, True),
    ("*/base", "library/base-x", None, False),
    ("a*b*c", "aXbYc", None, True),
    ("a*b*c", "acb", None, False),
    ("a*a", "a", None, False),
    ("${user}/*", "alice/app", "alice", True),
    ("${user}/*", "bob/app", "alice", False),
    ("${user}/*", "alice/app", None, False),
])
def test_match_pattern(pattern, name, user, expected):
    assert _accounts.match_pattern(pattern, name, user) is expected


def test_default_deny(index):
    assert granted(index, BOB, "repository:team-a/app:pull") == {}
    assert index.grant(ANONYMOUS, parse_scopes(["repository:team-a/app:pull"])) == []


def test_group_rule_and_intersection(index):
    assert granted(index, ALICE, "repository:team-a/app:pull,push,delete", "repository:team-b/x:pull") == {
        ("repository", "team-a/app"): ["pull", "push"]}


def test_user_rule(index):
    assert granted(index, BOB, "repository:team-b/x:pull,push") == {("repository", "team-b/x"): ["pull"]}


def test_personal_namespace(index):
    assert granted(index, BOB, "repository:bob/tool:pull,push,delete") == {
        ("repository", "bob/tool"): ["pull", "push", "delete"]}
    assert granted(index, BOB, "repository:alice/tool:pull") == {}
    assert granted(index, CI, "repository:robot/tool:pull") == {}


def test_anonymous_rules_apply_to_everyone(index):
    for identity in (ANONYMOUS, BOB, PULLER):
        assert granted(index, identity, "repository:public/base:pull,push") == {("repository", "public/base"): ["pull"]}


def test_authenticated_does_not_include_robots(index):
    index.by_subject.setdefault("authenticated", []).append(("shared/*", frozenset({"pull"})))
    assert granted(index, BOB, "repository:shared/x:pull") == {("repository", "shared/x"): ["pull"]}
    assert granted(index, CI, "repository:shared/x:pull") == {}
    assert granted(index, ANONYMOUS, "repository:shared/x:pull") == {}


def test_robot_permissions(index):
    assert granted(index, CI, "repository:team-a/app:pull,push,delete") == {("repository", "team-a/app"): ["pull", "push"]}
    assert granted(index, PULLER, "repository:team-a/app:pull,push") == {("repository", "team-a/app"): ["pull"]}
    assert granted(index, CI, "repository:team-b/x:pull,push") == {}


def test_robot_rules_add_up(index):
    index.by_subject["robot:robot$team-a+puller"] = [("team-c/app", frozenset({"push"}))]
    assert granted(index, PULLER, "repository:team-c/app:pull,push") == {("repository", "team-c/app"): ["push"]}


def test_catalog(index):
    assert granted(index, ADMIN, "registry:catalog:*") == {("registry", "catalog"): ["*"]}
    for identity in (ALICE, BOB, CI, ANONYMOUS):
        assert granted(index, identity, "registry:catalog:*") == {}
    assert granted(index, ADMIN, "registry:other:*", "registry:catalog:pull") == {}


def test_star_needs_every_repository_action(index):
    assert granted(index, ADMIN, "repository:x/y:*") == {("repository", "x/y"): ["*"]}
    assert granted(index, ALICE, "repository:team-a/y:*") == {}


def test_scopes_for_one_resource_merge(index):
    assert index.grant(ALICE, parse_scopes(["repository:team-a/y:pull", "repository:team-a/y:push,pull"])) == [
        {"type": "repository", "name": "team-a/y", "actions": ["pull", "push"]}]


def test_unknown_types_and_classes_get_nothing(index):
    assert granted(index, ADMIN, "repository(plugin):x/y:pull", "thing:x:pull") == {}


# --- authentication --------------------------------------------------------------------

@pytest.fixture
def authenticator():
    return Authenticator(ttl=60)


@pytest.mark.parametrize("account, password, subject, reason", [
    ("alice", "alice-pw", "user:alice", ""),
    ("alice", "wrong", None, "wrong credentials"),
    ("nobody", "x", None, "wrong credentials"),
    ("mallory", "mallory-pw", None, "user disabled"),
    ("robot$team-a+ci", "ci-secret", "robot:robot$team-a+ci", ""),
    ("robot$team-a+ci", "ci-secret" * 10, None, "wrong credentials"),
    ("robot$old", "old-secret", None, "robot account expired"),
    ("robot$off", "off-secret", None, "robot account disabled"),
    ("robot$nobody", "x", None, "wrong credentials"),
])
def test_authenticate(index, authenticator, account, password, subject, reason):
    identity, _cached, why = authenticator.authenticate(index, account, password)
    assert (identity.subject if identity else None, why) == (subject, reason)


def test_groups_come_from_the_store(index, authenticator):
    identity, _cached, _reason = authenticator.authenticate(index, "alice", "alice-pw")
    assert identity.groups == ("team-a",)


def test_cache_hits_only_for_the_same_password_and_hash(index, authenticator):
    assert authenticator.authenticate(index, "alice", "alice-pw")[1] is False
    assert authenticator.authenticate(index, "alice", "alice-pw")[1] is True
    assert authenticator.authenticate(index, "alice", "other")[0] is None
    index.store["users"]["alice"]["password_hash"] = _accounts.hash_secret("new-pw")
    assert authenticator.authenticate(index, "alice", "alice-pw")[0] is None
    assert authenticator.authenticate(index, "alice", "new-pw")[1] is False


def test_cache_never_holds_the_password(index, authenticator):
    authenticator.authenticate(index, "alice", "alice-pw")
    assert len(authenticator.cache) == 1 and all(b"alice-pw" not in key for key in authenticator.cache)


def test_disabling_takes_effect_through_the_cache(index, authenticator):
    assert authenticator.authenticate(index, "robot$team-a+ci", "ci-secret")[0] is not None
    index.store["robots"]["robot$team-a+ci"]["disabled"] = True
    assert authenticator.authenticate(index, "robot$team-a+ci", "ci-secret")[2] == "robot account disabled"


def test_expiry_is_checked_at_each_request(index, authenticator):
    robot = index.store["robots"]["robot$team-a+ci"]
    robot["expires_at"] = _accounts.format_time(_accounts.utcnow() + datetime.timedelta(hours=1))
    assert authenticator.authenticate(index, "robot$team-a+ci", "ci-secret")[0] is not None
    robot["expires_at"] = _accounts.format_time(_accounts.utcnow() - datetime.timedelta(seconds=1))
    assert authenticator.authenticate(index, "robot$team-a+ci", "ci-secret")[2] == "robot account expired"


def test_cache_off(index):
    authenticator = Authenticator(ttl=0)
    for _attempt in range(2):
        assert authenticator.authenticate(index, "alice", "alice-pw")[1] is False


def test_cache_is_bounded(index):
    authenticator = Authenticator(ttl=60, size=2)
    for account in ("alice", "bob", "admin"):
        authenticator.authenticate(index, account, account + "-pw")
    assert len(authenticator.cache) == 2


# --- the live store --------------------------------------------------------------------

def test_store_view_reloads_on_change(store_path):
    view = StoreView(str(store_path))
    first = view.current()
    assert view.current() is first
    store = sample_store()
    del store["users"]["bob"]
    _accounts.write_store(str(store_path), store)
    second = view.current()
    assert second is not first and "bob" not in second.store["users"]


def test_store_view_missing_store_is_empty(tmp_path):
    assert StoreView(str(tmp_path / "none.json")).current().store == _accounts.empty_store()


def test_store_view_fails_closed_on_a_broken_store(store_path):
    view = StoreView(str(store_path))
    view.current()
    store_path.write_text("{not json")
    os.utime(store_path, ns=(1, 1))
    with pytest.raises(StoreUnavailable):
        view.current()
