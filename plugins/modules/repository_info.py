#!/usr/bin/python
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: repository_info
short_description: List the repositories of a registry, their tags, digests, sizes and platforms
version_added: 0.1.0
description:
  - Lists the repositories of a Docker Distribution registry (all, by name, or matching a pattern) and,
    for each tag, its digest, manifest media type, size, creation time (from the image config) and
    platforms (of an index, or of a single image).
  - Follows C(Link) pagination of C(/v2/_catalog) and of tag lists, and copes with the C(null) tag
    list of a repository whose tags were all deleted.
  - Resolving a tag takes one request per tag (the API has no bulk call); image configs and the
    platform manifests of an index are fetched once per distinct digest. Requests run on 8 threads.
  - Signatures, attestations and SBOMs attached by tag name (C(sha256-<hex>.sig), C(.att), C(.sbom), as
    cosign, skopeo and podman write them) and OCI 1.1 referrers-tag-schema indexes (C(sha256-<hex>)) are
    not listed as tags. With O(details), each tag lists the artifacts attached to its digest (or to the
    platform manifests of its index) in RV(repositories[].tags[].artifacts), and artifacts whose subject is
    no tag's digest are in RV(repositories[].orphan_artifacts). Without O(details) they are listed, with the
    subject their name spells, in RV(repositories[].artifacts). An artifact costs one request (its manifest),
    with O(details) only.
  - Listing all repositories needs the C(registry:catalog:*) permission on registries with token
    authentication.
extends_documentation_fragment:
  - dockyard.registry.registry
attributes:
  check_mode:
    support: full
    description: The module never changes anything.
  diff_mode:
    support: none
    description: The module never changes anything.
options:
  repositories:
    description:
      - Names of the repositories to describe, such as V(apps/web). Without it, the catalog is listed.
      - Names that do not exist are returned with RV(repositories[].exists=false).
    type: list
    elements: str
  pattern:
    description:
      - Python regular expression the whole repository name must match, such as V(apps/.*).
    type: str
  details:
    description:
      - Fetch manifests and image configs for each tag (digest, media type, size, creation time, platforms).
      - With V(false), only tag names are listed, which costs one request per page of tags.
    type: bool
    default: true
author:
  - Dockyard developers (@dockyard)
"""

EXAMPLES = r"""
- name: Describe every repository under apps/
  dockyard.registry.repository_info:
    registry_url: https://registry.example.com
    username: auditor
    password: "{{ vault_registry_auditor_password }}"
    pattern: "apps/.*"
  register: registry_content

- name: Show tags with their creation time
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.tags | map(attribute='name') | join(', ') }}"
  loop: "{{ registry_content.repositories }}"

- name: Only the tag names of one repository, with connection options set once
  module_defaults:
    group/dockyard.registry.registry:
      registry_url: https://registry.example.com
      ca_path: /etc/ssl/dockyard/ca.pem
  dockyard.registry.repository_info:
    repositories:
      - apps/web
    details: false
"""

RETURN = r"""
repositories:
  description: The repositories, sorted by name, each with its tags sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Repository name.
      type: str
      sample: apps/web
    exists:
      description: Whether the registry knows the repository.
      type: bool
      sample: true
    tags:
      description: Tags of the repository. Without O(details), only RV(repositories[].tags[].name) is set.
      type: list
      elements: dict
      contains:
        name:
          description: Tag name.
          type: str
          sample: 1.4.2
        digest:
          description: Digest of the manifest (or index) the tag points at.
          type: str
          sample: sha256:2d3f0a6d5c2b0f3e6a4d3b1f7c9e8a6b5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a
        media_type:
          description: Media type of that manifest.
          type: str
          sample: application/vnd.oci.image.manifest.v1+json
        manifest_size:
          description: Size of the manifest itself, in bytes.
          type: int
          sample: 743
        size:
          description: Bytes stored for the image (config and compressed layers); for an index, the sum over its platforms.
          type: int
          sample: 52428800
        created:
          description: Creation time from the image config (for an index, of its newest platform image), UTC; null when unknown.
          type: str
          sample: "2024-05-01T12:00:00Z"
        platforms:
          description: Platforms of an index, or the one platform of an image.
          type: list
          elements: dict
          sample: [{"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm64", "variant": "v8"}]
        artifacts:
          description:
            - Artifact tags attached to this tag's digest or, for an index, to one of its platform manifests
              (the same artifact is listed under every tag on that digest). With O(details) only.
          type: list
          elements: dict
          contains:
            tag:
              description: The artifact tag.
              type: str
              sample: sha256-2d3f0a6d5c2b0f3e6a4d3b1f7c9e8a6b5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a.sig
            kind:
              description: V(signature), V(attestation), V(sbom) (cosign tag schema) or V(referrers) (OCI referrers tag schema).
              type: str
              sample: signature
            subject:
              description: The digest it is attached to (this tag's digest, or a platform manifest's).
              type: str
              sample: sha256:2d3f0a6d5c2b0f3e6a4d3b1f7c9e8a6b5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a
            digest:
              description: Digest of the artifact's own manifest (or index).
              type: str
              sample: sha256:7a1c0e4b9d2f3a5c6e8b0d1f2a3c4e5b6d7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b
    orphan_artifacts:
      description:
        - Artifact tags whose subject is no tag's digest nor a platform manifest of a tagged index, with the
          keys of RV(repositories[].tags[].artifacts). With O(details) only.
      returned: when O(details=true) and the repository exists
      type: list
      elements: dict
      sample: []
    artifacts:
      description:
        - Without O(details), every artifact tag with the keys C(tag), C(kind) and C(subject) of
          RV(repositories[].tags[].artifacts), from its name alone (no request each).
      returned: when O(details=false) and the repository exists
      type: list
      elements: dict
      sample: []
