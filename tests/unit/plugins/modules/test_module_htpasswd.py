"""dockyard.registry.htpasswd in-process: four cases, one rehash per changed user, no secret shown."""
from __future__ import annotations

import os
import stat

import bcrypt
import pytest

from ansible_collections.dockyard.registry.plugins.modules import htpasswd

ALICE = {"name": "alice", "password": "alice-secret-1"}
BOB = {"name": "bob", "password": "bob-secret-1"}
COST = 4  # the lowest bcrypt cost, for speed; the logic does not depend on it


def lines(raw: bytes) -> dict[str, str]:
    return dict(line.split(":", 1) for line in raw.decode().splitlines())


def write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def hashed(password: str, cost: int = COST, prefix: bytes = b"2b") -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost, prefix=prefix)).decode()


def test_four_cases_and_the_file_nginx_reads(file_run, file_four_cases):
    checked, applied, again, again_checked = file_four_cases(htpasswd, users=[ALICE, BOB], cost=COST)
    assert checked["added"] == applied["added"] == ["alice", "bob"]
    assert again["added"] == again["updated"] == again["removed"] == [] == again_checked["updated"]
    entries = lines(file_run.raw())
    assert sorted(entries) == ["alice", "bob"]
    for user in (ALICE, BOB):
        assert entries[user["name"]].startswith("$2b$04$")
        assert bcrypt.checkpw(user["password"].encode(), entries[user["name"]].encode())


def test_second_run_leaves_the_file_untouched(file_run):
    file_run(htpasswd, users=[ALICE, BOB], cost=COST)
    before, status = file_run.raw(), os.stat(file_run.path)
    result = file_run(htpasswd, users=[ALICE, BOB], cost=COST)
    after = os.stat(file_run.path)
    assert result["changed"] is False and result["updated"] == []
    assert file_run.raw() == before
    assert (after.st_ino, after.st_mtime_ns) == (status.st_ino, status.st_mtime_ns)


def test_hashes_made_elsewhere_are_kept(file_run):
    # htpasswd -B writes $2y$ hashes; any salt is fine as long as password and cost match.
    text = "alice:%s\nbob:%s\n" % (hashed(ALICE["password"], prefix=b"2a"), hashed(BOB["password"]).replace(
        "$2b$", "$2y$", 1))
    write(file_run.path, text)
    result = file_run(htpasswd, users=[ALICE, BOB], cost=COST)
    assert result["changed"] is False and file_run.raw() == text.encode()


def test_changed_password_rehashes_only_that_user(file_run):
    file_run(htpasswd, users=[ALICE, BOB], cost=COST)
    before = lines(file_run.raw())
    changed = dict(BOB, password="bob-secret-2")
    checked = file_run(htpasswd, check_mode=True, users=[ALICE, changed], cost=COST)
    assert checked["changed"] is True and checked["updated"] == ["bob"] and lines(file_run.raw()) == before
    result = file_run(htpasswd, users=[ALICE, changed], cost=COST)
    assert result["changed"] is True and (result["added"], result["updated"], result["removed"]) == ([], ["bob"], [])
    after = lines(file_run.raw())
    assert after["alice"] == before["alice"]
    assert bcrypt.checkpw(b"bob-secret-2", after["bob"].encode())
    assert not bcrypt.checkpw(b"bob-secret-1", after["bob"].encode())


def test_changed_cost_rehashes_every_user(file_run):
    file_run(htpasswd, users=[ALICE, BOB], cost=COST)
    result = file_run(htpasswd, users=[ALICE, BOB], cost=COST + 1)
    assert result["updated"] == ["alice", "bob"]
    assert all(value.startswith("$2b$05$") for value in lines(file_run.raw()).values())
    assert file_run(htpasswd, users=[ALICE, BOB], cost=COST + 1)["changed"] is False


def test_exclusive_removes_other_users_and_non_exclusive_keeps_them(file_run):
    carol = "carol:%s\n" % hashed("carol-secret")
    write(file_run.path, carol)
    kept = file_run(htpasswd, users=[ALICE], cost=COST, exclusive=False)
    assert kept["removed"] == [] and sorted(lines(file_run.raw())) == ["alice", "carol"]
    assert carol.encode() in file_run.raw()
    assert file_run(htpasswd, users=[ALICE], cost=COST, exclusive=False)["changed"] is False
    removed = file_run(htpasswd, users=[ALICE], cost=COST)
    assert removed["changed"] is True and removed["removed"] == ["carol"]
    assert sorted(lines(file_run.raw())) == ["alice"]
    assert removed["diff"]["before"] == "alice\ncarol\n" and removed["diff"]["after"] == "alice\n"


