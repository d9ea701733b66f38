"""The registry modules against a real docker-registry (and real nginx), through ansible-playbook."""
from __future__ import annotations

import hashlib
import json
import pathlib
import shutil
import subprocess
import typing as t

import pytest
from conftest import PASSWORD, ROOT, USER, Gateway, Images, Registry, days_ago, free_port

Run = t.Callable[..., t.Any]


def info(playbook: Run, registry: Registry, **args: t.Any) -> t.Any:
    return playbook("module.yml", {"module": "repository_info", "module_args": args, "registry_url": registry.url})


def repository(playbook: Run, registry: Registry, *flags: str, **args: t.Any) -> t.Any:
    return playbook("module.yml", {"module": "repository", "module_args": args, "registry_url": registry.url}, *flags)


def pull_and_verify(registry: Registry, repository_name: str, tag: str, workdir: pathlib.Path) -> int:
    """skopeo-copy an image out of the registry; check every blob against its digest. Returns the blob count."""
    target = workdir / ("pull-%s-%s" % (repository_name.replace("/", "_"), tag))
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run(["skopeo", "copy", "--quiet", "--multi-arch=all", "--src-tls-verify=false",
                    "docker://%s/%s:%s" % (registry.host, repository_name, tag), "oci:%s:%s" % (target, tag)],
                   check=True, capture_output=True, text=True)
    blobs = list((target / "blobs" / "sha256").iterdir())
    for blob in blobs:
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    return len(blobs)


# -- repository_info ------------------------------------------------------------------------

def test_info_lists_tags_with_platforms_creation_times_and_digests(registry: Registry, images: Images,
                                                                   playbook: Run) -> None:
    images.push(registry, "img0", "info/app", "1.0")
    images.push(registry, "img0", "info/app", "same-as-1.0")
    images.push(registry, "multi", "info/app", "multi")
    images.push(registry, "img1", "info/other", "x")
    result = info(playbook, registry, pattern="info/a.*")
    assert result.returncode == 0, result.output
    assert [repo["name"] for repo in result["repositories"]] == ["info/app"]
    tags = {tag["name"]: tag for tag in result["repositories"][0]["tags"]}
    assert sorted(tags) == ["1.0", "multi", "same-as-1.0"]
    assert tags["1.0"]["digest"] == tags["same-as-1.0"]["digest"] == images.digests["img0"]
    assert tags["1.0"]["media_type"] == "application/vnd.oci.image.manifest.v1+json"
    multi = tags["multi"]
    assert multi["digest"] == images.digests["multi"]
    assert multi["media_type"] == "application/vnd.oci.image.index.v1+json"
    assert multi["platforms"] == [{"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm64"}]
    assert multi["size"] > 2 * 2 * 16 * 1024  # two platforms, two 16K layers each
    # creation times come from the image configs the OCI writer was given
    assert tags["1.0"]["created"] == images.created["img0"]
    assert multi["created"] == images.created["multi"]


def test_info_catalog_and_unknown_repository(registry: Registry, images: Images, playbook: Run) -> None:
    images.push(registry, "img1", "info/listed", "x")
    everything = info(playbook, registry, details=False)
    assert "info/listed" in [repo["name"] for repo in everything["repositories"]]
    missing = info(playbook, registry, repositories=["info/never-pushed"])
    assert missing["repositories"] == [{"name": "info/never-pushed", "exists": False, "tags": []}]


# -- retention ----------------------------------------------------------------------------

RETENTION = {"name": "ret/app", "keep_last": 2, "keep_patterns": ["pinned"], "older_than": "30d"}


@pytest.fixture()
def retention_repo(registry: Registry, images: Images) -> dict[str, str]:
    """v1..v6 created 90, 60, 40, 20, 10, 5 days ago; pinned shares v2's digest, old-alias v1's.

    Images of their own (no other test pushes them), so GC can really free their layers.
    """
    pushed = {}
    for number, age in enumerate([90, 60, 40, 20, 10, 5]):
        images.build("ret%d" % number, days_ago(age), seed="retention")
        pushed["v%d" % (number + 1)] = images.push(registry, "ret%d" % number, "ret/app", "v%d" % (number + 1))
    pushed["pinned"] = images.push(registry, "ret1", "ret/app", "pinned")
    pushed["old-alias"] = images.push(registry, "ret0", "ret/app", "old-alias")
    return pushed


