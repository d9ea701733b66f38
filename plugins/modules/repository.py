#!/usr/bin/python
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: repository
short_description: Delete repositories or tags of a registry, and apply retention policies
version_added: 0.1.0
description:
  - With O(state=absent), deletes every tag of a repository, or only the tags listed in O(tags).
  - With O(state=present), applies a retention policy. Each rule keeps tags; a tag is deleted only
    when no rule keeps it. O(keep_last) keeps the newest N, O(keep_patterns) keeps the tags a pattern
    matches, O(older_than) keeps the tags created less than that long ago (and tags whose creation
    time is unknown).
  - Distribution deletes manifests by digest, which removes B(every) tag on that digest. A tag that
    should go is therefore kept when a kept tag has the same digest, or when its digest is a platform
    manifest of a kept index; RV(protected) says which tags were kept this way and why, and a warning
    is shown.
  - Signatures, attestations and SBOMs attached by tag name (cosign, skopeo and podman with sigstore
    attachments write C(sha256-<hex>.sig), C(.att), C(.sbom); the OCI 1.1 referrers tag schema writes C(sha256-<hex>))
    follow their image. They are never counted by the retention rules and never keep anything. When a
    digest is deleted, the artifact tags attached to it are deleted too (by their own digests), and so are
    those attached to the platform manifests of a deleted index that no kept tag still uses; a referrers
    index takes the manifests it lists along. Artifacts of kept images stay.
  - Artifact tags whose subject no tag pointed at before the run (an image signed by digest only, or
    left over from an earlier deletion) are left alone and listed in RV(orphan_artifacts); O(state=absent)
    without O(tags) deletes them too. Artifact tags named in O(tags) are deleted as listed.
  - Deleting tags frees no disk space by itself; run the registry's garbage collection afterwards
    (C(playbooks/gc.yml)). The repository stays listed in the catalog, with no tags.
extends_documentation_fragment:
  - dockyard.registry.registry
attributes:
  check_mode:
    support: full
    description: Returns exactly the tags and digests that would be deleted.
  diff_mode:
    support: full
    description: Shows the repository's tag set before and after.
options:
  name:
    description:
      - Repository name, such as V(apps/web).
    type: str
    required: true
    aliases: [repository]
  state:
    description:
      - V(present) keeps the repository and applies the retention rules.
      - V(absent) deletes the tags listed in O(tags), or all tags when O(tags) is not given.
    type: str
    choices: [present, absent]
    default: present
  tags:
    description:
      - With O(state=absent), the tags to delete. Tags that do not exist are already absent.
    type: list
    elements: str
  keep_last:
    description:
      - Keep the newest N tags, ordered as O(order) says. V(0) keeps none by this rule.
    type: int
  keep_patterns:
    description:
      - Keep the tags that one of these Python regular expressions matches in full, such as V(latest) or V(release-.*).
    type: list
    elements: str
  older_than:
    description:
      - Keep the tags whose image was created less than this long ago; older ones may be deleted.
      - A number with a unit C(w), C(d), C(h), C(m) or C(s), or several, such as V(30d), V(12h) or V(1d12h).
    type: str
  order:
    description:
      - How O(keep_last) ranks tags.
      - V(created) ranks by image creation time (newest first; tags of unknown age last).
      - V(version) ranks tags that are versions (V(1.4.2), V(v2.0), V(2.0.0-rc.1)) by semantic-version
        precedence; tags that are no version are not kept by O(keep_last), so keep them with O(keep_patterns).
    type: str
    choices: [created, version]
    default: created
notes:
  - Needs C(storage.delete.enabled=true) in the registry's configuration; otherwise the registry answers 405.
author:
  - Dockyard developers (@dockyard)
"""

EXAMPLES = r"""
- name: Keep the 10 newest images of apps/web, plus latest and stable
  dockyard.registry.repository:
    registry_url: https://registry.example.com
    username: ci-cleanup
    password: "{{ vault_registry_cleanup_password }}"
    name: apps/web
    keep_last: 10
    keep_patterns:
      - latest
      - stable
  register: cleanup

- name: Delete images older than 30 days, keeping the 5 highest versions and release tags
  dockyard.registry.repository:
    registry_url: https://registry.example.com
    name: apps/api
    keep_last: 5
    order: version
    keep_patterns:
      - "release-.*"
    older_than: 30d