def test_check_mode_creates_nothing(file_run):
    result = file_run(htpasswd, check_mode=True, users=[ALICE], cost=COST)
    assert result["changed"] is True and result["added"] == ["alice"]
    assert not os.path.exists(file_run.path)


def test_diff_and_result_never_show_hashes_or_passwords(file_run, capsys):
    file_run(htpasswd, users=[ALICE, BOB], cost=COST)
    hashes = list(lines(file_run.raw()).values())
    new_bob = dict(BOB, password="bob-secret-2")
    for check_mode in (True, False):
        file_run.capsys.readouterr()
        result = file_run(htpasswd, check_mode=check_mode, users=[ALICE, new_bob], cost=COST, exclusive=True)
        shown = repr(result)
        assert result["diff"]["before"] == result["diff"]["after"] == "alice\nbob\n"
        for secret in hashes + [ALICE["password"], BOB["password"], new_bob["password"], "$2b$"]:
            assert secret not in shown
    for secret in hashes + [ALICE["password"], new_bob["password"]]:
        assert secret not in capsys.readouterr().out


def test_a_new_file_is_private_unless_a_mode_is_given(file_run, tmp_path):
    file_run(htpasswd, users=[ALICE], cost=COST)
    assert stat.S_IMODE(os.stat(file_run.path).st_mode) == 0o600
    other = str(tmp_path / "other")
    result = file_run(htpasswd, users=[ALICE], cost=COST, path=other, mode="0640")
    assert result["changed"] is True and stat.S_IMODE(os.stat(other).st_mode) == 0o640
    os.chmod(file_run.path, 0o640)
    file_run(htpasswd, users=[BOB], cost=COST)
    assert stat.S_IMODE(os.stat(file_run.path).st_mode) == 0o640  # an existing file keeps its mode


def test_a_user_listed_twice_is_written_once(file_run):
    # nginx checks the first line; the module must not call the file right because the second matches.
    write(file_run.path, "alice:%s\nalice:%s\n" % (hashed("old-password"), hashed(ALICE["password"])))
    result = file_run(htpasswd, users=[ALICE], cost=COST)
    assert result["changed"] is True and result["updated"] == ["alice"]
    entries = file_run.raw().decode().splitlines()
    assert len(entries) == 1 and bcrypt.checkpw(ALICE["password"].encode(), entries[0].split(":", 1)[1].encode())
    assert file_run(htpasswd, users=[ALICE], cost=COST)["changed"] is False


def test_comments_stay_while_nothing_changes(file_run):
    text = "# managed by hand once\n\nalice:%s\n" % hashed(ALICE["password"])
    write(file_run.path, text)
    assert file_run(htpasswd, users=[ALICE], cost=COST)["changed"] is False
    assert file_run.raw() == text.encode()


@pytest.mark.parametrize("users, cost, message", [
    ([dict(ALICE, password="")], COST, "user 'alice' has an empty password"),
    ([dict(ALICE, name="ali:ce")], COST, "user name 'ali:ce' is invalid"),
    ([dict(ALICE, name="alice\nbob")], COST, "is invalid"),
    ([dict(ALICE, name="")], COST, "user name '' is invalid"),
    ([ALICE, dict(BOB, name="alice")], COST, "user 'alice' is listed twice"),
    ([dict(ALICE, password="x" * 73)], COST, "longer than 72 bytes"),
    ([dict(ALICE, password="é" * 37)], COST, "longer than 72 bytes"),
    ([dict(ALICE, password="abc\0def")], COST, "NUL character"),
    ([ALICE], 3, "cost must be between 4 and 16, not 3"),
    ([ALICE], 17, "cost must be between 4 and 16, not 17"),
])
def test_bad_input_is_refused_and_nothing_is_written(file_run, users, cost, message):
    file_run(htpasswd, users=[BOB], cost=COST)
    before = file_run.raw()
    result = file_run(htpasswd, users=users, cost=cost)
    assert result.get("failed") is True and message in result["msg"], result
    assert file_run.raw() == before


@pytest.mark.parametrize("content, message", [
    (b"alice\n", "htpasswd:1 is not an htpasswd line (name:hash)"),
    (b"alice:\xff\xfe\n", "is not UTF-8 text"),
])
def test_a_file_that_is_not_htpasswd_is_refused_and_left_alone(file_run, content, message):
    with open(file_run.path, "wb") as handle:
        handle.write(content)
    result = file_run(htpasswd, users=[ALICE], cost=COST)
    assert result.get("failed") is True and message in result["msg"], result
    assert file_run.raw() == content


def test_missing_directory_is_refused(file_run, tmp_path):
    result = file_run(htpasswd, users=[ALICE], cost=COST, path=str(tmp_path / "nowhere" / "htpasswd"))
    assert result.get("failed") is True and "does not exist" in result["msg"]
