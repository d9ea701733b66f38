# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The two sides of dockyard.registry.image_sync (module_utils/_registry/copy.py and layout.py)."""
from __future__ import annotations


class ModuleDocFragment:
    # One literal per fragment: ansible-test reads the text, it does not run the code.
    DOCUMENTATION = r"""
options:
  source:
    description:
      - Where the images come from - O(source.registry_url) or O(source.path), with the connection options
        of the other modules of the collection.
    type: dict
    required: true
    suboptions:
      registry_url:
        description:
          - Base URL of a registry, such as V(https://registry.example.com). Mutually exclusive with O(source.path).
        type: str
      path:
        description:
          - An OCI image layout root directory - one layout per repository, C(<path>/<repository>/) with
            C(oci-layout), C(index.json) and C(blobs/), the tag in the C(org.opencontainers.image.ref.name)
            annotation, so that C(skopeo inspect oci:<path>/<repository>:<tag>) reads it.
          - Written atomically (blobs to a temporary file, verified, renamed; C(index.json) rewritten and renamed).
        type: path
      username:
        description: User for Basic authentication or for the token service (Bearer). Requires O(source.password).
        type: str
      password:
        description: Password of O(source.username).
        type: str
      token:
        description: A bearer token sent as is. Mutually exclusive with O(source.username).
        type: str
      validate_certs:
        description: Verify the registry's TLS certificate.
        type: bool
        default: true
      ca_path:
        description: PEM file of the CA certificate(s) to trust instead of the system store.
        type: path
      timeout:
        description: Seconds to wait for each HTTP answer (408, 429, 5xx and timeouts are retried).
        type: int
        default: 30

  destination:
    description:
      - Where the images go - O(destination.registry_url) or O(destination.path), with its own credentials.
    type: dict
    required: true
    suboptions:
      registry_url:
        description:
          - Base URL of a registry, such as V(https://registry.example.com). Mutually exclusive with O(destination.path).
        type: str
      path:
        description:
          - An OCI image layout root directory - one layout per repository, C(<path>/<repository>/) with
            C(oci-layout), C(index.json) and C(blobs/), the tag in the C(org.opencontainers.image.ref.name)
            annotation, so that C(skopeo inspect oci:<path>/<repository>:<tag>) reads it.
          - Written atomically (blobs to a temporary file, verified, renamed; C(index.json) rewritten and renamed).
        type: path
      username:
        description: User for Basic authentication or for the token service (Bearer). Requires O(destination.password).
        type: str
      password:
        description: Password of O(destination.username).
        type: str
      token:
        description: A bearer token sent as is. Mutually exclusive with O(destination.username).
        type: str
      validate_certs:
        description: Verify the registry's TLS certificate.
        type: bool
        default: true
      ca_path:
        description: PEM file of the CA certificate(s) to trust instead of the system store.
        type: path
      timeout:
        description: Seconds to wait for each HTTP answer (408, 429, 5xx and timeouts are retried).
        type: int
        default: 30
"""
