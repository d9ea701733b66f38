"""Failed-login limits: the policy with an injected clock, the state shared through files, the app's 429."""
from __future__ import annotations

import fcntl
import json
import os
import urllib.parse

import pytest

from token_fixtures import SERVICE, basic, call
from dockyard_token import _accounts
from dockyard_token.app import Config, TokenService
from dockyard_token.limits import (ACCOUNT, ADDRESS, COUNTERS_FILE, PAIR, REFUSALS_FILE, FailureLimiter, Policy,
                                   address_key)

POLICY = Policy(pair_failures=5, account_failures=12, address_accounts=4, delay=10, max_delay=40, window=100)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture(params=["memory", "files"])
def limiter(request, tmp_path, clock):
    return FailureLimiter(POLICY, str(tmp_path / "limits") if request.param == "files" else "", clock)


def fail(limiter, count: int, address: str = "192.0.2.1", account: str = "alice") -> list:
    return [limiter.failed(address, account) for _attempt in range(count)]


def test_an_account_is_refused_from_an_address_after_its_threshold(limiter, clock):
    results = fail(limiter, POLICY.pair_failures - 1)
    assert [counts[PAIR] for counts, _started in results] == [1, 2, 3, 4]
    assert not any(started for _counts, started in results)
    assert limiter.refusal("192.0.2.1", "alice") is None
    counts, started = limiter.failed("192.0.2.1", "alice")
    assert counts == {PAIR: 5, ACCOUNT: 5, ADDRESS: 1} and [refusal.scope for refusal in started] == [PAIR]
    refusal = limiter.refusal("192.0.2.1", "alice")
    assert refusal.scope == PAIR and refusal.failures == 5 and refusal.retry_after(clock.now) == POLICY.delay
    # Other accounts from the address, and the account from other addresses, are not concerned.
    assert limiter.refusal("192.0.2.1", "bob") is None
    assert limiter.refusal("192.0.2.2", "alice") is None
    clock.now += POLICY.delay
    assert limiter.refusal("192.0.2.1", "alice") is None


def test_each_failure_past_the_threshold_doubles_the_refusal_up_to_the_maximum(limiter, clock):
    fail(limiter, POLICY.pair_failures)
    seconds = []
    for _round in range(4):
        refusal = limiter.refusal("192.0.2.1", "alice")
        seconds.append(refusal.retry_after(clock.now))
        clock.now = refusal.until + 1  # the refusal ended; the next guess fails again
        fail(limiter, 1)
    assert seconds == [10, 20, 40, 40]


def test_counters_are_forgotten_after_a_quiet_window(limiter, clock):
    fail(limiter, POLICY.pair_failures - 1)
    clock.now += POLICY.window
    counts, started = limiter.failed("192.0.2.1", "alice")
    assert counts[PAIR] == 1 and not started
    fail(limiter, POLICY.pair_failures - 1)
    refusal = limiter.refusal("192.0.2.1", "alice")
    clock.now = refusal.until + POLICY.window - 1
    assert limiter.failed("192.0.2.1", "alice")[0][PAIR] == POLICY.pair_failures + 1  # still remembered


def test_an_account_is_refused_everywhere_after_failures_from_many_addresses(limiter):
    for index in range(POLICY.account_failures):
        counts, _started = limiter.failed("198.51.100.%d" % index, "alice")
    assert counts[ACCOUNT] == POLICY.account_failures
    for address in ("198.51.100.1", "203.0.113.9"):
        refusal = limiter.refusal(address, "alice")
        assert refusal.scope == ACCOUNT and refusal.failures == POLICY.account_failures
    assert limiter.refusal("203.0.113.9", "bob") is None


def test_an_address_trying_many_accounts_is_refused_for_all_of_them(limiter):
    for account in ("a1", "a2", "a3"):
        fail(limiter, 2, account=account)
    assert limiter.refusal("192.0.2.1", "carol") is None
    counts, started = limiter.failed("192.0.2.1", "a4")
    assert counts[ADDRESS] == POLICY.address_accounts and [refusal.scope for refusal in started] == [ADDRESS]
    assert limiter.refusal("192.0.2.1", "carol").scope == ADDRESS
    assert limiter.refusal("192.0.2.99", "carol") is None


