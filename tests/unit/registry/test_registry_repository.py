"""dockyard.registry.repository: four cases per state, the shared-digest rule, main()."""
from __future__ import annotations

import json
import typing as t

import pytest
from registry_fakes import BASE, FakeRegistry, make_client
from registry_fakes import run_main as run_module_main

from ansible_collections.dockyard.registry.plugins.module_utils._registry.errors import (
    InvalidInput,
    RegistryDigestMismatch,
)
from ansible_collections.dockyard.registry.plugins.modules import repository

NOW = 1_720_000_000.0  # 2024-07-03
DAY = 86400.0


def params(**overrides: t.Any) -> dict[str, t.Any]:
    base = {"name": "apps/web", "state": "present", "tags": None, "keep_last": None, "keep_patterns": None,
            "older_than": None, "order": "created"}
    base.update(overrides)
    return base


def run(fake: FakeRegistry, check_mode: bool = False, **overrides: t.Any) -> tuple[dict[str, t.Any], list[str]]:
    warnings: list[str] = []
    result = repository.RepositoryReconciler(make_client(fake), params(**overrides), check_mode,
                                             warnings.append, now=NOW).run()
    return result, warnings


def iso(days_before_now: float) -> str:
    import datetime
    moment = datetime.datetime.fromtimestamp(NOW - days_before_now * DAY, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture()
def web(fake: FakeRegistry) -> FakeRegistry:
    """apps/web: five builds a day apart, 1.4.2 also tagged stable, and latest on the newest."""
    for number, age in enumerate([50, 40, 30, 20, 10]):
        fake.image("apps/web", "1.%d.0" % number, iso(age))
    fake.tag_links["apps/web"]["stable"] = fake.tag_links["apps/web"]["1.1.0"]
    fake.tag_links["apps/web"]["latest"] = fake.tag_links["apps/web"]["1.4.0"]
    return fake


ALL = ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "latest", "stable"]


# -- state=present (retention): changed / idempotent / check / idempotent in check ------

def test_retention_changed(web: FakeRegistry) -> None:
    result, warnings = run(web, keep_last=2)
    # stable and 1.1.0 share a digest and both fall outside keep_last: both go, in one DELETE.
    assert [entry["tag"] for entry in result["deleted"]] == ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "stable"]
    assert result["changed"] is True
    assert result["tags"] == ["1.4.0", "latest"] == web.tags("apps/web")
    assert web.count("DELETE") == 4
    assert result["diff"] == {"before": {"tags": ALL}, "after": {"tags": ["1.4.0", "latest"]}}
    assert warnings == []


def test_retention_idempotent(web: FakeRegistry) -> None:
    run(web, keep_last=2)
    web.requests.clear()
    result, _warnings = run(web, keep_last=2)
    assert result["changed"] is False and result["deleted"] == []
    assert web.count("DELETE") == 0


def test_retention_check_mode_reports_exactly_what_a_real_run_deletes(web: FakeRegistry) -> None:
    checked, _warnings = run(web, check_mode=True, keep_last=2, keep_patterns=["stable"])
    assert checked["changed"] is True
    assert web.count("DELETE") == 0 and web.tags("apps/web") == ALL
    real, _warnings = run(web, keep_last=2, keep_patterns=["stable"])
    assert checked["deleted"] == real["deleted"] and checked["deleted_digests"] == real["deleted_digests"]
    assert checked["tags"] == real["tags"] == web.tags("apps/web")


def test_retention_idempotent_in_check_mode(web: FakeRegistry) -> None:
    run(web, keep_last=2)
    result, _warnings = run(web, check_mode=True, keep_last=2)
    assert result["changed"] is False and result["deleted"] == []


# -- state=absent: changed / idempotent / check / idempotent in check -------------------

def test_absent_tags_changed(web: FakeRegistry) -> None:
    result, _warnings = run(web, state="absent", tags=["1.0.0", "1.2.0", "nope"])
    assert [entry["tag"] for entry in result["deleted"]] == ["1.0.0", "1.2.0"]
    assert "1.0.0" not in web.tags("apps/web") and "1.2.0" not in web.tags("apps/web")
    assert result["changed"] is True


def test_absent_tags_idempotent(web: FakeRegistry) -> None:
    run(web, state="absent", tags=["1.0.0"])
    result, _warnings = run(web, state="absent", tags=["1.0.0"])
    assert result["changed"] is False and result["deleted"] == []


def test_absent_whole_repository_check_mode_then_real(web: FakeRegistry) -> None:
    checked, _warnings = run(web, check_mode=True, state="absent")
    assert checked["changed"] is True and checked["tags"] == []
    assert [entry["tag"] for entry in checked["deleted"]] == ALL
    assert web.count("DELETE") == 0 and web.tags("apps/web") == ALL
    real, _warnings = run(web, state="absent")
    assert real["deleted"] == checked["deleted"] and web.tags("apps/web") == []


def test_absent_idempotent_in_check_mode(web: FakeRegistry) -> None:
    run(web, state="absent")
    result, _warnings = run(web, check_mode=True, state="absent")
    assert result["changed"] is False
    unknown, _warnings = run(FakeRegistry(), check_mode=True, state="absent", name="never/pushed")
    assert unknown["changed"] is False and unknown["tags"] == []


# -- the shared-digest rule ---------------------------------------------------------------

