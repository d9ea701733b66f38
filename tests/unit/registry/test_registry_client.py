"""The client on its own: pagination, challenges, retries, error messages."""
from __future__ import annotations

import hashlib
import json
import ssl
import urllib.error
import urllib.parse

import pytest

from ansible_collections.dockyard.registry.plugins.module_utils._registry import transport as transport_module
from ansible_collections.dockyard.registry.plugins.module_utils._registry.auth import Authenticator, Challenge
from ansible_collections.dockyard.registry.plugins.module_utils._registry.client import RegistryClient
from ansible_collections.dockyard.registry.plugins.module_utils._registry.errors import (
    InvalidInput,
    RegistryAuthError,
    RegistryConnectionError,
    RegistryDeleteDisabled,
    RegistryDigestMismatch,
    RegistryError,
    RegistryHTTPError,
    RegistryNotFound,
    RegistryTLSError,
)
from ansible_collections.dockyard.registry.plugins.module_utils._registry.transport import Transport, retry_after

from registry_fakes import BASE, FakeRegistry, FakeResponse, make_client


# -- pagination ------------------------------------------------------------------------

def test_catalog_follows_link_headers_across_pages() -> None:
    fake = FakeRegistry(page_size=2)
    for number in range(5):
        fake.image("repo%d" % number, "latest", None)
    assert make_client(fake).catalog() == ["repo0", "repo1", "repo2", "repo3", "repo4"]
    assert fake.count("GET", "/v2/_catalog") == 3


def test_tags_follow_link_headers_and_null_means_empty() -> None:
    fake = FakeRegistry(page_size=3)
    for number in range(7):
        fake.image("apps/web", "t%d" % number, None)
    client = make_client(fake)
    assert client.tags("apps/web") == ["t%d" % number for number in range(7)]
    assert fake.count("GET", "/tags/list") == 3
    fake.tag_links["apps/web"].clear()  # Distribution answers {"tags": null} now
    assert client.tags("apps/web") == []


def test_unknown_repository_raises_not_found_with_code() -> None:
    client = make_client(FakeRegistry())
    with pytest.raises(RegistryNotFound) as caught:
        client.tags("nope")
    assert str(caught.value).startswith("GET /v2/nope/tags/list returned HTTP 404 NAME_UNKNOWN")


def test_pagination_stops_on_a_link_loop() -> None:
    fake = FakeRegistry()

    def loop(method: str, url: str, _headers: dict[str, str]) -> FakeResponse:
        return FakeResponse(200, {"Link": '</v2/_catalog?n=1000>; rel="next"'}, b'{"repositories": ["a"]}')

    fake.before = loop
    assert make_client(fake).catalog() == ["a", "a"]


# -- authentication --------------------------------------------------------------------

def bearer_registry(expires_in: int = 300) -> tuple[FakeRegistry, list[str]]:
    """A registry that wants Bearer tokens from http://auth.test/token."""
    fake = FakeRegistry()
    fake.image("apps/web", "1.0", "2024-01-01T00:00:00Z")
    issued: list[str] = []

    def gate(method: str, url: str, headers: dict[str, str]) -> FakeResponse | None:
        if url.startswith("http://auth.test/token"):
            if headers.get("Authorization") != "Basic dXNlcjpwYXNz":  # user:pass
                return FakeRegistry.error(401, "UNAUTHORIZED", "bad credentials")
            scope = url.split("scope=", 1)[1]
            issued.append(scope)
            body = json.dumps({"token": "tok-" + scope, "expires_in": expires_in}).encode()
            return FakeResponse(200, {"Content-Type": "application/json"}, body)
        path = url[len(BASE):]
        repository = path[len("/v2/"):].split("/manifests/")[0].split("/tags/list")[0]
        action = {"GET": "pull", "HEAD": "pull", "DELETE": "delete"}.get(method, "pull,push")
        scope = "repository:%s:%s" % (repository, action)
        if headers.get("Authorization") != "Bearer tok-" + urllib.parse.quote(scope, safe=""):
            challenge = 'Bearer realm="http://auth.test/token",service="registry.test",scope="%s"' % scope
            return FakeRegistry.error(401, "UNAUTHORIZED", "authentication required",
                                      {"WWW-Authenticate": challenge})
        return None

    fake.before = gate
    return fake, issued


