"""Validation grammar, durations, version ordering and retention selection on their own."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.dockyard.registry.plugins.module_utils._registry import validation
from ansible_collections.dockyard.registry.plugins.module_utils._registry.errors import InvalidInput
from ansible_collections.dockyard.registry.plugins.module_utils._registry.inventory import parse_time
from ansible_collections.dockyard.registry.plugins.module_utils._registry.retention import version_key


@pytest.mark.parametrize("name", ["a", "apps/web", "a.b_c__d-e/f--g", "x" * 255, "0/1/2"])
def test_valid_repository_names(name: str) -> None:
    assert validation.repository(name) == name


@pytest.mark.parametrize("name", ["", "Apps", "a//b", "/a", "a/", "a_", "-a", "a___b", "x" * 256, "a:b"])
def test_invalid_repository_names(name: str) -> None:
    with pytest.raises(InvalidInput):
        validation.repository(name)


@pytest.mark.parametrize("text, seconds", [("30d", 30 * 86400), ("12h", 43200), ("1d12h", 129600),
                                           ("1w", 604800), ("90m", 5400), ("45s", 45), ("3600", 3600),
                                           ("1d 2h", 93600)])
def test_durations(text: str, seconds: int) -> None:
    assert validation.duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "30x", "30 days", "-1d", "1.5d", "1d!"])
def test_unknown_durations(text: str) -> None:
    with pytest.raises(InvalidInput, match="is not a duration"):
        validation.duration(text)


def test_version_precedence() -> None:
    tags = ["1.10.0", "1.2.0", "v1.9", "2.0.0-rc.1", "2.0.0", "2.0.0-rc.10", "2.0.0-alpha", "1.2.0-rc.2"]
    assert sorted(tags, key=version_key) == ["1.2.0-rc.2", "1.2.0", "v1.9", "1.10.0", "2.0.0-alpha",
                                             "2.0.0-rc.1", "2.0.0-rc.10", "2.0.0"]
    assert version_key("latest") is None and version_key("build-7") is None


def test_parse_time_accepts_go_nanoseconds_and_offsets() -> None:
    assert parse_time("2024-01-01T00:00:00.123456789Z") == pytest.approx(1704067200.123456)
    assert parse_time("2024-01-01T01:00:00+01:00") == 1704067200.0
    assert parse_time("yesterday") is None and parse_time(None) is None


@given(st.from_regex(validation.TAG, fullmatch=True))
def test_every_grammatical_tag_is_accepted(value: str) -> None:
    assert validation.tag(value) == value


@given(st.text(max_size=140))
def test_tag_validation_agrees_with_the_grammar(value: str) -> None:
    ok = validation.TAG.fullmatch(value) is not None
    try:
        validation.tag(value)
        accepted = True
    except InvalidInput:
        accepted = False
    assert accepted == ok
