#!/usr/bin/python
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: tag
short_description: Point a tag at the image another tag or digest has, without pulling layers
version_added: 0.1.0
description:
  - Reads the manifest of O(source) (any of the four media types, Docker v2 manifest and manifest list,
    OCI manifest and index) and stores the same bytes, with the same media type, under O(tag). The
    digest stays the same, and no layer is downloaded.
  - With O(source_repository), the image is copied from another repository of the same registry. Its
    blobs are mounted (C(POST .../blobs/uploads/?mount=...&from=...)), and only copied when the
    registry declines to mount them; the platform manifests of an index are copied too.
  - Only verified bytes are stored. A manifest read by digest (O(source) or a platform manifest of an
    index) must hash to that digest, whatever the registry's C(Docker-Content-Digest) header says; a
    C(Docker-Content-Digest) header that is present must match the bytes, when read by tag too. The module
    fails, naming the repository and both digests, and writes nothing when they differ. Digests may be
    sha256, sha384 or sha512.
extends_documentation_fragment:
  - dockyard.registry.registry
attributes:
  check_mode:
    support: full
    description: Says whether the tag would move, and from which digest to which.
  diff_mode:
    support: full
    description: Shows the digest of the tag before and after.
options:
  repository:
    description:
      - Repository that holds (or will hold) O(tag), such as V(apps/web).
    type: str
    required: true
  tag:
    description:
      - The tag to set, such as V(stable).
    type: str
    required: true
  source:
    description:
      - The tag (V(1.4.2)) or digest (V(sha256:...), also V(sha384:) or V(sha512:)) whose image O(tag)
        should point at.
    type: str
    required: true
  source_repository:
    description:
      - Repository of O(source). Defaults to O(repository).
    type: str
author:
  - Dockyard developers (@dockyard)
"""

EXAMPLES = r"""
- name: Promote 1.4.2 to stable
  dockyard.registry.tag:
    registry_url: https://registry.example.com
    username: release
    password: "{{ vault_registry_release_password }}"
    repository: apps/web
    tag: stable
    source: "1.4.2"

- name: Publish a tested image from the staging repository
  dockyard.registry.tag:
    registry_url: https://registry.example.com
    token: "{{ release_robot_token }}"
    repository: apps/web
    tag: "1.4.2"
    source_repository: staging/web
    source: sha256:4b825dc642cb6eb9a060e54bf8d69288fbee4904b825dc642cb6eb9a060e54b
"""

RETURN = r"""
digest:
  description: Digest the tag points at afterwards (in check mode, would point at).
  returned: always
  type: str
  sample: sha256:4b825dc642cb6eb9a060e54bf8d69288fbee4904b825dc642cb6eb9a060e54b
previous_digest:
  description: Digest the tag pointed at before, or null when it did not exist.
  returned: always
  type: str
  sample: sha256:9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0
media_type:
  description: Media type of the manifest.
  returned: always
  type: str
  sample: application/vnd.oci.image.index.v1+json
copied_blobs:
  description: Blobs mounted or copied into O(repository) from O(source_repository) (not in check mode).
  returned: always
  type: list
  elements: str
  sample: []
"""

import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dockyard.registry.plugins.module_utils._registry import validation
from ansible_collections.dockyard.registry.plugins.module_utils._registry.client import Manifest, RegistryClient
from ansible_collections.dockyard.registry.plugins.module_utils._registry.common import (
    client_from_params,
    module_kwargs,
)
from ansible_collections.dockyard.registry.plugins.module_utils._registry.copy import Copier, RegistryStore
from ansible_collections.dockyard.registry.plugins.module_utils._registry.errors import RegistryError
from ansible_collections.dockyard.registry.plugins.module_utils._results import exit_with


class TagReconciler:
    def __init__(self, client: RegistryClient, params: t.Mapping[str, t.Any], check_mode: bool) -> None:
        self.client = client
        self.repository = validation.repository(params["repository"])
        self.tag = validation.tag(params["tag"])
        self.source = validation.reference(params["source"])
        self.source_repository = validation.repository(params["source_repository"] or params["repository"])
        self.check_mode = check_mode
        self.copied: list[str] = []

    def run(self) -> dict[str, t.Any]:
        manifest = self.client.get_manifest(self.source_repository, self.source)
        before = self.client.head_manifest(self.repository, self.tag)
        after = before
        if before != manifest.digest and not self.check_mode:
            if self.source_repository != self.repository:
                self._copy_references(manifest)
            stored = self.client.put_manifest(self.repository, self.tag, manifest)
            if stored != manifest.digest:
                raise RegistryError("PUT /v2/%s/manifests/%s stored digest %s, not %s"
                                    % (self.repository, self.tag, stored, manifest.digest))
            after = self.client.head_manifest(self.repository, self.tag)
            if after != manifest.digest:
                raise RegistryError("%s:%s points at %s after the update, not %s"
                                    % (self.repository, self.tag, after, manifest.digest))
        elif self.check_mode:
            after = manifest.digest
        return {
            "changed": before != after,
            "digest": after,
            "previous_digest": before,
            "media_type": manifest.media_type,
            "copied_blobs": self.copied,
            "diff": {"before": {"tag": self.tag, "digest": before}, "after": {"tag": self.tag, "digest": after}},
        }

    def _copy_references(self, manifest: Manifest) -> None:
        """Make everything the manifest refers to exist in the target repository."""
        store = RegistryStore(self.client)
        copier = Copier(store, store, same_registry=True)
        copier.copy_references(self.source_repository, self.repository, manifest)
        self.copied = copier.stats.mounted + copier.stats.sent


def main() -> None:
    module = AnsibleModule(**module_kwargs({
        "repository": {"type": "str", "required": True},
        "tag": {"type": "str", "required": True},
        "source": {"type": "str", "required": True},
        "source_repository": {"type": "str"},
    }))
    try:
        result = TagReconciler(client_from_params(module.params), module.params, module.check_mode).run()
    except RegistryError as error:
        module.fail_json(msg=str(error))
    exit_with(module, result)


if __name__ == "__main__":
    main()
