#!/usr/bin/python
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: image_sync
short_description: Replicate repositories and tags between registries or OCI image layout directories
version_added: 0.2.0
description:
  - Copies the tags of the selected repositories from O(source) to O(destination), each side a registry
    (any OCI registry, Basic or Bearer authentication, its own credentials) or an OCI image layout root
    directory (for air-gapped transfer - export on the connected side, carry the directory, import on the
    isolated side).
  - Digests are preserved. Manifests are stored with their exact bytes and media type (Docker v2 manifest and
    manifest list, OCI manifest and index); an index is stored after every platform manifest and blob it
    refers to, and a tag after everything it needs. An interrupted run leaves at most blobs no tag uses, and
    the next run sends only what is missing.
  - Incremental. A tag the destination does not list is copied at once. A tag it lists costs one C(HEAD) on
    the source, and is unchanged when that digest is the one O(checkpoint) says this job wrote to the tag
    (no request to the destination), else when a C(HEAD) on the destination gives the same digest. The
    trade-off of a checkpoint is that a tag changed on the destination behind the job's back is only noticed
    when the source moves.
  - Blobs the destination has are not sent (C(HEAD)). When both sides are the same registry, blobs are mounted
    from the source repository; a blob sent to one destination repository during the run is mounted into the
    others (shared base layers). Blobs are streamed through a temporary file, verified against their digest.
  - With O(artifacts), signatures, attestations and SBOMs (cosign C(sha256-<hex>.sig), C(.att), C(.sbom)) and
    OCI referrers tags (C(sha256-<hex>)) attached to a copied digest (an image, an index or one of its
    platform manifests) are copied with it, whatever O(tags) says.
  - A tag that fails (source manifest missing, push refused...) is reported in RV(failed_tags); every other tag is
    still copied, then the task fails with a message naming each failed tag and why.
extends_documentation_fragment:
  - dockyard.registry.image_sync
attributes:
  check_mode:
    support: full
    description: Lists in RV(copied) and RV(deleted) what would be copied and deleted; nothing is written.
  diff_mode:
    support: none
    description: RV(copied) and RV(deleted) say what changed.
options:
  repositories:
    description:
      - Repositories to replicate. A plain repository name (V(apps/web)) is taken as is; anything else is a
        Python regular expression that must match a whole name of the source catalog (V(apps/.*)), or of the
        repository directories of a layout root.
    type: list
    elements: str
    required: true
  tags:
    description:
      - Python regular expressions; a tag is copied when one matches its whole name.
      - Artifact tags are not matched against these (see O(artifacts)).
    type: list
    elements: str
    default: ['.*']
  artifacts:
    description:
      - Also copy the artifact tags attached to the digests copied.
    type: bool
    default: true
  delete:
    description:
      - Delete the destination tags of the selected repositories that the source no longer has and that match
        O(tags), and the artifact tags whose subject is no longer copied. Repositories not selected are never
        touched.
      - Distribution deletes manifests by digest (every tag on it); a tag whose digest a kept tag still needs is
        kept, with a warning.
    type: bool
    default: false
  workers:
    description:
      - Tags (and blobs of an image) copied at the same time.
    type: int
    default: 4
  checkpoint:
    description:
      - JSON file recording which source digest was written to which destination tag, replaced atomically after
        each tag. It makes a second run cheap (see the description) and is ignored when O(source) or
        O(destination) change.
    type: path
author:
  - Dockyard developers (@dockyard)
"""

EXAMPLES = r"""
- name: Mirror the application repositories to the disaster-recovery registry
  dockyard.registry.image_sync:
    source:
      registry_url: https://registry.example.com
      username: replicator
      password: "{{ vault_replicator_password }}"
    destination:
      registry_url: https://dr-registry.example.com
      token: "{{ dr_robot_token }}"
    repositories: ["apps/.*"]
    tags: ['\d+\.\d+\.\d+', stable]
    delete: true
    checkpoint: /var/lib/dockyard/replication/apps.json

- name: Export releases to a directory for the air-gapped site
  dockyard.registry.image_sync:
    source:
      registry_url: https://registry.example.com
      token: "{{ export_robot_token }}"
    destination:
      path: /media/transfer/export
    repositories: [apps/web, apps/api]
    tags: ['1\.4\..*']

- name: On the isolated side, import what was carried
  dockyard.registry.image_sync:
    source:
      path: /media/transfer/export
    destination:
      registry_url: https://registry.isolated.example
      username: importer
      password: "{{ vault_importer_password }}"
    repositories: [".*"]