- name: Delete two tags
  dockyard.registry.repository:
    registry_url: https://registry.example.com
    name: apps/web
    state: absent
    tags:
      - pr-1234
      - pr-1235

- name: Delete every tag of a repository
  dockyard.registry.repository:
    registry_url: https://registry.example.com
    name: sandbox/old-experiment
    state: absent
"""

RETURN = r"""
deleted:
  description: Image tags deleted (in check mode, that would be deleted), sorted by name; artifact tags are in RV(deleted_artifacts).
  returned: always
  type: list
  elements: dict
  contains:
    tag:
      description: Tag name.
      type: str
      sample: 1.0.3
    digest:
      description: Digest the tag pointed at.
      type: str
      sample: sha256:0b1c7d9e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0
    created:
      description: Creation time of its image, UTC, or null when unknown.
      type: str
      sample: "2024-01-01T00:00:00Z"
deleted_artifacts:
  description: Artifact tags deleted with their subject (in check mode, that would be deleted), sorted by tag.
  returned: always
  type: list
  elements: dict
  contains:
    tag:
      description: The artifact tag.
      type: str
      sample: sha256-0b1c7d9e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0.sig
    kind:
      description: V(signature), V(attestation), V(sbom) or V(referrers).
      type: str
      sample: signature
    subject:
      description: Digest of the image the artifact is attached to.
      type: str
      sample: sha256:0b1c7d9e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0
    digest:
      description: Digest of the artifact's own manifest, which was deleted.
      type: str
      sample: sha256:5e6f7a8b9c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7
    referrers:
      description: For a referrers index, the manifests it listed, deleted with it.
      type: list
      elements: str
      sample: []
orphan_artifacts:
  description:
    - Artifact tags whose subject no tag pointed at before the run, left alone; with the keys C(tag), C(kind)
      and C(subject) of RV(deleted_artifacts).
  returned: always
  type: list
  elements: dict
  sample: []
deleted_digests:
  description: Manifest digests deleted (in check mode, that would be deleted), of images and of artifacts.
  returned: always
  type: list
  elements: str
  sample: [sha256:0b1c7d9e2f3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0]
protected:
  description: Tags a rule would delete but that are kept because a kept tag uses their digest.
  returned: always
  type: list
  elements: dict
  contains:
    tag:
      description: The tag that is kept.
      type: str
      sample: build-118
    digest:
      description: Its digest.
      type: str
      sample: sha256:9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0
    kept_by:
      description: Kept tags that use this digest.
      type: list
      elements: str
      sample: [stable]
    reason:
      description: A sentence saying why.
      type: str
      sample: "not deleted: sha256:9f8e... is the digest of kept tag(s) stable, and deleting by digest would remove them too"
tags:
  description: Tags of the repository afterwards (in check mode, as they would be), artifact tags included, sorted.
  returned: always
  type: list
  elements: str
  sample: [1.4.2, latest, stable]