def test_retention_check_mode_then_real_run_then_idempotent_then_gc(
        registry: Registry, images: Images, retention_repo: dict[str, str], playbook: Run,
        tmp_path: pathlib.Path) -> None:
    everything = sorted(retention_repo)
    expected_deleted = ["old-alias", "v1", "v3"]
    expected_kept = ["pinned", "v2", "v4", "v5", "v6"]

    checked = repository(playbook, registry, "--check", "--diff", **RETENTION)
    assert checked.returncode == 0, checked.output
    assert [entry["tag"] for entry in checked["deleted"]] == expected_deleted
    assert checked["changed"] is True and checked["tags"] == expected_kept
    assert registry.tags("ret/app") == everything  # nothing deleted in check mode
    assert checked["diff"] == {"before": {"tags": everything}, "after": {"tags": expected_kept}}

    real = repository(playbook, registry, **RETENTION)
    assert real.returncode == 0, real.output
    assert real["deleted"] == checked["deleted"] and real["deleted_digests"] == checked["deleted_digests"]
    assert sorted(real["deleted_digests"]) == sorted({retention_repo["v1"], retention_repo["v3"]})
    assert registry.tags("ret/app") == expected_kept
    # v2 would go by age, but pinned (kept) shares its digest
    assert [entry["tag"] for entry in real["protected"]] == ["v2"]
    assert real["protected"][0]["kept_by"] == ["pinned"]
    assert "deleting by digest would remove them too" in real.output

    again = repository(playbook, registry, **RETENTION)
    assert again["changed"] is False and again["deleted"] == [] and registry.tags("ret/app") == expected_kept
    again_check = repository(playbook, registry, "--check", **RETENTION)
    assert again_check["changed"] is False

    # Garbage-collect with the registry stopped, then every kept tag must still pull intact
    kept_layers = json.loads(registry.get("/v2/ret/app/manifests/" + retention_repo["v2"],
                                          "application/vnd.oci.image.manifest.v1+json")[2])["layers"]
    registry.stop()
    try:
        report = registry.garbage_collect()
    finally:
        registry.start()
    assert "blobs eligible for deletion" in report or "blobs marked" in report
    for tag in expected_kept:
        assert registry.digest("ret/app", tag) == retention_repo[tag]
        assert pull_and_verify(registry, "ret/app", tag, tmp_path) >= 3  # config + 2 layers
    # the layers of deleted images are really gone, the kept ones are not
    for image in ("ret0", "ret2"):  # v1 and v3
        raw = subprocess.run(["skopeo", "inspect", "--raw", "oci:%s:%s" % (images.root / image, image)],
                             capture_output=True, text=True, check=True).stdout
        for layer in json.loads(raw)["layers"]:
            assert registry.get("/v2/ret/app/blobs/" + layer["digest"])[0] == 404
    for layer in kept_layers:
        assert registry.get("/v2/ret/app/blobs/" + layer["digest"])[0] == 200


def test_retention_by_version_keeps_highest_versions(registry: Registry, images: Images, playbook: Run) -> None:
    # creation order differs from version order: 1.10.0 is the oldest image but the highest version
    for image, tag in [("img0", "1.10.0"), ("img1", "1.9.0"), ("img2", "1.2.0"), ("img3", "latest")]:
        images.push(registry, image, "ver/app", tag)
    result = repository(playbook, registry, name="ver/app", keep_last=2, order="version", keep_patterns=["latest"])
    assert result.returncode == 0, result.output
    assert registry.tags("ver/app") == ["1.10.0", "1.9.0", "latest"]


