"""POST /events: Distribution's notifications become audit lines; nothing a sender posts gives a 500."""
from __future__ import annotations

import io
import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from token_fixtures import call
from dockyard_token.app import Config, TokenService
from dockyard_token.events import address_without_port, event_time

SECRET = "s3cret-s3cret-s3cret-s3cret-0123"
MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"


def push_event(**overrides):
    event = {
        "id": "320678d8-ca14-430f-8bb6-4ca139cd83f7", "timestamp": "2026-11-28T21:33:07.310623917+02:00",
        "action": "push",
        "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 708,
                   "digest": "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf",
                   "length": 708, "repository": "team-a/app",
                   "url": "http://127.0.0.1:5000/v2/team-a/app/manifests/sha256:fea8", "tag": "1.0"},
        "request": {"id": "8d0b5b2c-5e10-4b7e-9a5e-4d9a0e3f6b11", "addr": "192.0.2.7:41234",
                    "host": "registry.test", "method": "PUT", "useragent": "skopeo/1.9.3"},
        "actor": {"name": "robot$team-a+ci"},
        "source": {"addr": "node-1:5000", "instanceID": "a53db899-3b4b-4a62-a067-8dd013beaca4"},
    }
    event.update(overrides)
    return event


def post(app, body, authorization="Bearer " + SECRET, content_type=MEDIA_TYPE, length=True, **environ):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    extra = {"wsgi.input": io.BytesIO(data), "CONTENT_TYPE": content_type}
    if length:
        extra["CONTENT_LENGTH"] = str(len(data))
    extra.update(environ)
    return call(app, method="POST", path="/events", authorization=authorization, **extra)


def audit_lines(config):
    with open(config.audit_log, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture
def events_config(config, tmp_path):
    secret = tmp_path / "events.secret"
    secret.write_text(SECRET + "\n")
    return config._replace(events_secret_file=str(secret), events_listen="127.0.0.1:5001", node="node-a")


@pytest.fixture
def events_app(events_config):
    return TokenService(events_config)


def test_each_event_is_one_audit_line(events_app, events_config):
    pull = push_event(action="pull", id="e2", actor={"name": "alice"},
                      request={"addr": "[2001:db8::7]:443", "id": "r2", "useragent": "containers/5"})
    status, _headers, body = post(events_app, {"events": [push_event(), pull]})
    assert status == 200 and body == {"accepted": 2}
    first, second = audit_lines(events_config)
    assert first == {
        "time": "2026-11-28T19:33:07.310Z", "event": "registry", "node": "node-a", "action": "push", "repository": "team-a/app",
        "tag": "1.0", "digest": "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf",
        "media_type": "application/vnd.docker.distribution.manifest.v2+json", "size": 708,
        "actor": "robot$team-a+ci", "client_ip": "192.0.2.7", "request_id": "8d0b5b2c-5e10-4b7e-9a5e-4d9a0e3f6b11",
        "user_agent": "skopeo/1.9.3", "id": "320678d8-ca14-430f-8bb6-4ca139cd83f7",
    }
    assert (second["action"], second["actor"], second["client_ip"]) == ("pull", "alice", "2001:db8::7")
    assert SECRET not in json.dumps([first, second])


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer wrong", "Basic " + SECRET,
                                           "Bearer " + SECRET[:-1], "Bearer " + SECRET + "x", "Bearer \udcff\ud800"])
def test_wrong_or_missing_secret_is_401(events_app, events_config, authorization):
    status, headers, _body = post(events_app, {"events": [push_event()]}, authorization=authorization)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    (line,) = audit_lines(events_config)
    assert (line["event"], line["result"]) == ("notification", "unauthorized") and SECRET not in json.dumps(line)


@pytest.mark.parametrize("body, content_type, status", [
    (b"", MEDIA_TYPE, 400), (b"{", MEDIA_TYPE, 400), (b"[]", MEDIA_TYPE, 400), (b'{"events": {}}', MEDIA_TYPE, 400),
    (b'{"events": [1]}', MEDIA_TYPE, 400), (b"\xff\xfe", MEDIA_TYPE, 400), (b"[" * 100000, MEDIA_TYPE, 400),
    (b'{"events": [%s]}' % b",".join([b"{}"] * 1001), MEDIA_TYPE, 400), (b'{"events": []}', "text/plain", 415),
    (b'{"events": [], "pad": "%s"}' % (b"x" * (1024 * 1024)), MEDIA_TYPE, 413),
])
def test_malformed_bodies_are_refused_and_write_no_event(events_app, events_config, body, content_type, status):
    assert post(events_app, body, content_type=content_type)[0] == status
    assert post(events_app, body, content_type=content_type, length=False)[0] == status
    assert all(line["event"] == "notification" and line["result"] == "bad_request" for line in audit_lines(events_config))