def test_bearer_challenge_fetches_one_token_per_scope_and_reuses_it() -> None:
    fake, issued = bearer_registry()
    client = make_client(fake, username="user", password="pass")
    assert client.tags("apps/web") == ["1.0"]
    assert client.get_manifest("apps/web", "1.0").media_type.endswith("manifest.v1+json")
    assert client.head_manifest("apps/web", "1.0")
    assert issued == ["repository%3Aapps%2Fweb%3Apull"]
    # one 401 for the first request only; the token is then sent up front
    statuses_401 = [url for method, url, headers in fake.requests
                    if url.startswith(BASE) and "Authorization" not in headers]
    assert len(statuses_401) == 1
    token_request = [url for _m, url, _h in fake.requests if url.startswith("http://auth.test")][0]
    assert "service=registry.test" in token_request


def test_bearer_token_is_fetched_again_when_expired() -> None:
    fake, issued = bearer_registry(expires_in=5)
    clock = [1000.0]
    transport = Transport(opener=fake, sleep=lambda _s: None)
    client = RegistryClient(BASE, transport, Authenticator(transport, "user", "pass", clock=lambda: clock[0]))
    client.tags("apps/web")
    clock[0] += 100
    client.tags("apps/web")
    assert len(issued) == 2


def test_bearer_with_wrong_password_names_401_and_the_token_path() -> None:
    fake, _issued = bearer_registry()
    client = make_client(fake, username="user", password="wrong")
    with pytest.raises(RegistryAuthError) as caught:
        client.tags("apps/web")
    assert "GET /token returned HTTP 401 UNAUTHORIZED" in str(caught.value)


def test_basic_challenge_is_answered_then_sent_up_front() -> None:
    fake = FakeRegistry()
    fake.image("apps/web", "1.0", None)

    def gate(method: str, url: str, headers: dict[str, str]) -> FakeResponse | None:
        if headers.get("Authorization") != "Basic dXNlcjpwYXNz":
            return FakeResponse(401, {"WWW-Authenticate": 'Basic realm="Dockyard"'}, b"<html>401</html>")
        return None

    fake.before = gate
    client = make_client(fake, username="user", password="pass")
    client.tags("apps/web")
    client.tags("apps/web")
    assert len(fake.requests) == 3  # one challenge, then Basic on every request

    wrong = make_client(fake, username="user", password="nope")
    with pytest.raises(RegistryAuthError) as caught:
        wrong.tags("apps/web")
    assert str(caught.value) == ("GET /v2/apps/web/tags/list returned HTTP 401 "
                                 "(the registry refused the credentials of user user)")


def test_challenge_parsing_handles_quoted_commas() -> None:
    challenge = Challenge.parse('Bearer realm="https://a/token",service="reg",scope="repository:x:pull,push"')
    assert challenge is not None and challenge.scheme == "bearer"
    assert challenge.params == {"realm": "https://a/token", "service": "reg", "scope": "repository:x:pull,push"}


# -- retries ---------------------------------------------------------------------------

class Flaky:
    """Fails with the given statuses (or exceptions) first, then answers 200."""

    def __init__(self, *failures: object) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self, method: str, url: str, data: bytes | None = None, headers: dict | None = None) -> FakeResponse:
        self.calls += 1
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, BaseException):
                raise failure
            status, extra = failure if isinstance(failure, tuple) else (failure, {})
            raise urllib.error.HTTPError(url, status, "x", FakeResponse(status, extra, b"").headers, None)
        return FakeResponse(200, {}, b'{"repositories": []}')


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retries_retryable_statuses(status: int) -> None:
    opener = Flaky(status, status)
    waits: list[float] = []
    transport = Transport(opener=opener, sleep=waits.append)
    assert transport.request("GET", BASE + "/v2/").status == 200
    assert opener.calls == 3
    assert waits == [0.5, 1.0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405])