def test_one_account_failing_again_and_again_never_refuses_its_address(limiter):
    fail(limiter, 3 * POLICY.pair_failures)
    assert limiter.refusal("192.0.2.1", "alice").scope == PAIR
    assert limiter.refusal("192.0.2.1", "bob") is None


def test_ipv6_clients_are_counted_per_64(limiter):
    assert address_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert address_key("192.0.2.1") == "192.0.2.1" and address_key("invalid") == "invalid"
    for host in range(POLICY.pair_failures):
        limiter.failed("2001:db8:1:2::%x" % (host + 1), "alice")
    assert limiter.refusal("2001:db8:1:2:ffff::7", "alice").scope == PAIR
    assert limiter.refusal("2001:db8:1:3::1", "alice") is None


def test_zero_turns_a_limit_off(clock):
    limiter = FailureLimiter(Policy(pair_failures=0, account_failures=0, address_accounts=2), "", clock)
    fail(limiter, 50)
    assert limiter.refusal("192.0.2.1", "alice") is None
    off = FailureLimiter(Policy(0, 0, 0), "", clock)
    assert off.failed("192.0.2.1", "alice") == ({}, []) and off.refusal("192.0.2.1", "alice") is None


@pytest.mark.parametrize("values", [{"pair_failures": -1}, {"delay": 0}, {"window": 10 ** 7},
                                    {"delay": 60, "max_delay": 30}, {"account_failures": "5"}, {"delay": True}])
def test_bad_policies_are_refused(values):
    with pytest.raises(ValueError):
        Policy(**values).check()


# --- the state shared by workers -------------------------------------------------------

def test_workers_share_counters_and_refusals(tmp_path, clock):
    directory = str(tmp_path / "limits")
    first, second = FailureLimiter(POLICY, directory, clock), FailureLimiter(POLICY, directory, clock)
    for attempt in range(POLICY.pair_failures):
        counts, _started = (first if attempt % 2 else second).failed("192.0.2.1", "alice")
    assert counts[PAIR] == POLICY.pair_failures
    assert first.refusal("192.0.2.1", "alice").scope == PAIR == second.refusal("192.0.2.1", "alice").scope
    assert oct(os.stat(os.path.join(directory, COUNTERS_FILE)).st_mode & 0o777) == "0o600"
    assert os.stat(directory).st_mode & 0o077 == 0