def test_absent_listed_tag_sharing_a_digest_is_refused_and_left(registry: Registry, images: Images,
                                                                playbook: Run) -> None:
    images.push(registry, "img4", "shared/app", "1.4.2")
    images.push(registry, "img4", "shared/app", "stable")
    images.push(registry, "img5", "shared/app", "old")
    result = repository(playbook, registry, name="shared/app", state="absent", tags=["1.4.2", "old"])
    assert result.returncode == 0, result.output
    assert [entry["tag"] for entry in result["deleted"]] == ["old"]
    assert result["protected"][0]["tag"] == "1.4.2" and result["protected"][0]["kept_by"] == ["stable"]
    assert registry.tags("shared/app") == ["1.4.2", "stable"]


def test_absent_whole_repository(registry: Registry, images: Images, playbook: Run) -> None:
    images.push(registry, "img2", "gone/app", "a")
    images.push(registry, "multi", "gone/app", "multi")
    result = repository(playbook, registry, name="gone/app", state="absent")
    assert result["changed"] is True and registry.tags("gone/app") == []
    assert repository(playbook, registry, name="gone/app", state="absent")["changed"] is False


# -- tag ----------------------------------------------------------------------------------

def test_tag_promotes_without_pulling_and_is_idempotent(registry: Registry, images: Images, playbook: Run) -> None:
    images.push(registry, "img6", "promote/app", "1.4.2")
    images.push(registry, "img5", "promote/app", "stable")
    args = {"repository": "promote/app", "tag": "stable", "source": "1.4.2"}
    checked = playbook("module.yml", {"module": "tag", "module_args": args, "registry_url": registry.url}, "--check")
    assert checked["changed"] is True and registry.digest("promote/app", "stable") == images.digests["img5"]
    result = playbook("module.yml", {"module": "tag", "module_args": args, "registry_url": registry.url})
    assert result.returncode == 0, result.output
    assert result["changed"] is True and result["previous_digest"] == images.digests["img5"]
    assert registry.digest("promote/app", "stable") == images.digests["img6"]
    inspected = json.loads(subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "docker://%s/promote/app:stable" % registry.host],
        capture_output=True, text=True, check=True).stdout)
    assert inspected["Digest"] == images.digests["img6"]
    again = playbook("module.yml", {"module": "tag", "module_args": args, "registry_url": registry.url})
    assert again["changed"] is False


def test_tag_copies_an_index_across_repositories(registry: Registry, images: Images, playbook: Run,
                                                 tmp_path: pathlib.Path) -> None:
    images.push(registry, "multi", "staging/multi", "rc1")
    args = {"repository": "prod/multi", "tag": "1.0", "source": "rc1", "source_repository": "staging/multi"}
    result = playbook("module.yml", {"module": "tag", "module_args": args, "registry_url": registry.url})
    assert result.returncode == 0, result.output
    assert result["media_type"] == "application/vnd.oci.image.index.v1+json"
    assert len(result["copied_blobs"]) == 6  # two platforms x (config + 2 layers), mounted
    assert registry.digest("prod/multi", "1.0") == images.digests["multi"]
    assert pull_and_verify(registry, "prod/multi", "1.0", tmp_path) == 9  # index + 2 manifests + 6 blobs


# -- behind nginx (TLS + auth_basic) ----------------------------------------------------------

def gateway_vars(gateway: Gateway, **extra: t.Any) -> dict[str, t.Any]:
    values = {"registry_url": gateway.url, "registry_username": USER, "registry_password": PASSWORD,
              "registry_ca_path": str(gateway.ca)}
    values.update(extra)
    return values


def test_through_nginx_with_tls_and_basic_auth(registry: Registry, gateway: Gateway, images: Images,
                                               playbook: Run) -> None:
    images.push(registry, "img3", "gw/app", "keep")
    images.push(registry, "img2", "gw/app", "drop")
    listed = playbook("module.yml", gateway_vars(gateway, module="repository_info",
                                                 module_args={"repositories": ["gw/app"]}))
    assert listed.returncode == 0, listed.output
    assert [tag["name"] for tag in listed["repositories"][0]["tags"]] == ["drop", "keep"]
    deleted = playbook("module.yml", gateway_vars(gateway, module="repository",
                                                  module_args={"name": "gw/app", "keep_patterns": ["keep"]}))
    assert [entry["tag"] for entry in deleted["deleted"]] == ["drop"]
    assert registry.tags("gw/app") == ["keep"]


