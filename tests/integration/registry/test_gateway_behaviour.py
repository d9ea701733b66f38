"""The gateway's own behaviour, on the role's own nginx.conf: deleted means gone, the blob cache
is keyed by repository, errors nginx makes are registry errors, and the token endpoint's flood
guard never throttles clients that succeed."""
from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import time
import typing as t

import pytest

from api_client import Response, Side, challenge
from conftest import PASSWORD, TOKEN_USERS, USER, Gateway, Registry, start_gateway

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the gateway runs nginx as the role does: run as root")

LAYER = b"dockyard layer " * 4000


class Stack(t.NamedTuple):
    auth: str
    registry: Registry
    gateway: Gateway
    token_upstream: str = ""

    def side(self, gateway: Gateway | None = None, login: str = "admin") -> Side:
        """A client of this stack's gateway (or of another gateway in front of its registry)."""
        gateway = gateway or self.gateway
        context = ssl.create_default_context(cafile=str(gateway.ca))
        if self.auth == "token":
            return Side(gateway.url, context, token_login=(login, TOKEN_USERS[login]))
        return Side(gateway.url, context, basic=(USER, PASSWORD))

    def anonymous(self, gateway: Gateway | None = None) -> Side:
        gateway = gateway or self.gateway
        return Side(gateway.url, ssl.create_default_context(cafile=str(gateway.ca)))