"""

import time
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dockyard.registry.plugins.module_utils._registry import artifacts, inventory, validation
from ansible_collections.dockyard.registry.plugins.module_utils._registry.client import RegistryClient
from ansible_collections.dockyard.registry.plugins.module_utils._registry.common import (
    client_from_params,
    module_kwargs,
)
from ansible_collections.dockyard.registry.plugins.module_utils._registry.errors import (
    InvalidInput,
    RegistryError,
    RegistryNotFound,
)
from ansible_collections.dockyard.registry.plugins.module_utils._registry.retention import (
    ArtifactPlan,
    Plan,
    select_by_policy,
    subjects_in_use,
)
from ansible_collections.dockyard.registry.plugins.module_utils._results import exit_with


class RepositoryReconciler:
    def __init__(self, client: RegistryClient, params: t.Mapping[str, t.Any], check_mode: bool,
                 warn: t.Callable[[str], None], now: float | None = None) -> None:
        self.client = client
        self.name = validation.repository(params["name"])
        self.state = params["state"]
        self.tags = [validation.tag(tag) for tag in params["tags"] or []]
        self.keep_last = validation.count(params["keep_last"], "keep_last")
        self.keep_patterns = validation.patterns(params["keep_patterns"] or [], "keep_patterns")
        self.older_than = None if params["older_than"] is None else validation.duration(params["older_than"])
        self.order = params["order"]
        self.check_mode = check_mode
        self.warn = warn
        self.now = time.time() if now is None else now
        policy = self.keep_last is not None or bool(params["keep_patterns"]) or self.older_than is not None
        if self.state == "absent" and policy:
            raise InvalidInput("keep_last, keep_patterns and older_than apply to state=present only")
        if self.state == "present" and params["tags"]:
            raise InvalidInput("tags lists tags to delete and needs state=absent")
        if self.state == "present" and not policy:
            raise InvalidInput("state=present needs a retention rule: keep_last, keep_patterns or older_than")

    def _list(self) -> list[str]:
        try:
            return sorted(set(self.client.tags(self.name)))
        except RegistryNotFound:
            return []

    def _needs_age(self) -> bool:
        return self.state == "present" and (
            self.older_than is not None or (self.keep_last is not None and self.order == "created"))

    def run(self) -> dict[str, t.Any]:
        before = self._list()
        images, found = artifacts.split(before)
        infos = inventory.resolve(self.client, self.name, images)
        if self._needs_age():
            inventory.add_details(self.client, self.name, infos)
        named = [tag for tag in self.tags if artifacts.parse(tag) is not None]
        if self.state == "absent":
            doomed = set(self.tags) if self.tags else {info.name for info in infos}
        else:
            doomed = select_by_policy(infos, self.keep_last, self.keep_patterns, self.older_than,
                                      self.order, self.now)
        plan = Plan(infos, doomed)
        for entry in plan.protected:
            self.warn("%s: tag %s %s" % (self.name, entry["tag"], entry["reason"]))
        followers = ArtifactPlan(infos, plan, found, delete_orphans=self.state == "absent" and not self.tags,
                                 named=named)
        doomed_artifacts = self._artifact_manifests(followers, plan)

        deleted_names = {info.name for info in plan.delete} | {entry["tag"] for entry in doomed_artifacts}
        digests = sorted(set(plan.digests) | {digest for entry in doomed_artifacts
                                              for digest in [entry["digest"], *entry["referrers"]]})
        after = [tag for tag in before if tag not in deleted_names]
        if digests and not self.check_mode:
            inventory.parallel(lambda digest: self.client.delete_manifest(self.name, digest), digests)
            after = self._list()
            left = sorted(deleted_names & set(after))
            if left:
                raise RegistryError("%s: tags %s are still listed after deleting their digests"
                                    % (self.name, ", ".join(left)))

        return {
            "changed": before != after,
            "deleted": [{"tag": info.name, "digest": info.digest, "created": inventory.format_time(info.created)}
                        for info in plan.delete],
            "deleted_artifacts": doomed_artifacts,
            "deleted_digests": digests,
            "orphan_artifacts": [{"tag": item.tag, "kind": item.kind, "subject": item.subject}
                                 for item in followers.orphans],
            "protected": plan.protected,
            "tags": after,
            "diff": {"before": {"tags": before}, "after": {"tags": after}},
        }

    def _artifact_manifests(self, followers: ArtifactPlan, plan: Plan) -> list[dict[str, t.Any]]:
        """The artifact tags to delete with their manifest digests (one GET each); a referrers index
        takes the manifests it lists along. Nothing a kept tag reaches is deleted."""
        reached = subjects_in_use(plan.keep)
        resolved = {info.name: info for info in inventory.resolve(self.client, self.name,
                                                                  [item.tag for item in followers.delete])}
        entries = []
        for item in followers.delete:
            info = resolved.get(item.tag)
            if info is None:
                continue  # deleted meanwhile
            if info.digest in reached:
                self.warn("%s: artifact tag %s is left: its digest %s is also a kept image" % (
                    self.name, item.tag, info.digest))
                continue
            referrers = sorted(set(info.children) - reached) if item.kind == "referrers" else []
            entries.append({"tag": item.tag, "kind": item.kind, "subject": item.subject, "digest": info.digest,
                            "referrers": referrers})
        return entries


def main() -> None:
    module = AnsibleModule(**module_kwargs({
        "name": {"type": "str", "required": True, "aliases": ["repository"]},
        "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        "tags": {"type": "list", "elements": "str"},
        "keep_last": {"type": "int"},
        "keep_patterns": {"type": "list", "elements": "str", "no_log": False},
        "older_than": {"type": "str"},
        "order": {"type": "str", "choices": ["created", "version"], "default": "created"},
    }))
    try:
        result = RepositoryReconciler(client_from_params(module.params), module.params, module.check_mode,
                                      module.warn).run()
    except RegistryError as error:
        module.fail_json(msg=str(error))
    exit_with(module, result)


if __name__ == "__main__":
    main()
