"""GET /metrics: each family moves with real requests through the app, the sum over workers, bounded labels."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import types
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from prometheus_client.parser import text_string_to_metric_families

from token_fixtures import SERVICE, _accounts, basic, call, call_raw, sample_store
from dockyard_token import gunicorn_hooks
from dockyard_token.app import TokenService
from dockyard_token.metrics import REASONS, RESULTS, Metrics, classify

TOKEN_QUERY = urllib.parse.urlencode({"service": SERVICE, "scope": "repository:team-a/app:pull"})
REQUESTS = "dockyard_token_requests_total"
DURATION_COUNT = "dockyard_token_request_duration_seconds_count"
RELOADS = "dockyard_token_account_store_reloads_total"
RATE_LIMITED = "dockyard_token_rate_limited_total"
LAST_RELOAD = "dockyard_token_account_store_last_reload_timestamp_seconds"


def parse(body: bytes) -> dict:
    """{(sample name, ((label, value), ...)): value} of an exposition."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode("utf-8")) for sample in family.samples}


def scrape(app) -> dict:
    status, headers, body = call_raw(app, path="/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(body)


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def requests_by_label(samples: dict) -> dict:
    return {dict(labels)["result"] + "/" + dict(labels)["reason"]: count
            for (name, labels), count in samples.items() if name == REQUESTS and count}


@pytest.fixture
def metered(config, tmp_path):
    return TokenService(config._replace(metrics=True, limits_dir=str(tmp_path / "limits"), limit_pair_failures=2))


def login(app, account: str, password: str) -> int:
    return call(app, TOKEN_QUERY, basic(account, password), HTTP_X_REAL_IP="192.0.2.7")[0]


def test_a_token_issued_counts_once_with_its_duration(metered):
    before = scrape(metered)
    assert requests_by_label(before) == {} and value(before, DURATION_COUNT, result="issued") == 0
    assert login(metered, "alice", "alice-pw") == 200
    after = scrape(metered)
    assert requests_by_label(after) == {"issued/ok": 1}
    assert value(after, DURATION_COUNT, result="issued") == 1
    assert value(after, DURATION_COUNT, result="refused") == 0
    assert 0 < value(after, "dockyard_token_request_duration_seconds_sum", result="issued") < 60


@pytest.mark.parametrize("account, password, reason", [
    ("alice", "wrong", "bad_credentials"), ("nobody", "x", "bad_credentials"), ("mallory", "mallory-pw", "disabled"),
    ("robot$off", "off-secret", "disabled"), ("robot$old", "old-secret", "expired"),
    ("robot$team-a+ci", "ci-secret-tampered", "bad_credentials"),
])
def test_refusals_count_with_a_short_reason(metered, account, password, reason):
    assert login(metered, account, password) == 401
    samples = scrape(metered)
    assert requests_by_label(samples) == {"refused/" + reason: 1}
    assert value(samples, DURATION_COUNT, result="refused") == 1
    assert value(samples, RATE_LIMITED) == 0


def test_a_bad_request_counts_as_refused(metered):
    assert call(metered, "service=other")[0] == 400
    assert requests_by_label(scrape(metered)) == {"refused/bad_request": 1}


def test_the_limiter_counts_its_refusals(metered):
    assert [login(metered, "alice", "guess-%d" % attempt) for attempt in range(4)] == [401, 401, 429, 429]
    samples = scrape(metered)
    assert value(samples, RATE_LIMITED) == 2
    assert requests_by_label(samples) == {"refused/bad_credentials": 2, "refused/rate_limited": 2}


def test_store_reloads_and_their_time(metered, store_path):
    assert value(scrape(metered), RELOADS, result="ok") == 0  # read at the first request, not before
    login(metered, "alice", "alice-pw")
    first = scrape(metered)
    assert value(first, RELOADS, result="ok") == 1 and value(first, LAST_RELOAD) > 1.7e9
    login(metered, "bob", "bob-pw")
    assert value(scrape(metered), RELOADS, result="ok") == 1  # unchanged store: no reload
    store = sample_store()
    store["users"]["bob"]["disabled"] = True
    _accounts.write_store(str(store_path), store)
    assert login(metered, "bob", "bob-pw") == 401
    reloaded = scrape(metered)
    assert value(reloaded, RELOADS, result="ok") == 2 and value(reloaded, LAST_RELOAD) >= value(first, LAST_RELOAD)
    store_path.write_text("[]")
    assert login(metered, "alice", "alice-pw") == 503
    broken = scrape(metered)
    assert value(broken, RELOADS, result="failed") == 1 and value(broken, RELOADS, result="ok") == 2
    assert value(broken, REQUESTS, result="error", reason="store_unavailable") == 1
    assert value(broken, LAST_RELOAD) == value(reloaded, LAST_RELOAD)  # the time of the last good read


def test_an_unexpected_exception_counts_as_an_internal_error(metered, monkeypatch):
    monkeypatch.setattr(metered, "_token", lambda *_args: 1 / 0)
    assert call(metered, TOKEN_QUERY)[0] == 500
    assert requests_by_label(scrape(metered)) == {"error/internal": 1}


@pytest.mark.parametrize("source, reason", [("ldap", "directory_unavailable"), ("oidc", "oidc_unavailable"),
                                            (None, "store_unavailable")])
def test_unavailable_backends_are_errors_by_source(source, reason):
    record = {"result": "error", "reason": "whatever the backend said"}
    if source:
        record["source"] = source
    assert classify(503, record) == ("error", reason)


def test_an_oidc_refusal_has_its_own_reason():
    assert classify(401, {"source": "oidc", "reason": "token expired"}) == ("refused", "oidc_refused")


AUDIT_REASONS = st.one_of(st.none(), st.text(max_size=12), st.sampled_from([
    "wrong credentials", "user disabled", "robot account disabled", "robot account expired", "unknown service",
    "unknown directory user", "token expired", "account store unavailable"]))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(100, 599), st.sampled_from([None, "local", "ldap", "oidc", "other"]), AUDIT_REASONS)