def test_odd_fields_become_null_and_never_block_the_registry(events_app, events_config):
    odd = {"action": ["push"], "timestamp": "yesterday", "target": "x", "request": {"addr": "nginx"},
           "actor": {"name": 7}, "id": None}
    assert post(events_app, {"events": [odd, {}]}, content_type="application/json; charset=utf-8")[0] == 200
    first, second = audit_lines(events_config)
    assert first["action"] is None and first["repository"] is None and first["actor"] is None
    assert first["client_ip"] == "invalid" and first["time"].endswith("Z") and second["client_ip"] is None


class FakeSocket:
    def __init__(self, address):
        self.address = address

    def getsockname(self):
        return self.address


def test_events_listener_does_not_serve_tokens(events_app):
    assert call(events_app, **{"gunicorn.socket": FakeSocket(("127.0.0.1", 5001))})[0] == 404
    assert call(events_app, path="/healthz", **{"gunicorn.socket": FakeSocket(("127.0.0.1", 5001))})[0] == 200
    assert call(events_app, **{"gunicorn.socket": FakeSocket("/run/dockyard-token/token.sock")})[0] == 200
    assert call(events_app, **{"gunicorn.socket": FakeSocket(("127.0.0.1", 5999))})[0] == 200
    assert call(events_app, path="/events")[0] == 405


def test_events_disabled_without_a_secret(app):
    assert post(app, {"events": []})[0] == 404


def test_config_of_events(events_config, tmp_path):
    short = tmp_path / "short.secret"
    short.write_text("abc\n")
    for bad in (events_config._replace(events_secret_file=str(short)),
                events_config._replace(events_secret_file=str(tmp_path / "missing"))):
        with pytest.raises(ValueError):
            TokenService(bad)
    path = tmp_path / "config.json"
    for listen in ("localhost:5001", "::1:5001", "[127.0.0.1]:5001", "127.0.0.1:0", "127.0.0.1"):
        path.write_text(json.dumps(events_config._replace(events_listen=listen)._asdict()))
        with pytest.raises(ValueError):
            Config.from_file(str(path))
    path.write_text(json.dumps(events_config._replace(events_listen="[::1]:5001")._asdict()))
    assert Config.from_file(str(path)).events_listen == "[::1]:5001"


@pytest.mark.parametrize("value, expected", [
    ("2026-01-02T03:04:05Z", "2026-01-02T03:04:05.000Z"), ("2026-01-02T03:04:05.5-01:30", "2026-01-02T04:34:05.500Z"),
    ("0001-01-01T00:00:00+23:59", None), ("2026-13-02T03:04:05Z", None), ("2026-01-02", None), (17, None),
])
def test_event_time(value, expected):
    assert event_time(value) == expected


@pytest.mark.parametrize("value, expected", [("192.0.2.7", "192.0.2.7"), ("::1", "::1"), ("[::1]:80", "::1"),
                                             ("192.0.2.7:80", "192.0.2.7"), ("@", "invalid"), ("", None)])
def test_address_without_port(value, expected):
    assert address_without_port(value) == expected


def test_real_socket_address_is_recognised(events_config):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        app = TokenService(events_config._replace(events_listen="127.0.0.1:%d" % port))
        assert call(app, **{"gunicorn.socket": sock})[0] == 404


# --- properties: whatever an authenticated sender posts, never a 500 ---------------------

def _containers(children):
    return st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40), _containers,
                    max_leaves=40)
FIELDS = st.sampled_from(["id", "timestamp", "action", "target", "request", "actor", "source", "addr", "name",
                          "repository", "tag", "digest", "mediaType", "size", "useragent", "fromRepository"])
EVENT = st.dictionaries(FIELDS, JSON | st.dictionaries(FIELDS, JSON, max_size=6), max_size=8)
BODIES = st.one_of(
    st.binary(max_size=300),
    JSON.map(lambda value: json.dumps(value).encode()),
    st.lists(EVENT, max_size=4).map(lambda events: json.dumps({"events": events}).encode()),
    st.lists(st.sampled_from(['{"events":', "[", "]", "{", "}", ",", '"action"', ":", '"push"', "1e999", "NaN",
                              '"\\ud800"', "null", '"target"', '{"size": -1}']), max_size=60).map(
        lambda parts: "".join(parts).encode()),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(BODIES, st.sampled_from([MEDIA_TYPE, "application/json", "", "text/x"]), st.booleans())
def test_never_500(events_app, events_config, body, content_type, length):
    status, _headers, _body = post(events_app, body, content_type=content_type, length=length)
    assert status in (200, 400, 415)
    with open(events_config.audit_log, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            assert record["event"] in ("registry", "notification")
            assert all(isinstance(record.get(key), (str, type(None))) for key in ("action", "repository", "actor"))