def test_never_retries_other_4xx(status: int) -> None:
    opener = Flaky(status)
    transport = Transport(opener=opener, sleep=lambda _s: pytest.fail("slept"))
    assert transport.request("GET", BASE + "/v2/").status == status
    assert opener.calls == 1


def test_retry_after_is_honoured_and_bounded() -> None:
    opener = Flaky((429, {"Retry-After": "7"}), (503, {"Retry-After": "3600"}))
    waits: list[float] = []
    transport = Transport(opener=opener, sleep=waits.append, max_wait=30)
    assert transport.request("GET", BASE + "/v2/").status == 200
    assert waits == [7.0, 30.0]


def test_retry_after_http_date() -> None:
    assert retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after("soon") is None


def test_gives_up_after_the_retry_budget_and_returns_the_last_answer() -> None:
    opener = Flaky(503, 503, 503, 503, 503)
    transport = Transport(opener=opener, sleep=lambda _s: None, retries=3)
    assert transport.request("GET", BASE + "/v2/").status == 503
    assert opener.calls == 4


def test_connection_errors_are_retried_then_raised() -> None:
    refused = urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    opener = Flaky(refused, refused)
    assert Transport(opener=opener, sleep=lambda _s: None).request("GET", BASE + "/v2/").status == 200
    always = Flaky(*[refused] * 10)
    with pytest.raises(RegistryConnectionError, match="cannot reach http://registry.test/v2/"):
        Transport(opener=always, sleep=lambda _s: None).request("GET", BASE + "/v2/")
    assert always.calls == 4


def test_tls_failures_are_not_retried() -> None:
    failure = urllib.error.URLError(ssl.SSLCertVerificationError(1, "certificate verify failed"))
    opener = Flaky(failure)
    with pytest.raises(RegistryTLSError, match="certificate verify failed"):
        Transport(opener=opener, sleep=lambda _s: None).request("GET", "https://registry.test/v2/")
    assert opener.calls == 1


def test_requests_are_counted() -> None:
    transport = Transport(opener=Flaky(503), sleep=lambda _s: None)
    transport.request("GET", BASE + "/v2/")
    assert transport.requests == 2


