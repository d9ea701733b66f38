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
"""

import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dockyard.registry.plugins.module_utils._registry import inventory, validation
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
        if params["details"]:
            infos = inventory.resolve(client, name, tags)
            inventory.add_details(client, name, infos)
            described = [info.as_dict() for info in infos]
        else:
            described = [{"name": tag} for tag in sorted(set(tags))]
        repositories.append({"name": name, "exists": True, "tags": described})
    return {"repositories": repositories}


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