@pytest.fixture(scope="module", params=["htpasswd", "token"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Stack]:
    token = request.getfixturevalue("token_service") if request.param == "token" else None
    registry = Registry(tmp_path_factory.mktemp("registry"), auth=token.registry_auth() if token else None)
    registry.start()
    gateway = start_gateway(registry.host, auth=request.param, token_upstream=token.upstream if token else "")
    yield Stack(request.param, registry, gateway, token.upstream if token else "")
    gateway.stop()
    registry.stop()


def assert_registry_error(response: Response, status: int, code: str) -> None:
    """A JSON error in the registry's format with the registry's headers: never nginx's HTML."""
    assert response.status == status, response
    assert (response.header("content-type") or "").startswith("application/json"), response
    assert response.json()["errors"][0]["code"] == code, response
    assert response.header("docker-distribution-api-version") == "registry/2.0", response
    assert b"<html" not in response.body.lower()


def cache_status(side: Side, path: str) -> str | None:
    return side.request("GET", path).header("x-cache-status")


# --- deleted means gone ------------------------------------------------------------------------

def test_a_deleted_blob_is_404_at_once_after_cache_hits(stack: Stack) -> None:
    side = stack.side()
    _manifest, layer, _body = side.push_image("gone/blob", "1", LAYER + b"blob")
    path = "/v2/gone/blob/blobs/" + layer
    assert [cache_status(side, path) for _twice in range(2)] == ["MISS", "HIT"]
    assert side.request("DELETE", path).status == 202
    for method in ("GET", "HEAD"):
        gone = side.request(method, path)
        assert gone.status == 404 and gone.header("x-cache-status") is None, gone
    assert side.request("GET", path).json()["errors"][0]["code"] == "BLOB_UNKNOWN"


def test_garbage_collected_blobs_are_404_through_the_cache(stack: Stack) -> None:
    side = stack.side()
    manifest, layer, _body = side.push_image("gone/gc", "1", LAYER + b"gc")
    path = "/v2/gone/gc/blobs/" + layer
    assert [cache_status(side, path) for _twice in range(2)] == ["MISS", "HIT"]
    assert side.request("DELETE", "/v2/gone/gc/manifests/" + manifest).status == 202
    assert cache_status(side, path) == "HIT"  # the registry still serves an unreferenced blob until GC
    stack.registry.stop()
    try:
        assert layer.split(":")[1] in stack.registry.garbage_collect()
    finally:
        stack.registry.start()
    assert side.request("GET", path).status == 404
    assert side.request("HEAD", path).status == 404


# --- the blob cache is keyed by repository ----------------------------------------------------

def test_a_cached_blob_is_never_served_for_another_repository(stack: Stack) -> None:
    admin = stack.side()
    _manifest, layer, _body = admin.push_image("pub/holder", "1", LAYER + b"key")
    assert [cache_status(admin, "/v2/pub/holder/blobs/" + layer) for _twice in range(2)] == ["MISS", "HIT"]
    # A client that may pull pub/other, which does not hold the blob: the registry's 404.
    reader = stack.side(login="reader") if stack.auth == "token" else admin
    absent = reader.request("GET", "/v2/pub/other/blobs/" + layer)
    assert absent.status == 404 and absent.json()["errors"][0]["code"] == "BLOB_UNKNOWN", absent
    admin.push_image("pub/other", "1", b"another layer")
    # Once pub/other holds the blob (a mount), its first read is its own: a miss, not pub/holder's entry.
    mounted = admin.request("POST", "/v2/pub/other/blobs/uploads/?mount=%s&from=pub/holder" % layer)
    assert mounted.status == 201, mounted
    assert [cache_status(reader, "/v2/pub/other/blobs/" + layer) for _twice in range(2)] == ["MISS", "HIT"]


# --- errors the gateway makes are registry errors -----------------------------------------------

def test_unauthenticated_requests_get_one_challenge_and_a_json_401(stack: Stack) -> None:
    admin = stack.side()
    _manifest, layer, _body = admin.push_image("errors/auth", "1", LAYER + b"auth")
    path = "/v2/errors/auth/blobs/" + layer
    cache_status(admin, path)
    anonymous = stack.anonymous()
    for method, target in (("GET", "/v2/"), ("GET", path), ("HEAD", path), ("DELETE", path),
                           ("POST", "/v2/errors/auth/blobs/uploads/"), ("GET", "/v2/errors/auth/tags/list")):
        refused = anonymous.request(method, target)
        assert refused.status == 401, refused
        assert len(refused.all("www-authenticate")) == 1, refused
        scheme, params = challenge(refused.header("www-authenticate"))
        if stack.auth == "token":
            assert scheme == "Bearer" and params["realm"] == stack.gateway.url + "/auth/token"
        else:
            assert scheme == "Basic"
        if method != "HEAD":
            assert_registry_error(refused, 401, "UNAUTHORIZED")
        assert refused.header("x-cache-status") is None and len(refused.body) < 1024


def test_unknown_paths_and_methods_are_json_errors(stack: Stack) -> None:
    side = stack.side()
    for target in ("/v2/nothing/here", "/v2/a/referrers/sha256:" + "0" * 64, "/v2/a/blobs/uploads/x/y", "/",
                   "/favicon.ico", "/auth/", "/v2/_catalog/x"):
        assert_registry_error(side.request("GET", target), 404, "NOT_FOUND")
    assert_registry_error(side.request("TRACE", "/v2/"), 405, "UNSUPPORTED")
    too_big = side.raw("POST", "/auth/token" if stack.auth == "token" else "/", b"x" * 2_000_000,
                       {"Content-Type": "application/x-www-form-urlencoded"})
    assert_registry_error(too_big, 413, "SIZE_INVALID")


def test_json_errors_when_the_registry_or_the_token_service_is_down(tmp_path_factory: pytest.TempPathFactory) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # accepts connections, never answers: a hung upstream
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
        hung, refused = "127.0.0.1:%d" % silent.getsockname()[1], "127.0.0.1:%d" % dead.getsockname()[1]
        for registry, status in ((refused, 502), (hung, 504)):
            gateway = start_gateway(registry, auth="token", token_upstream=refused, gateway__proxy_timeout=2)
            try:
                side = Side(gateway.url, ssl.create_default_context(cafile=str(gateway.ca)))
                for target in ("/v2/", "/v2/a/manifests/1", "/v2/a/blobs/sha256:" + "0" * 64):
                    assert_registry_error(side.request("GET", target), status, "UNAVAILABLE")
                assert_registry_error(side.request("DELETE", "/v2/a/blobs/sha256:" + "0" * 64), status, "UNAVAILABLE")
                assert_registry_error(side.request("GET", "/auth/token?service=x"), 502, "UNAVAILABLE")
            finally:
                gateway.stop()
        dead.close()


def test_the_health_location_answers_for_every_part_without_credentials(stack: Stack) -> None:
    """What a load balancer asks: the registry (and token service) answer behind this gateway."""
    alive = stack.anonymous().request("GET", "/_dockyard/health")
    assert alive.status == (401 if stack.auth == "token" else 200), alive
    assert alive.header("www-authenticate") is None and b"repository" not in alive.body


def test_the_health_location_fails_when_the_registry_or_the_token_service_is_down(
        stack: Stack, token_service: t.Any) -> None:
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
        refused = "127.0.0.1:%d" % dead.getsockname()[1]
        cases = [(refused, token_service.upstream, 502)]
        if stack.auth == "token":
            cases.append((stack.registry.host, refused, 500))
        for registry, token_upstream, status in cases:
            gateway = start_gateway(registry, auth=stack.auth, token_upstream=token_upstream)
            try:
                side = Side(gateway.url, ssl.create_default_context(cafile=str(gateway.ca)))
                assert side.request("GET", "/_dockyard/health").status == status
            finally:
                gateway.stop()


def test_every_access_log_line_names_the_node() -> None:
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))  # bound, not listening: the registry is down, nginx still logs
        gateway = start_gateway("127.0.0.1:%d" % dead.getsockname()[1], gateway__node_name="registry-b.example.net")
        try:
            side = Side(gateway.url, ssl.create_default_context(cafile=str(gateway.ca)))
            for target in ("/v2/", "/v2/team-a/app/manifests/1.0"):
                side.request("GET", target)
            # nginx writes the line after the response has gone out: wait for the last one.
            deadline = time.monotonic() + 10
            while True:
                lines = [json.loads(line) for line in gateway.access_log.read_text().splitlines()]
                if (lines and lines[-1]["uri"] == "/v2/team-a/app/manifests/1.0") or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        finally:
            gateway.stop()
    assert [line["uri"] for line in lines][-2:] == ["/v2/", "/v2/team-a/app/manifests/1.0"]  # after the start probes
    assert all(line["node"] == "registry-b.example.net" for line in lines)


