"""Spec parity: what a client gets through the gateway is what it gets from the registry itself.

Each case runs the same requests against a docker-registry 2.8 (direct, plain HTTP) and
against the gateway (the role's own nginx.conf, TLS) in front of a twin registry with the same
configuration and the same history, and compares every exchange: status, the headers a
client acts on (``Location``, ``Range``, ``Docker-Content-Digest``, ``Docker-Upload-UUID``,
``Link``, ``WWW-Authenticate`` …) and the body (JSON errors parsed). Absolute URLs, upload
UUIDs and ``_state`` tokens are made neutral; the Bearer realm is checked on its own (the
gateway names itself, on the name and port the client used). Both auth modes, with and
without the blob cache.

Distribution 2.8's own deviations from the OCI distribution spec show on both sides: tag
lists ignore ``n`` and ``last`` (no ``Link``) and come in storage order, not lexical order;
challenges list scopes and actions in random order; unknown paths are a plain-text 404 and
a wrong method a plain-text 405. Where the gateway answers itself it differs on purpose
(test_gateway_behaviour.py): paths outside the API are a JSON 404, TRACE a JSON 405.
"""
from __future__ import annotations

import hashlib
import os
import ssl
import typing as t

import pytest

from api_client import OCI_MANIFEST, Side, challenge, normalise
from conftest import PASSWORD, TOKEN_USERS, USER, Gateway, Registry, start_gateway

MODES = [("htpasswd", True), ("htpasswd", False), ("token", True), ("token", False)]


class Pair(t.NamedTuple):
    auth: str
    cache: bool
    direct: Registry
    twin: Registry
    gateway: Gateway

    def sides(self, login: str = "admin") -> tuple[Side, Side]:
        context = ssl.create_default_context(cafile=str(self.gateway.ca))
        if self.auth == "token":
            creds = (login, TOKEN_USERS[login])
            return Side(self.direct.url, token_login=creds), Side(self.gateway.url, context, token_login=creds)
        return Side(self.direct.url), Side(self.gateway.url, context, basic=(USER, PASSWORD))


@pytest.fixture(scope="module", params=MODES, ids=["%s-%s" % (auth, "cache" if cache else "nocache")
                                                   for auth, cache in MODES])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Pair]:
    if os.geteuid() != 0:
        pytest.skip("the gateway runs nginx as the role does (workers as www-data): run as root")
    auth, cache = request.param
    registry_auth = request.getfixturevalue("token_service").registry_auth() if auth == "token" else None
    direct = Registry(tmp_path_factory.mktemp("direct"), auth=registry_auth)
    twin = Registry(tmp_path_factory.mktemp("twin"), auth=registry_auth)
    direct.start()
    twin.start()
    token_upstream = request.getfixturevalue("token_service").upstream if auth == "token" else ""
    gateway = start_gateway(twin.host, auth=auth, token_upstream=token_upstream,
                            gateway__blob_cache_enabled=cache)
    yield Pair(auth, cache, direct, twin, gateway)
    gateway.stop()
    direct.stop()
    twin.stop()


def both(pair: Pair, case: t.Callable[[Side, str], None], login: str = "admin") -> tuple[Side, Side]:
    """Run ``case`` on each side (same repository names) and compare every exchange."""
    direct, gateway = pair.sides(login)
    repository = "%s/%s" % ("pub" if login == "reader" else "parity", case.__name__.replace("_", "-"))
    case(direct, repository)
    case(gateway, repository)
    seen = [normalise(response, direct.origin) for response in direct.exchanges]
    through = [normalise(response, gateway.origin) for response in gateway.exchanges]
    assert len(seen) == len(through), ([r["request"] for r in seen], [r["request"] for r in through])
    for expected, got in zip(seen, through):
        assert got == expected
    for response in gateway.exchanges:
        challenges = response.all("www-authenticate")
        assert len(challenges) <= 1, response
        if challenges and challenges[0].startswith("Bearer "):
            assert challenge(challenges[0])[1]["realm"] == gateway.origin + "/auth/token"
    return direct, gateway


def data(name: str, size: int = 40_000) -> bytes:
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


# --- the cases: each is a client's sequence of requests -------------------------------------

def base_and_unknowns(side: Side, repository: str) -> None:
    side.request("GET", "/v2/")
    side.request("GET", "/v2/%s/manifests/nope" % repository)
    side.request("HEAD", "/v2/%s/manifests/nope" % repository)
    side.request("GET", "/v2/%s/blobs/sha256:%s" % (repository, "0" * 64))
    side.request("HEAD", "/v2/%s/blobs/sha256:%s" % (repository, "0" * 64))
    side.request("GET", "/v2/%s/tags/list" % repository)
    side.request("GET", "/v2/%s/blobs/uploads/%s" % (repository, "0b2d4c8e-0000-4000-8000-000000000000"))
    side.request("GET", "/v2/%s/manifests/sha256:%s" % (repository, "1" * 64))
    side.request("GET", "/v2/%s/manifests/bad%%20tag" % repository)


