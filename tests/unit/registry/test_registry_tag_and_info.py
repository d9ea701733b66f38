"""dockyard.registry.tag (four cases, cross-repository) and repository_info."""
from __future__ import annotations

import json
import typing as t

import pytest
from registry_fakes import FakeRegistry, make_client

from ansible_collections.dockyard.registry.plugins.module_utils._registry.errors import (
    InvalidInput,
    RegistryDigestMismatch,
)
from ansible_collections.dockyard.registry.plugins.modules import repository_info, tag


def promote(fake: FakeRegistry, check_mode: bool = False, **overrides: t.Any) -> dict[str, t.Any]:
    params = {"repository": "apps/web", "tag": "stable", "source": "1.4.2", "source_repository": None}
    params.update(overrides)
    return tag.TagReconciler(make_client(fake), params, check_mode).run()


@pytest.fixture()
def web(fake: FakeRegistry) -> FakeRegistry:
    fake.image("apps/web", "1.4.1", "2024-01-01T00:00:00Z")
    fake.image("apps/web", "1.4.2", "2024-02-01T00:00:00Z")
    fake.tag_links["apps/web"]["stable"] = fake.tag_links["apps/web"]["1.4.1"]
    return fake


def test_tag_changed(web: FakeRegistry) -> None:
    old, new = web.tag_links["apps/web"]["1.4.1"], web.tag_links["apps/web"]["1.4.2"]
    result = promote(web)
    assert result["changed"] is True
    assert (result["previous_digest"], result["digest"]) == (old, new)
    assert web.tag_links["apps/web"]["stable"] == new
    put = [headers for method, _url, headers in web.requests if method == "PUT"]
    assert put == [{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}]
    assert web.count("GET", "/blobs/") == 0  # no layer pulled


def test_tag_idempotent(web: FakeRegistry) -> None:
    promote(web)
    web.requests.clear()
    assert promote(web)["changed"] is False
    assert web.count("PUT") == 0


def test_tag_check_mode(web: FakeRegistry) -> None:
    old = web.tag_links["apps/web"]["stable"]
    result = promote(web, check_mode=True)
    assert result["changed"] is True and result["digest"] == web.tag_links["apps/web"]["1.4.2"]
    assert web.tag_links["apps/web"]["stable"] == old and web.count("PUT") == 0
    assert result["diff"]["before"]["digest"] == old


def test_tag_idempotent_in_check_mode(web: FakeRegistry) -> None:
    promote(web)
    assert promote(web, check_mode=True)["changed"] is False


def test_tag_new_tag_by_digest(web: FakeRegistry) -> None:
    digest = web.tag_links["apps/web"]["1.4.2"]
    result = promote(web, tag="release", source=digest)
    assert result["previous_digest"] is None and web.tag_links["apps/web"]["release"] == digest


def test_tag_across_repositories_mounts_blobs_and_copies_index_children(fake: FakeRegistry) -> None:
    digest = fake.index("staging/web", "rc", "2024-01-01T00:00:00Z", "m")
    result = promote(fake, repository="apps/web", tag="1.0", source="rc", source_repository="staging/web")
    assert result["changed"] is True and fake.tag_links["apps/web"]["1.0"] == digest
    assert len(result["copied_blobs"]) == 4  # two configs, two layers
    assert fake.count("POST", "mount=") == 4
    assert len(fake.manifests["apps/web"]) == 3  # index + both platform manifests


def test_tag_across_repositories_copies_blobs_when_the_registry_declines_to_mount(fake: FakeRegistry) -> None:
    digest = fake.image("staging/web", "rc", "2024-01-01T00:00:00Z")
    fake.mountable = False
    result = promote(fake, repository="apps/web", tag="1.0", source="rc", source_repository="staging/web")
    assert fake.tag_links["apps/web"]["1.0"] == digest and len(result["copied_blobs"]) == 2
    assert fake.count("PUT", "/blobs/uploads/") == 2
    assert fake.blob_links["apps/web"] >= set(result["copied_blobs"])