def test_htpasswd_users_log_in_through_nginx(gateway: Gateway, playbook: Run) -> None:
    before = gateway.htpasswd.read_bytes()
    users = [{"name": USER, "password": PASSWORD}, {"name": "ci", "password": "ci-" + PASSWORD}]

    def htpasswd(users: list[dict[str, str]], *flags: str) -> t.Any:
        return playbook("module.yml", {"module": "htpasswd", "registry_url": gateway.url,
                                       "module_args": {"path": str(gateway.htpasswd), "users": users, "cost": 5}},
                        *flags)

    checked = htpasswd(users, "--check", "--diff")
    assert checked["changed"] is True and checked["added"] == ["ci"] and gateway.htpasswd.read_bytes() == before
    assert gateway.status("ci", "ci-" + PASSWORD) == 401
    added = htpasswd(users)
    # the line made elsewhere (same password, same cost) is kept as it is
    assert (added["added"], added["updated"]) == (["ci"], []) and before in gateway.htpasswd.read_bytes()
    assert gateway.status("ci", "ci-" + PASSWORD) == 200 and gateway.status(USER, PASSWORD) == 200
    assert gateway.status("ci", PASSWORD) == 401
    written = gateway.htpasswd.read_bytes()
    again = htpasswd(users)
    assert again["changed"] is False and gateway.htpasswd.read_bytes() == written
    for output in (checked.output, added.output, again.output):
        assert PASSWORD not in output and "$2b$" not in output
    removed = htpasswd(users[:1])
    assert removed["removed"] == ["ci"] and gateway.htpasswd.read_bytes() == before
    assert gateway.status("ci", "ci-" + PASSWORD) == 401 and gateway.status(USER, PASSWORD) == 200


# -- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    ({"name": "Bad/Name", "keep_last": 1}, "'Bad/Name' is not a valid repository name"),
    ({"name": "ok/app", "keep_patterns": ["[unclosed"]}, "keep_patterns: '[unclosed' is not a valid regular expression"),
    ({"name": "ok/app", "keep_last": -3}, "keep_last must be 0 or more, not -3"),
    ({"name": "ok/app", "older_than": "3 fortnights"}, "older_than: '3 fortnights' is not a duration"),
])
def test_bad_input_fails_with_a_clear_message(registry: Registry, playbook: Run, args: dict, message: str) -> None:
    result = repository(playbook, registry, **args)
    assert result["failed"] is True
    assert message in result["msg"]
    assert "Traceback" not in result.output


def test_unreachable_registry(playbook: Run) -> None:
    url = "http://127.0.0.1:%d" % free_port()
    result = playbook("module.yml", {"module": "repository_info", "module_args": {}, "registry_url": url})
    assert result["failed"] is True and "cannot reach %s/v2/_catalog" % url in result["msg"]


def test_tls_failure_without_the_ca(gateway: Gateway, playbook: Run) -> None:
    values = gateway_vars(gateway, module="repository_info", module_args={})
    del values["registry_ca_path"]
    result = playbook("module.yml", values)
    assert result["failed"] is True
    assert "TLS failure" in result["msg"] and "certificate verify failed" in result["msg"]


def test_wrong_password_says_401(gateway: Gateway, playbook: Run) -> None:
    result = playbook("module.yml", gateway_vars(gateway, module="repository_info", module_args={},
                                                 registry_password="wrong"))
    assert result["failed"] is True
    assert "GET /v2/_catalog returned HTTP 401" in result["msg"] and "refused the credentials" in result["msg"]
    assert "wrong" not in result["msg"]
    assert 'user "operator": password mismatch' in gateway.error_log.read_text()


