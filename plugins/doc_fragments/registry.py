# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options shared by the registry modules (see module_utils/_registry/common.py)."""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  registry_url:
    description:
      - Base URL of the registry, such as V(https://registry.example.com) or V(http://127.0.0.1:5000).
      - The Registry HTTP API v2 is expected under C(/v2/).
    type: str
    required: true
  username:
    description:
      - User name for HTTP Basic authentication, or for the token service when the registry answers with a
        Bearer challenge.
      - Requires O(password).
    type: str
  password:
    description:
      - Password of O(username).
    type: str
  token:
    description:
      - A bearer token sent as is with every request, for example one issued to a robot account.
      - Mutually exclusive with O(username) and O(password).
    type: str
  validate_certs:
    description:
      - Verify the registry's TLS certificate. Only set to V(false) for throwaway test registries.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA certificate(s) to trust instead of the system store.
    type: path
  timeout:
    description:
      - Seconds to wait for each HTTP answer. Requests that time out, and answers 408, 429 and 5xx, are
        retried up to three times, honouring C(Retry-After).
    type: int
    default: 30
notes:
  - All options above can be set once for every module of the collection with
    C(module_defaults) and the action group C(group/dockyard.registry.registry).
"""