@pytest.mark.parametrize("header", ["requested", "of the bytes", None])
def test_tag_never_stores_bytes_that_do_not_hash_to_the_source_digest(web: FakeRegistry, header: str | None) -> None:
    wanted, other = web.tag_links["apps/web"]["1.4.2"], web.tag_links["apps/web"]["1.4.1"]
    web.forge(wanted, web.manifests["apps/web"][other][0], {"requested": wanted, "of the bytes": other}.get(header))
    with pytest.raises(RegistryDigestMismatch, match=wanted):
        promote(web, tag="release", source=wanted)
    with pytest.raises(RegistryDigestMismatch):
        promote(web, tag="release", source=wanted, check_mode=True)
    assert web.puts() == [] and "release" not in web.tag_links["apps/web"]


def test_tag_never_copies_a_platform_manifest_it_could_not_verify(fake: FakeRegistry) -> None:
    index = fake.index("staging/web", "rc", "2024-01-01T00:00:00Z", "m")
    children = [entry["digest"] for entry in json.loads(fake.manifests["staging/web"][index][0])["manifests"]]
    impostor = fake.image("staging/web", "evil", None, seed="evil")
    fake.forge(children[1], fake.manifests["staging/web"][impostor][0], children[1])
    with pytest.raises(RegistryDigestMismatch, match=children[1]):
        promote(fake, repository="apps/web", tag="1.0", source="rc", source_repository="staging/web")
    assert all(children[1] not in url and "/manifests/1.0" not in url for url in fake.puts())
    assert impostor not in fake.manifests.get("apps/web", {}) and "1.0" not in fake.tag_links.get("apps/web", {})


def test_info_refuses_a_manifest_whose_bytes_do_not_match_the_announced_digest(fake: FakeRegistry) -> None:
    wanted = fake.image("apps/web", "1.0", None)
    other = fake.image("apps/web", "2.0", None, seed="two")
    fake.forge("1.0", fake.manifests["apps/web"][other][0], wanted)
    with pytest.raises(RegistryDigestMismatch, match="manifest 1.0 of apps/web"):
        repository_info.describe(make_client(fake), {"repositories": ["apps/web"], "pattern": None, "details": True})


def test_tag_bad_reference_is_refused(fake: FakeRegistry) -> None:
    with pytest.raises(InvalidInput, match="neither a tag nor a digest"):
        promote(fake, source="sha256:xyz!")
    with pytest.raises(InvalidInput, match="not a valid tag"):
        promote(fake, tag="a" * 129)


def test_info_lists_platforms_creation_and_sizes(fake: FakeRegistry) -> None:
    fake.image("apps/web", "1.0", "2024-01-01T00:00:00.123456789Z")
    fake.index("apps/web", "multi", "2024-03-01T00:00:00Z", "m")
    fake.image("apps/api", "x", None)
    fake.tag_links["apps/empty"] = {}
    result = repository_info.describe(make_client(fake), {"repositories": None, "pattern": "apps/(web|empty)",
                                                          "details": True})
    names = [repo["name"] for repo in result["repositories"]]
    assert names == ["apps/empty", "apps/web"]
    empty, web = result["repositories"]
    assert empty["tags"] == [] and empty["exists"] is True
    one, multi = web["tags"]
    assert one["created"] == "2024-01-01T00:00:00Z" and one["platforms"] == [{"os": "linux", "architecture": "amd64"}]
    assert multi["media_type"] == "application/vnd.oci.image.index.v1+json"
    assert multi["platforms"] == [{"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm64"}]
    assert multi["created"] == "2024-03-01T00:00:00Z" and multi["size"] > 0


def test_info_fetches_configs_once_per_digest(fake: FakeRegistry) -> None:
    fake.image("apps/web", "1.0", "2024-01-01T00:00:00Z")
    for number in range(20):
        fake.tag_links["apps/web"]["alias%d" % number] = fake.tag_links["apps/web"]["1.0"]
    repository_info.describe(make_client(fake), {"repositories": ["apps/web"], "pattern": None, "details": True})
    assert fake.count("GET", "/manifests/") == 21 and fake.count("GET", "/blobs/") == 1


def test_info_unknown_repository_and_no_details(fake: FakeRegistry) -> None:
    fake.image("apps/web", "1.0", None)
    result = repository_info.describe(make_client(fake), {"repositories": ["apps/web", "nope"], "pattern": None,
                                                          "details": False})
    assert result["repositories"] == [{"name": "apps/web", "exists": True, "tags": [{"name": "1.0"}], "artifacts": []},
                                      {"name": "nope", "exists": False, "tags": []}]
    assert fake.count("GET", "/manifests/") == 0