def test_tag_sharing_a_digest_with_a_kept_tag_is_protected(web: FakeRegistry) -> None:
    result, warnings = run(web, state="absent", tags=["1.1.0"])  # stable is on the same digest
    assert result["deleted"] == [] and result["changed"] is False
    assert result["protected"][0]["tag"] == "1.1.0" and result["protected"][0]["kept_by"] == ["stable"]
    assert "deleting by digest would remove them too" in warnings[0]
    assert web.count("DELETE") == 0 and "1.1.0" in web.tags("apps/web")


def test_retention_protects_a_digest_kept_by_pattern(web: FakeRegistry) -> None:
    result, _warnings = run(web, keep_last=1, keep_patterns=["stable"])
    # keep_last=1 keeps "latest" (ties on time break by name); 1.4.0 shares its digest.
    assert [entry["tag"] for entry in result["protected"]] == ["1.1.0", "1.4.0"]
    assert "stable" in web.tags("apps/web") and "1.1.0" in web.tags("apps/web")


def test_platform_manifest_of_a_kept_index_is_protected(fake: FakeRegistry) -> None:
    fake.index("apps/multi", "multi", iso(5), "m")
    child = json.loads(fake.manifests["apps/multi"][fake.tag_links["apps/multi"]["multi"]][0])["manifests"][0]
    fake.tag_links["apps/multi"]["amd64-only"] = child["digest"]
    result, _warnings = run(fake, name="apps/multi", state="absent", tags=["amd64-only"])
    assert result["deleted"] == []
    assert "platform manifest of the index" in result["protected"][0]["reason"]


# -- rules ------------------------------------------------------------------------------

def test_retention_refuses_a_manifest_whose_bytes_do_not_match_its_digest(web: FakeRegistry) -> None:
    # The registry answers 1.0.0 with the bytes of 1.4.0 but announces 1.0.0's digest: deleting by the
    # digest of those bytes would remove latest, which keep_last protects.
    wanted, other = web.tag_links["apps/web"]["1.0.0"], web.tag_links["apps/web"]["1.4.0"]
    web.forge("1.0.0", web.manifests["apps/web"][other][0], wanted)
    with pytest.raises(RegistryDigestMismatch, match="apps/web"):
        run(web, keep_last=2)
    assert web.count("DELETE") == 0 and web.tags("apps/web") == ALL


def test_retention_refuses_a_platform_manifest_that_is_not_what_the_index_names(fake: FakeRegistry) -> None:
    fake.index("apps/multi", "1.0", iso(40), "m")
    index = fake.manifests["apps/multi"][fake.tag_links["apps/multi"]["1.0"]][0]
    child = json.loads(index)["manifests"][0]["digest"]
    impostor = fake.image("apps/multi", "2.0", iso(1), seed="impostor")
    fake.forge(child, fake.manifests["apps/multi"][impostor][0], child)
    with pytest.raises(RegistryDigestMismatch) as caught:
        run(fake, name="apps/multi", older_than="30d")
    assert (caught.value.expected, caught.value.computed) == (child, impostor)
    assert fake.count("DELETE") == 0


def test_older_than_keeps_recent_images(web: FakeRegistry) -> None:
    result, _warnings = run(web, older_than="25d", check_mode=True)
    assert [entry["tag"] for entry in result["deleted"]] == ["1.0.0", "1.1.0", "1.2.0", "stable"]


def test_keep_last_by_version(fake: FakeRegistry) -> None:
    for tag, age in [("1.2.0", 1), ("1.10.0", 5), ("1.9.0", 3), ("2.0.0-rc.1", 2), ("latest", 1)]:
        fake.image("apps/api", tag, iso(age), seed=tag)
    result, _warnings = run(fake, name="apps/api", keep_last=2, order="version", keep_patterns=["latest"],
                            check_mode=True)
    assert result["tags"] == ["1.10.0", "2.0.0-rc.1", "latest"]


@pytest.mark.parametrize("overrides, message", [
    ({"name": "Apps/Web", "keep_last": 1}, "not a valid repository name"),
    ({"keep_last": -1}, "keep_last must be 0 or more"),
    ({"keep_patterns": ["("]}, "not a valid regular expression"),
    ({"older_than": "30 parsecs"}, "is not a duration"),
    ({"state": "absent", "tags": ["-bad"]}, "not a valid tag"),
    ({}, "needs a retention rule"),
    ({"state": "absent", "keep_last": 1}, "apply to state=present only"),
])
def test_bad_input_is_refused_before_any_request(fake: FakeRegistry, overrides: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        run(fake, **overrides)
    assert fake.requests == []


# -- main(): one fail_json, no traceback ----------------------------------------------------

def run_main(args: dict[str, t.Any], capsys: pytest.CaptureFixture[str]) -> dict[str, t.Any]:
    return run_module_main(repository.main, args, capsys)


def test_main_reports_delete_disabled(web: FakeRegistry, patched_transport: FakeRegistry,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    web.delete_enabled = False
    result = run_main({"registry_url": BASE, "name": "apps/web", "state": "absent", "tags": ["1.0.0"]}, capsys)
    assert result["failed"] is True
    assert "HTTP 405" in result["msg"] and "storage.delete.enabled" in result["msg"]
    assert "exception" not in result or "Traceback" not in str(result.get("exception"))


def test_main_diff_and_check_mode(web: FakeRegistry, patched_transport: FakeRegistry,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    result = run_main({"registry_url": BASE, "name": "apps/web", "keep_last": 2, "_ansible_check_mode": True,
                       "_ansible_diff": True}, capsys)
    assert result["changed"] is True and result["diff"]["after"] == {"tags": ["1.4.0", "latest"]}
    assert web.count("DELETE") == 0