def test_real_request_options_are_passed_to_ansible_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {}

    class Recorder:
        def __init__(self, **kwargs: object) -> None:
            seen.update(kwargs)

        def open(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("not called")

    monkeypatch.setattr(transport_module, "Request", Recorder)
    Transport(validate_certs=False, ca_path=None, timeout=12)
    assert seen["validate_certs"] is False and seen["timeout"] == 12
    assert seen["follow_redirects"] == "none"


# -- manifests and errors --------------------------------------------------------------

def test_delete_disabled_says_so(fake: FakeRegistry) -> None:
    fake.delete_enabled = False
    digest = fake.image("apps/web", "1.0", None)
    with pytest.raises(RegistryDeleteDisabled) as caught:
        make_client(fake).delete_manifest("apps/web", digest)
    message = str(caught.value)
    assert message.startswith("DELETE /v2/apps/web/manifests/%s returned HTTP 405 UNSUPPORTED" % digest)
    assert "deletes are disabled on the registry (storage.delete.enabled)" in message


@pytest.fixture()
def substitute(fake: FakeRegistry) -> tuple[str, str, bytes]:
    """The digest of apps/web:1.0, and another real manifest (digest, bytes) to answer with instead."""
    wanted = fake.image("apps/web", "1.0", None)
    other = fake.image("apps/web", "other", None, seed="other")
    return wanted, other, fake.manifests["apps/web"][other][0]


@pytest.mark.parametrize("header", ["requested", "of the bytes", "unrelated", None])
def test_manifest_by_digest_must_hash_to_that_digest(fake: FakeRegistry, client: RegistryClient,
                                                     substitute: tuple[str, str, bytes], header: str | None) -> None:
    wanted, other, body = substitute
    announced = {"requested": wanted, "of the bytes": other, "unrelated": "sha256:" + "0" * 64, None: None}[header]
    fake.forge(wanted, body, announced)
    with pytest.raises(RegistryDigestMismatch) as caught:
        client.get_manifest("apps/web", wanted)
    error = caught.value
    assert (error.repository, error.expected, error.computed) == ("apps/web", wanted, other)
    message = str(error)
    assert "apps/web" in message and wanted in message and other in message


def test_manifest_by_digest_with_the_right_bytes_is_accepted(fake: FakeRegistry, client: RegistryClient,
                                                             substitute: tuple[str, str, bytes]) -> None:
    wanted = substitute[0]
    assert client.get_manifest("apps/web", wanted).digest == wanted
    fake.forge(wanted, fake.manifests["apps/web"][wanted][0], None)
    assert client.get_manifest("apps/web", wanted).digest == wanted


def test_manifest_by_tag_header_must_match_the_bytes(fake: FakeRegistry, client: RegistryClient,
                                                     substitute: tuple[str, str, bytes]) -> None:
    wanted, other, body = substitute
    fake.forge("1.0", body, wanted)
    with pytest.raises(RegistryDigestMismatch, match="Docker-Content-Digest") as caught:
        client.get_manifest("apps/web", "1.0")
    assert (caught.value.expected, caught.value.computed) == (wanted, other)
    fake.forge("1.0", body, other)
    assert client.get_manifest("apps/web", "1.0").digest == other
    fake.forge("1.0", body, None)  # nothing claims a digest: the bytes' own is the digest
    assert client.get_manifest("apps/web", "1.0").digest == other


@pytest.mark.parametrize("algorithm", ["sha384", "sha512"])
def test_manifest_by_longer_sha_digest_is_verified_with_that_algorithm(
        fake: FakeRegistry, client: RegistryClient, substitute: tuple[str, str, bytes], algorithm: str) -> None:
    wanted, other, body = substitute
    right = fake.manifests["apps/web"][wanted][0]
    reference = "%s:%s" % (algorithm, hashlib.new(algorithm, right).hexdigest())
    fake.forge(reference, right, wanted)
    assert client.get_manifest("apps/web", reference).digest == wanted
    fake.forge(reference, body, other)
    with pytest.raises(RegistryDigestMismatch) as caught:
        client.get_manifest("apps/web", reference)
    assert caught.value.expected == reference
    assert caught.value.computed == "%s:%s" % (algorithm, hashlib.new(algorithm, body).hexdigest())


@pytest.mark.parametrize("reference", ["md5:" + "0" * 32, "sha256:" + "A" * 64, "sha256:" + "0" * 63])
def test_digest_that_cannot_be_verified_is_refused_before_any_request(fake: FakeRegistry, client: RegistryClient,
                                                                      reference: str) -> None:
    with pytest.raises(InvalidInput, match="not a digest that can be verified"):
        client.get_manifest("apps/web", reference)
    assert fake.requests == []


def test_announced_digest_of_an_unknown_algorithm_is_refused(fake: FakeRegistry, client: RegistryClient,
                                                             substitute: tuple[str, str, bytes]) -> None:
    fake.forge("1.0", fake.manifests["apps/web"][substitute[0]][0], "md5:" + "0" * 32)
    with pytest.raises(RegistryError, match="cannot verify the Docker-Content-Digest 'md5:"):
        client.get_manifest("apps/web", "1.0")


def test_accept_header_names_all_four_media_types(fake: FakeRegistry, client: RegistryClient) -> None:
    fake.index("apps/web", "multi", "2024-01-01T00:00:00Z", "m")
    manifest = client.get_manifest("apps/web", "multi")
    assert manifest.is_index and len(manifest.children) == 2
    accept = fake.requests[-1][2]["Accept"]
    for media_type in ("application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                       "application/vnd.docker.distribution.manifest.list.v2+json",
                       "application/vnd.docker.distribution.manifest.v2+json"):
        assert media_type in accept


def test_error_message_names_status_path_and_code() -> None:
    body = json.dumps({"errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]})
    error = RegistryHTTPError("GET", "/v2/x/tags/list", 403, body.encode())
    assert str(error) == "GET /v2/x/tags/list returned HTTP 403 DENIED: requested access to the resource is denied"