def pull(side: Side, repository: str) -> None:
    manifest_digest, layer, manifest = side.push_image(repository, "1", data(repository))
    for method in ("GET", "HEAD"):
        side.request(method, "/v2/%s/manifests/1" % repository, headers={"Accept": OCI_MANIFEST})
        side.request(method, "/v2/%s/manifests/%s" % (repository, manifest_digest), headers={"Accept": OCI_MANIFEST})
    for _twice in range(2):  # the second read may come from the cache
        blob = side.request("GET", "/v2/%s/blobs/%s" % (repository, layer))
        side.request("HEAD", "/v2/%s/blobs/%s" % (repository, layer))
        side.request("GET", "/v2/%s/blobs/%s" % (repository, layer), headers={"Range": "bytes=100-1099"})
        assert blob.body == data(repository) and len(manifest) > 0


def monolithic_push(side: Side, repository: str) -> None:
    blob = data(repository)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    side.request("POST", "/v2/%s/blobs/uploads/?digest=%s" % (repository, digest), blob,
                 {"Content-Type": "application/octet-stream"})
    other = data(repository + "-2")
    started = side.request("POST", "/v2/%s/blobs/uploads/" % repository)
    wrong = "sha256:" + "2" * 64
    side.request("PUT", "%s&digest=%s" % (started.header("location"), wrong), other,
                 {"Content-Type": "application/octet-stream"})
    side.request("PUT", "/v2/%s/manifests/1" % repository, b"{not json", {"Content-Type": OCI_MANIFEST})
    side.request("PUT", "/v2/%s/manifests/1" % repository, (
        '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json",'
        '"digest":"sha256:%s","size":2},"layers":[]}' % (OCI_MANIFEST, "3" * 64)).encode(),
        {"Content-Type": OCI_MANIFEST})
    side.request("HEAD", "/v2/%s/blobs/%s" % (repository, digest))


def chunked_push(side: Side, repository: str) -> None:
    blob = data(repository, 30_000)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    location = side.request("POST", "/v2/%s/blobs/uploads/" % repository).header("location")
    for start in range(0, len(blob), 10_000):
        chunk = blob[start:start + 10_000]
        location = side.request("PATCH", location, chunk, {
            "Content-Type": "application/octet-stream", "Content-Range": "%d-%d" % (start, start + len(chunk) - 1),
        }).header("location")
        side.request("GET", location)
    side.request("PUT", "%s&digest=%s" % (location, digest))
    side.request("GET", "/v2/%s/blobs/%s" % (repository, digest))


def out_of_order_chunks(side: Side, repository: str) -> None:
    blob = data(repository, 20_000)
    location = side.request("POST", "/v2/%s/blobs/uploads/" % repository).header("location")
    side.request("PATCH", location, blob[10_000:], {"Content-Type": "application/octet-stream",
                                                    "Content-Range": "10000-19999"})
    first = side.request("PATCH", location, blob[:10_000], {"Content-Type": "application/octet-stream",
                                                            "Content-Range": "0-9999"})
    location = first.header("location") or location
    side.request("PATCH", location, blob[:5], {"Content-Type": "application/octet-stream",
                                               "Content-Range": "0-4"})
    side.request("GET", location)


def resumed_chunks(side: Side, repository: str) -> None:
    """A client that lost its place asks the upload's status and goes on from its Range."""
    blob = data(repository, 25_000)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    location = side.request("POST", "/v2/%s/blobs/uploads/" % repository).header("location")
    location = side.request("PATCH", location, blob[:12_000], {"Content-Type": "application/octet-stream",
                                                               "Content-Range": "0-11999"}).header("location")
    status = side.request("GET", location)
    offset = int(status.header("range").split("-")[1]) + 1
    location = side.request("PATCH", status.header("location"), blob[offset:], {
        "Content-Type": "application/octet-stream", "Content-Range": "%d-%d" % (offset, len(blob) - 1),
    }).header("location")
    side.request("PUT", "%s&digest=%s" % (location, digest))
    cancelled = side.request("POST", "/v2/%s/blobs/uploads/" % repository).header("location")
    side.request("DELETE", cancelled)
    side.request("GET", cancelled)


def cross_repository_mount(side: Side, repository: str) -> None:
    _manifest, layer, _body = side.push_image(repository + "/source", "1", data(repository))
    side.request("POST", "/v2/%s/target/blobs/uploads/?mount=%s&from=%s/source" % (repository, layer, repository))
    side.request("GET", "/v2/%s/target/blobs/%s" % (repository, layer))
    side.request("POST", "/v2/%s/target/blobs/uploads/?mount=sha256:%s&from=%s/source"
                 % (repository, "4" * 64, repository))