# --- the token endpoint: a flood guard, not a throttle ----------------------------------------------

def test_500_token_requests_from_one_address_all_pass(stack: Stack) -> None:
    """The role's default flood guard lets a CI fleet behind one address through, however fast."""
    if stack.auth != "token":
        pytest.skip("token mode only")
    side = stack.side(login="reader")
    login = {"Authorization": "Basic " + base64.b64encode(":".join(side.token_login).encode()).decode()}
    statuses = [side.raw("GET", "/auth/token?service=registry.dockyard.test&scope=repository:pub/r%d:pull"
                         % (number % 7), headers=login).status for number in range(500)]
    assert statuses == [200] * 500, {status: statuses.count(status) for status in set(statuses)}


def test_the_flood_guard_answers_a_json_429_with_retry_after(token_service: t.Any) -> None:
    gateway = start_gateway("127.0.0.1:9", auth="token", token_upstream=token_service.upstream,
                            gateway__token_rate_limit="1r/m", gateway__token_rate_burst=2)
    try:
        side = Side(gateway.url, ssl.create_default_context(cafile=str(gateway.ca)))
        answers = [side.raw("GET", "/auth/token?service=registry.dockyard.test") for _attempt in range(5)]
        assert [answer.status for answer in answers[:3]] == [200, 200, 200]
        for answer in answers[3:]:
            assert_registry_error(answer, 429, "TOOMANYREQUESTS")
            assert answer.header("retry-after") == "1"
    finally:
        gateway.stop()


def test_a_read_only_gateway_refuses_every_write_with_its_message(stack: Stack) -> None:
    message = "this registry is a read-only mirror of https://upstream.example"
    read_only = start_gateway(stack.registry.host, auth=stack.auth, token_upstream=stack.token_upstream,
                              gateway__read_only_message=message)
    try:
        side, anonymous = stack.side(read_only), stack.anonymous(read_only)
        blob = "/v2/ro/app/blobs/sha256:" + "0" * 64
        for method, target in (("POST", "/v2/ro/app/blobs/uploads/"), ("PUT", "/v2/ro/app/manifests/1"),
                               ("PATCH", "/v2/ro/app/blobs/uploads/x"), ("DELETE", "/v2/ro/app/manifests/1"),
                               ("DELETE", blob)):
            for client in (side, anonymous):
                response = client.request(method, target, b"{}")
                assert_registry_error(response, 405, "UNSUPPORTED")
                assert response.json() == {"errors": [{"code": "UNSUPPORTED", "message": message}]}
                assert response.header("allow") == "GET, HEAD"
        # Reads still reach the registry: its own 404s.
        assert_registry_error(side.request("GET", "/v2/ro/app/manifests/1"), 404, "MANIFEST_UNKNOWN")
        assert_registry_error(side.request("GET", blob), 404, "BLOB_UNKNOWN")
    finally:
        read_only.stop()
