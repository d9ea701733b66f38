"""Scope and Basic-header parsing: examples, and properties over arbitrary inputs."""
from __future__ import annotations

import base64
import time

import pytest
from hypothesis import given, settings, strategies as st

from token_fixtures import basic
from dockyard_token.scopes import (CredentialsError, RequestError, Scope, parse_basic, parse_scope, parse_scopes,
                                   valid_repository_name)


@pytest.mark.parametrize("text, expected", [
    ("repository:team-a/app:pull", Scope("repository", "", "team-a/app", ("pull",))),
    ("repository:team-a/app:pull,push", Scope("repository", "", "team-a/app", ("pull", "push"))),
    ("repository:localhost:5000/team-a/app:pull,push",
     Scope("repository", "", "localhost:5000/team-a/app", ("pull", "push"))),
    ("repository:registry.example.com:443/a/b/c:*", Scope("repository", "", "registry.example.com:443/a/b/c", ("*",))),
    ("registry:catalog:*", Scope("registry", "", "catalog", ("*",))),
    ("repository(plugin):vieux/sshfs:pull", Scope("repository", "plugin", "vieux/sshfs", ("pull",))),
    ("repository:a__b.c-d---e:pull,pull,", Scope("repository", "", "a__b.c-d---e", ("pull",))),
    ("repository:team-a/app:", Scope("repository", "", "team-a/app", ())),
])
def test_valid_scopes(text, expected):
    assert parse_scope(text) == expected
    assert parse_scope(str(expected)) == expected


@pytest.mark.parametrize("text", [
    "", "repository", "repository:name", "Repository:a:pull", "repository:A:pull", "repository:a/B:pull", "repository:a//b:pull",
    "repository:-a:pull", "repository:a-:pull", "repository:a___b:pull", "repository:a..b:pull",
    "repository:a/b:PULL", "repository:a/b:pu sh", "repository::pull", "repository:a:b:c:pull",
    "repository:bad_host:5000/a:pull", "repository:host:port/a:pull", "registry::*",
    "repository:" + "a" * 256 + ":pull", "repository(x:a:pull", "registry:cat alog:*",
])
def test_invalid_scopes(text):
    with pytest.raises(RequestError):
        parse_scope(text)


def test_several_scopes_in_one_value_and_several_values():
    scopes = parse_scopes(["repository:a:pull repository:b:push", "registry:catalog:*", ""])
    assert [scope.name for scope in scopes] == ["a", "b", "catalog"]


def test_scope_count_is_bounded():
    with pytest.raises(RequestError):
        parse_scopes(["repository:a:pull"] * 33)


# Bounds on CPU time (thread_time), not wall time: a busy machine must not fail them, while
# a parser that backtracks exponentially still would.
@pytest.mark.parametrize("evil", [
    "a" + "-" * 4000 + "!", "a" + "_a" * 2000 + "_", "a" + "-a" * 2000 + "A", ("a." * 2000) + ".",
    "a" * 8000 + "-", "x." * 4000 + ":" + "9" * 10 + "/a",
])
def test_backtracking_bombs_are_rejected_fast(evil):
    for text in (evil, "repository:%s:pull" % evil, "repository:a/%s:pull" % evil):
        started = time.thread_time()
        with pytest.raises(RequestError):
            parse_scope(text)
        assert time.thread_time() - started < 0.01
    started = time.thread_time()
    assert not valid_repository_name(evil)
    assert time.thread_time() - started < 0.01


SCOPE_ALPHABET = st.sampled_from(list("repositoryegcal:/,.-_*() 5AZ\x00é") + ["repository:", ":pull", "--", "__"])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=600), st.lists(SCOPE_ALPHABET, max_size=300).map("".join)))
def test_any_scope_text_parses_or_is_rejected_quickly(text):
    started = time.thread_time()
    try:
        scope = parse_scope(text)
    except RequestError:
        pass
    else:
        assert parse_scope(str(scope)) == scope
        assert ":" not in scope.type and "," not in "".join(scope.actions)
    assert time.thread_time() - started < 0.01


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from("a-_./:,*"), min_size=1, max_size=64).map(lambda s: (s * 8192)[:8192]))
def test_8k_inputs_parse_or_are_rejected_in_milliseconds(text):
    started = time.thread_time()
    for candidate in (text, "repository:" + text + ":pull"):
        with pytest.raises(RequestError):
            parse_scopes([candidate.replace(" ", "")])
    assert not valid_repository_name(text)
    assert time.thread_time() - started < 0.02


NAME = st.from_regex(r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8}){0,3}(?:/[a-z0-9]{1,8}){0,3}", fullmatch=True)


@given(NAME, st.lists(st.sampled_from(["pull", "push", "delete", "*"]), min_size=1, unique=True))
def test_generated_valid_scopes_round_trip(name, actions):
    scope = parse_scope("repository:%s:%s" % (name, ",".join(actions)))
    assert scope == Scope("repository", "", name, tuple(actions))


# --- Basic -----------------------------------------------------------------------------


def test_basic_examples():
    assert parse_basic(None) is None
    assert parse_basic("") is None
    assert parse_basic(basic("robot$team-a+ci", "s3:cr:et")) == ("robot$team-a+ci", "s3:cr:et")
    assert parse_basic("basic " + basic("u", "p").split()[1]) == ("u", "p")


@pytest.mark.parametrize("header", [
    "Bearer abc", "Basic", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(),
    "Basic " + base64.b64encode(b":password").decode(), "Basic " + base64.b64encode(b"user:").decode(),
    "Basic " + base64.b64encode(b"\xff\xfe:x").decode(), "Basic " + "A" * 2000, "Digest x=y",
])
def test_basic_rejects(header):
    with pytest.raises(CredentialsError):
        parse_basic(header)


@given(st.text(min_size=1, max_size=100).filter(lambda s: ":" not in s), st.text(min_size=1, max_size=100))
def test_basic_round_trip(user, password):
    header = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode("utf-8", "surrogatepass")).decode()
    if len(header) <= 1024:
        try:
            assert parse_basic(header) == (user, password)
        except CredentialsError:
            # only lone surrogates cannot round-trip through UTF-8
            assert any(0xD800 <= ord(char) <= 0xDFFF for char in user + password)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=9000), st.binary(max_size=9000).map(lambda b: "Basic " + base64.b64encode(b).decode())))
def test_basic_any_header_parses_or_is_rejected_quickly(header):
    started = time.thread_time()
    try:
        result = parse_basic(header)
    except CredentialsError:
        result = "rejected"
    assert result is None or result == "rejected" or (isinstance(result, tuple) and len(result) == 2)
    assert time.thread_time() - started < 0.01