"""

RETURN = r"""
copied:
  description: Tags copied (in check mode, that would be copied), with the source digest and media type.
  returned: always
  type: list
  elements: dict
  sample: [{repository: apps/web, tag: "1.4.2", digest: "sha256:4b82...", media_type: application/vnd.oci.image.index.v1+json}]
unchanged:
  description: Number of tags that were already up to date.
  returned: always
  type: int
  sample: 12
deleted:
  description: Destination tags deleted (in check mode, that would be deleted).
  returned: always
  type: list
  elements: dict
  sample: [{repository: apps/web, tag: "1.3.0", digest: "sha256:9f8e..."}]
failed_tags:
  description:
    - Tags (or repositories, with a null tag) that could not be copied or deleted, and why.
    - Not named C(failed), which Ansible reserves for the task's own status.
  returned: always
  type: list
  elements: dict
  sample: [{repository: apps/web, tag: "1.2", msg: "apps/web:1.2: source: GET /v2/apps/web/manifests/1.2 returned HTTP 404"}]
blobs_sent:
  description: Blobs uploaded to (written into) the destination.
  returned: always
  type: int
bytes_sent:
  description: Bytes of those blobs.
  returned: always
  type: int
blobs_mounted:
  description: Blobs mounted from another repository instead of sent.
  returned: always
  type: int
blobs_skipped:
  description: Blobs the destination already had.
  returned: always
  type: int
requests:
  description: HTTP requests sent to each side, token requests included (0 for a layout directory).
  returned: always
  type: dict
  sample: {source: 14, destination: 3}
"""

import os
import typing as t

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dockyard.registry.plugins.module_utils._registry import validation
from ansible_collections.dockyard.registry.plugins.module_utils._registry.common import (
    REGISTRY_MUTUALLY_EXCLUSIVE,
    REGISTRY_REQUIRED_TOGETHER,
    client_from_params,
    registry_argument_spec,
)
from ansible_collections.dockyard.registry.plugins.module_utils._registry.copy import RegistryStore, Store
from ansible_collections.dockyard.registry.plugins.module_utils._registry.errors import InvalidInput, RegistryError
from ansible_collections.dockyard.registry.plugins.module_utils._registry.layout import LayoutStore, check_writable
from ansible_collections.dockyard.registry.plugins.module_utils._registry.replication import (
    Checkpoint,
    Replicator,
    summary,
)


def side_spec() -> dict[str, t.Any]:
    options = registry_argument_spec()
    options["registry_url"] = {"type": "str"}
    options["path"] = {"type": "path"}
    return {
        "type": "dict", "required": True, "options": options,
        "mutually_exclusive": [("registry_url", "path")] + REGISTRY_MUTUALLY_EXCLUSIVE,
        "required_one_of": [("registry_url", "path")],
        "required_together": REGISTRY_REQUIRED_TOGETHER,
    }


def store_for(params: t.Mapping[str, t.Any], label: str) -> Store:
    if params.get("path"):
        path = params["path"]
        if label == "source" and not os.path.isdir(path):
            raise InvalidInput("source path %s is not a directory (an OCI image layout root)" % path)
        if label == "destination":
            check_writable(path)
        return LayoutStore(path, label)
    return RegistryStore(client_from_params(params), label)


def main() -> None:
    module = AnsibleModule(argument_spec={
        "source": side_spec(),
        "destination": side_spec(),
        "repositories": {"type": "list", "elements": "str", "required": True},
        "tags": {"type": "list", "elements": "str", "default": [".*"]},
        "artifacts": {"type": "bool", "default": True},
        "delete": {"type": "bool", "default": False},
        "workers": {"type": "int", "default": 4},
        "checkpoint": {"type": "path"},
    }, supports_check_mode=True)
    params = module.params
    try:
        if not params["repositories"]:
            raise InvalidInput("repositories must name at least one repository or pattern")
        validation.patterns(params["repositories"], "repositories")
        tags = validation.patterns(params["tags"], "tags")
        if params["workers"] < 1:
            raise InvalidInput("workers must be 1 or more")
        source = store_for(params["source"], "source")
        destination = store_for(params["destination"], "destination")
        if params["checkpoint"] and not module.check_mode:
            check_writable(os.path.dirname(os.path.abspath(params["checkpoint"])))
        checkpoint = Checkpoint(params["checkpoint"], source.identity, destination.identity,
                                enabled=not module.check_mode)
        replicator = Replicator(source, destination, params["repositories"], tags, params["artifacts"],
                                params["delete"], params["workers"], checkpoint, module.check_mode)
        result = replicator.run()
    except RegistryError as error:
        module.fail_json(msg=str(error))
    for warning in replicator.warnings:
        module.warn(warning)
    if result["failed_tags"]:
        module.fail_json(msg=summary(result["failed_tags"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