def test_labels_never_leave_the_vocabulary(status, source, audit_reason):
    result, reason = classify(status, {"source": source, "reason": audit_reason})
    assert result in RESULTS and reason in REASONS[result]


def test_every_series_is_from_the_vocabulary_whatever_is_asked(metered):
    for account in ("alice", "robot$x", "user\u00e9", "a" * 100, "team-a/app"):
        login(metered, account, "x")
    call(metered, "scope=repository:" + "b" * 300 + ":pull")
    expected = {(result, reason) for result, reasons in REASONS.items() for reason in reasons}
    series = {(dict(labels)["result"], dict(labels)["reason"]) for (name, labels) in scrape(metered) if name == REQUESTS}
    assert series == expected


def test_metrics_off_is_404_and_only_get_is_served(app, metered):
    assert app.metrics is None and call(app, path="/metrics")[0] == 404
    status, headers, _body = call(metered, path="/metrics", method="POST")
    assert status == 405 and headers["Allow"] == "GET"


def test_the_events_listener_never_serves_metrics(config, tmp_path):
    secret = tmp_path / "events.secret"
    secret.write_text("s3cret-s3cret-s3cret-s3cret-0123\n")
    app = TokenService(config._replace(metrics=True, events_secret_file=str(secret), events_listen="127.0.0.1:5001"))
    on_events = types.SimpleNamespace(getsockname=lambda: ("127.0.0.1", 5001))
    assert call(app, path="/metrics", **{"gunicorn.socket": on_events})[0] == 404
    assert call_raw(app, path="/metrics", **{"gunicorn.socket": types.SimpleNamespace(getsockname=lambda: "/x.sock")})[0] == 200


def test_a_multiprocess_directory_needs_the_environment(tmp_path):
    with pytest.raises(ValueError, match="PROMETHEUS_MULTIPROC_DIR"):
        Metrics(str(tmp_path / "metrics"))


# --- several workers: each process writes its own files, any of them answers with the sum ----

WORKER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from token_fixtures import _accounts, basic, call_raw
_accounts.BCRYPT_ROUNDS = 4
from dockyard_token.app import Config, TokenService
app = TokenService(Config(**json.loads(sys.argv[2])))
for account, password in json.loads(sys.argv[3]):
    call_raw(app, "service=registry.test", basic(account, password), HTTP_X_REAL_IP="192.0.2.9")
sys.stdout.buffer.write(call_raw(app, path="/metrics")[2])
"""


def run_worker(directory: pathlib.Path, config, logins: list) -> tuple:
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(directory))
    settings = dict(config._asdict(), metrics=True)
    done = subprocess.run([sys.executable, "-c", WORKER, str(pathlib.Path(__file__).parent), json.dumps(settings),
                           json.dumps(logins)], env=env, capture_output=True, check=True, timeout=120)
    return parse(done.stdout), done


def test_workers_sum_in_one_directory(config, tmp_path):
    directory = tmp_path / "metrics"
    first, _done = run_worker(directory, config, [["alice", "alice-pw"], ["alice", "alice-pw"], ["bob", "no"]])
    assert requests_by_label(first) == {"issued/ok": 2, "refused/bad_credentials": 1}
    second, _done = run_worker(directory, config, [["bob", "bob-pw"], ["robot$team-a+ci", "ci-secret"]])
    assert requests_by_label(second) == {"issued/ok": 4, "refused/bad_credentials": 1}
    assert value(second, DURATION_COUNT, result="issued") == 4
    assert value(second, RELOADS, result="ok") == 2  # each worker read the store once
    assert [key for key in second if key[0] == LAST_RELOAD] == [(LAST_RELOAD, ())]  # one value: the latest
    assert len(list(directory.glob("counter_*.db"))) == 2


def test_a_dead_workers_counts_stay_and_its_live_gauges_go(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for name in ("counter_4242.db", "histogram_4242.db", "gauge_livesum_4242.db", "gauge_livesum_4343.db"):
        (tmp_path / name).write_bytes(b"")
    gunicorn_hooks.child_exit(None, types.SimpleNamespace(pid=4242))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["counter_4242.db", "gauge_livesum_4343.db",
                                                                "histogram_4242.db"]