def test_checking_a_login_takes_no_lock_and_writes_nothing(tmp_path, clock):
    directory = tmp_path / "limits"
    limiter = FailureLimiter(POLICY, str(directory), clock)
    fail(limiter, POLICY.pair_failures, account="mallory")
    before = {name: os.stat(directory / name) for name in (COUNTERS_FILE, REFUSALS_FILE)}
    fd = os.open(directory / COUNTERS_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another worker in the middle of counting a failure
        for _attempt in range(100):
            assert limiter.refusal("192.0.2.1", "alice") is None
            assert limiter.refusal("192.0.2.1", "mallory").scope == PAIR
    finally:
        os.close(fd)
    after = {name: os.stat(directory / name) for name in (COUNTERS_FILE, REFUSALS_FILE)}
    assert all((before[name].st_ino, before[name].st_mtime_ns) == (after[name].st_ino, after[name].st_mtime_ns)
               for name in before)
    assert sorted(os.listdir(directory)) == [COUNTERS_FILE, REFUSALS_FILE]


def test_a_damaged_state_file_starts_afresh(tmp_path, clock):
    directory = tmp_path / "limits"
    limiter = FailureLimiter(POLICY, str(directory), clock)
    (directory / COUNTERS_FILE).write_text("{not json")
    (directory / REFUSALS_FILE).write_text("[1, 2")
    assert limiter.refusal("192.0.2.1", "alice") is None
    assert limiter.failed("192.0.2.1", "alice")[0][PAIR] == 1
    assert json.loads((directory / COUNTERS_FILE).read_text())[PAIR]


def test_an_unwritable_state_lets_logins_through_and_says_so(tmp_path, clock, capsys):
    directory = tmp_path / "limits"
    limiter = FailureLimiter(POLICY, str(directory), clock)
    os.mkdir(directory / COUNTERS_FILE)  # cannot be opened as a file
    assert limiter.failed("192.0.2.1", "alice") == ({}, [])
    assert "not written" in capsys.readouterr().err
    assert limiter.refusal("192.0.2.1", "alice") is None


# --- through the app -------------------------------------------------------------------


TOKEN_QUERY = urllib.parse.urlencode([("service", SERVICE), ("scope", "repository:team-a/app:pull")])


@pytest.fixture
def limited(config, tmp_path, clock):
    app = TokenService(config._replace(limits_dir=str(tmp_path / "limits"), limit_pair_failures=10,
                                       limit_delay=30, limit_max_delay=900, limit_window=900))
    app.limiter.clock = clock
    return app


def login(app, user: str, password: str, address: str = "192.0.2.7") -> tuple:
    return call(app, TOKEN_QUERY, basic(user, password), HTTP_X_REAL_IP=address)


def audit_lines(config) -> list:
    with open(config.audit_log, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_thirty_wrong_passwords_refuse_the_account_from_that_address_only(limited, config, clock, monkeypatch):
    statuses = [login(limited, "alice", "guess-%d" % attempt)[0] for attempt in range(30)]
    assert statuses == [401] * 10 + [429] * 20
    checked = []
    real_check = _accounts.check_secret
    monkeypatch.setattr(_accounts, "check_secret", lambda *args: checked.append(1) or real_check(*args))
    status, headers, body = login(limited, "alice", "alice-pw")
    assert status == 429 and not checked  # refused before any password check
    assert headers["Content-Type"] == "application/json" and headers["Retry-After"] == "30"
    assert body == {"errors": [{"code": "TOOMANYREQUESTS",
                                "message": "too many failed logins for this account from this address",
                                "detail": {"scope": PAIR, "retry_after": 30}}]}
    assert login(limited, "bob", "bob-pw")[0] == 200
    assert login(limited, "alice", "alice-pw", address="192.0.2.8")[0] == 200
    clock.now += 30
    assert login(limited, "alice", "alice-pw")[0] == 200
    lines = audit_lines(config)
    tenth, refused = lines[9], lines[10]
    assert tenth["result"] == "unauthorized" and tenth["failures"] == {PAIR: 10, ACCOUNT: 10, ADDRESS: 1}
    assert tenth["refusal"] == {"scope": PAIR, "seconds": 30}
    assert refused["result"] == "refused" and refused["account"] == "alice" and refused["client_ip"] == "192.0.2.7"
    assert refused["refusal"] == {"scope": PAIR, "failures": 10, "seconds": 30}
    assert refused["reason"] == "too many failed logins for this account from this address"
    assert [line["result"] for line in lines[-4:]] == ["refused", "issued", "issued", "issued"]


def test_successes_are_never_limited(limited):
    assert all(login(limited, "alice", "alice-pw")[0] == 200 for _attempt in range(500))


def test_anonymous_requests_are_not_limited(limited):
    for index in range(30):
        login(limited, "user%d" % index, "x")
    assert login(limited, "carol", "x")[0] == 429
    assert call(limited, TOKEN_QUERY, HTTP_X_REAL_IP="192.0.2.7")[0] == 200


def test_policy_settings_in_the_config_file(tmp_path, config):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(dict(config._asdict(), limit_pair_failures=3, limits_dir=str(tmp_path / "l"))))
    assert Config.from_file(str(path)).policy().pair_failures == 3
    path.write_text(json.dumps(dict(config._asdict(), limit_delay=0)))
    with pytest.raises(ValueError, match="delay"):
        Config.from_file(str(path))