def tag_listing(side: Side, repository: str) -> None:
    _manifest, _layer, manifest = side.push_image(repository, "t0", data(repository))
    for number in range(1, 5):
        side.request("PUT", "/v2/%s/manifests/t%d" % (repository, number), manifest, {"Content-Type": OCI_MANIFEST})
    side.request("GET", "/v2/%s/tags/list" % repository)
    page = side.request("GET", "/v2/%s/tags/list?n=2" % repository)
    if page.header("link"):  # Distribution 2.8 does not page tag lists (3.0 does)
        side.request("GET", page.header("link").split(";")[0].strip("<>"))
    side.request("GET", "/v2/%s/tags/list?n=2&last=t3" % repository)
    side.request("GET", "/v2/%s/tags/list?n=0" % repository)


def catalog(side: Side, _repository: str) -> None:
    """Repositories named to sort last, so the pages do not depend on the other cases."""
    for number in range(3):
        side.push_image("zzzz/catalog-r%d" % number, "1", data("catalog"))
    side.request("GET", "/v2/_catalog?last=zzzz")
    page = side.request("GET", "/v2/_catalog?n=2&last=zzzz")
    side.request("GET", page.header("link").split(";")[0].strip("<>"))
    side.request("GET", "/v2/_catalog?n=2&last=zzzz/catalog-r0")
    side.request("GET", "/v2/_catalog?n=1")


def manifest_delete(side: Side, repository: str) -> None:
    digest, _layer, _manifest = side.push_image(repository, "1", data(repository))
    side.request("DELETE", "/v2/%s/manifests/1" % repository)
    side.request("DELETE", "/v2/%s/manifests/%s" % (repository, digest))
    side.request("GET", "/v2/%s/manifests/%s" % (repository, digest), headers={"Accept": OCI_MANIFEST})
    side.request("GET", "/v2/%s/manifests/1" % repository, headers={"Accept": OCI_MANIFEST})
    side.request("DELETE", "/v2/%s/manifests/%s" % (repository, digest))


def blob_delete(side: Side, repository: str) -> None:
    _digest, layer, _manifest = side.push_image(repository, "1", data(repository))
    for _twice in range(2):  # a cache hit before the delete
        side.request("GET", "/v2/%s/blobs/%s" % (repository, layer))
    side.request("DELETE", "/v2/%s/blobs/%s" % (repository, layer))
    side.request("GET", "/v2/%s/blobs/%s" % (repository, layer))
    side.request("HEAD", "/v2/%s/blobs/%s" % (repository, layer))
    side.request("DELETE", "/v2/%s/blobs/%s" % (repository, layer))


def anonymous_and_refused(side: Side, repository: str) -> None:
    """No credentials, and a pull-only account asking to push and delete."""
    _digest, layer, _manifest = side.push_image(repository, "1", data(repository))
    for method in ("GET", "HEAD", "DELETE"):
        side.request(method, "/v2/%s/blobs/%s" % (repository, layer), authenticate=False)
    side.request("GET", "/v2/", authenticate=False)
    side.request("GET", "/v2/%s/manifests/1" % repository, authenticate=False)
    side.request("POST", "/v2/%s/blobs/uploads/" % repository, authenticate=False)
    side.request("GET", "/v2/_catalog", authenticate=False)


CASES = [base_and_unknowns, pull, monolithic_push, chunked_push, out_of_order_chunks, resumed_chunks,
         cross_repository_mount, tag_listing, catalog, manifest_delete, blob_delete, anonymous_and_refused]


@pytest.mark.parametrize("case", CASES, ids=[case.__name__ for case in CASES])
def test_gateway_answers_as_the_registry(pair: Pair, case: t.Callable[[Side, str], None]) -> None:
    if case is anonymous_and_refused and pair.auth == "htpasswd":
        pytest.skip("htpasswd mode: the registry has no authentication of its own (see test_gateway_errors)")
    both(pair, case)


def test_a_pull_only_account_gets_the_registrys_refusals(pair: Pair) -> None:
    if pair.auth != "token":
        pytest.skip("htpasswd mode has no per-repository permissions")

    def pull_only(side: Side, repository: str) -> None:
        admin = Side(side.origin, side.context, token_login=("admin", TOKEN_USERS["admin"]))
        _digest, layer, _manifest = admin.push_image(repository, "1", data(repository))
        for _twice in range(2):
            side.request("GET", "/v2/%s/blobs/%s" % (repository, layer))
        side.request("DELETE", "/v2/%s/blobs/%s" % (repository, layer))
        side.request("POST", "/v2/%s/blobs/uploads/" % repository)
        side.request("DELETE", "/v2/%s/manifests/1" % repository)
        side.request("GET", "/v2/%s/blobs/%s" % (repository, layer))

    both(pair, pull_only, login="reader")