def test_deletes_disabled_says_405(registry_nodelete: Registry, images: Images, playbook: Run) -> None:
    images.push(registry_nodelete, "img0", "nodelete/app", "a")
    result = repository(playbook, registry_nodelete, name="nodelete/app", state="absent")
    assert result["failed"] is True
    assert "returned HTTP 405" in result["msg"]
    assert "deletes are disabled on the registry (storage.delete.enabled)" in result["msg"]
    assert registry_nodelete.tags("nodelete/app") == ["a"]


# -- playbooks/retention.yml ----------------------------------------------------------------

def retention_playbook_copy(tmp_path: pathlib.Path) -> pathlib.Path:
    """playbooks/retention.yml next to a stand-in gc.yml that records that it ran."""
    directory = tmp_path / "playbooks"
    directory.mkdir()
    shutil.copy(ROOT / "playbooks" / "retention.yml", directory / "retention.yml")
    (directory / "gc.yml").write_text("""---
- name: Stand-in for gc.yml
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Record the run
      ansible.builtin.copy:
        content: "gc ran\\n"
        dest: "{{ gc_marker }}"
        mode: "0600"
""")
    return directory / "retention.yml"


@pytest.mark.parametrize("run_gc", [True, False])
def test_retention_playbook_applies_policies_and_imports_gc(registry: Registry, images: Images, playbook: Run,
                                                            tmp_path: pathlib.Path, run_gc: bool) -> None:
    repo = "pb/app-%s" % ("gc" if run_gc else "nogc")
    for number, tag in enumerate(["a", "b", "c"]):
        images.push(registry, "img%d" % (number + 2), repo, tag)
    report = tmp_path / "report.json"
    marker = tmp_path / "gc-ran"
    extra = {"registry_retention_url": registry.url, "registry_retention_report_file": str(report),
             "registry_retention_policies": [{"repository": repo, "keep_last": 1}],
             "registry_retention_run_gc": run_gc, "gc_marker": str(marker)}
    checked = playbook(str(retention_playbook_copy(tmp_path)), extra, "--check")
    assert checked.returncode == 0, checked.output
    assert "would delete 2 tag(s): a, b" in checked.output
    assert registry.tags(repo) == ["a", "b", "c"] and not marker.exists()

    result = playbook(str(tmp_path / "playbooks" / "retention.yml"), extra)
    assert result.returncode == 0, result.output
    assert registry.tags(repo) == ["c"]
    assert "deleted 2 tag(s): a, b" in result.output
    written = json.loads(report.read_text())
    assert written[0]["repository"] == repo and written[0]["deleted"] == ["a", "b"]
    assert marker.exists() is run_gc


def test_retention_playbook_rejects_a_policy_without_repository(registry: Registry, playbook: Run,
                                                                tmp_path: pathlib.Path) -> None:
    result = playbook(str(retention_playbook_copy(tmp_path)), {
        "registry_retention_url": registry.url, "registry_retention_policies": [{"keep_last": 1}],
        "gc_marker": str(tmp_path / "m")})
    assert result.returncode != 0 and "registry_retention_policies to a list" in result.output


def test_real_retention_playbook_with_the_real_gc_import(registry: Registry, images: Images, playbook: Run,
                                                         tmp_path: pathlib.Path) -> None:
    """playbooks/retention.yml as shipped (it imports the real gc.yml), GC switched off."""
    if not (ROOT / "playbooks" / "gc.yml").exists():
        pytest.skip("playbooks/gc.yml is not in the checkout yet")
    for number, tag in enumerate(["old", "new"]):
        images.push(registry, "img%d" % (number + 4), "pb/real", tag)
    result = playbook(str(ROOT / "playbooks" / "retention.yml"), {
        "registry_retention_url": registry.url, "registry_retention_run_gc": False,
        "registry_retention_policies": [{"repository": "pb/real", "keep_patterns": ["new"]}]})
    assert result.returncode == 0, result.output
    assert "pb/real: deleted 1 tag(s): old" in result.output
    assert registry.tags("pb/real") == ["new"]