"""

import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dockyard.registry.plugins.module_utils._registry import artifacts, inventory, validation
from ansible_collections.dockyard.registry.plugins.module_utils._registry.client import RegistryClient
from ansible_collections.dockyard.registry.plugins.module_utils._registry.common import (
    client_from_params,
    module_kwargs,
)
from ansible_collections.dockyard.registry.plugins.module_utils._registry.errors import (
    RegistryError,
    RegistryNotFound,
)


def describe(client: RegistryClient, params: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    names = [validation.repository(name) for name in params["repositories"] or []]
    pattern: t.Pattern[str] | None = None
    if params["pattern"] is not None:
        pattern = validation.patterns([params["pattern"]], "pattern")[0]
    if not names:
        names = client.catalog()
    selected = sorted({name for name in names if pattern is None or pattern.fullmatch(name)})
    repositories = []
    for name in selected:
        try:
            tags = client.tags(name)
        except RegistryNotFound:
            repositories.append({"name": name, "exists": False, "tags": []})
            continue
        images, found = artifacts.split(tags)
        if params["details"]:
            repositories.append(dict(detailed(client, name, images, found), name=name, exists=True))
        else:
            repositories.append({"name": name, "exists": True, "tags": [{"name": tag} for tag in images],
                                 "artifacts": [{"tag": item.tag, "kind": item.kind, "subject": item.subject}
                                               for item in found]})
    return {"repositories": repositories}


def detailed(client: RegistryClient, name: str, images: list[str],
             found: list[artifacts.ArtifactTag]) -> dict[str, t.Any]:
    """Image tags with their details and the artifacts attached to each; the rest are orphans."""
    infos = inventory.resolve(client, name, images + [item.tag for item in found])
    by_name = {info.name: info for info in infos}
    image_infos = [info for info in infos if info.name in set(images)]
    inventory.add_details(client, name, image_infos)
    attached = artifacts.by_subject(item for item in found if item.tag in by_name)
    described, claimed = [], set()
    for info in image_infos:
        entry = info.as_dict()
        mine = artifacts.attached_to(found, [subject for subject in [info.digest, *info.children]
                                             if subject in attached])
        entry["artifacts"] = [{"tag": item.tag, "kind": item.kind, "subject": item.subject,
                               "digest": by_name[item.tag].digest} for item in mine if item.tag in by_name]
        claimed.update(item.tag for item in mine)
        described.append(entry)
    orphans = [{"tag": item.tag, "kind": item.kind, "subject": item.subject, "digest": by_name[item.tag].digest}
               for item in found if item.tag in by_name and item.tag not in claimed]
    return {"tags": described, "orphan_artifacts": orphans}


def main() -> None:
    module = AnsibleModule(**module_kwargs({
        "repositories": {"type": "list", "elements": "str"},
        "pattern": {"type": "str"},
        "details": {"type": "bool", "default": True},
    }))
    try:
        result = describe(client_from_params(module.params), module.params)
    except RegistryError as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
