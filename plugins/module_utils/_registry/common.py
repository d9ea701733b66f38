# Private to the dockyard.registry collection: not a public API, may change at any time.
# Copyright: Dockyard developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options shared by every module, and the client built from them.

Keep ``registry_argument_spec`` in step with ``plugins/doc_fragments/registry.py``.
"""
from __future__ import annotations

import typing as t

from . import validation
from .errors import InvalidInput
from .auth import Authenticator
from .client import RegistryClient
from .transport import Transport


def registry_argument_spec() -> dict[str, dict[str, t.Any]]:
    return {
        "registry_url": {"type": "str", "required": True},
        "username": {"type": "str"},
        "password": {"type": "str", "no_log": True},
        "token": {"type": "str", "no_log": True},
        "validate_certs": {"type": "bool", "default": True},
        "ca_path": {"type": "path"},
        "timeout": {"type": "int", "default": 30},
    }


REGISTRY_MUTUALLY_EXCLUSIVE = [("password", "token"), ("username", "token")]
REGISTRY_REQUIRED_TOGETHER = [("username", "password")]


def module_kwargs(argument_spec: dict[str, dict[str, t.Any]], **extra: t.Any) -> dict[str, t.Any]:
    """``AnsibleModule`` keyword arguments: the module's options merged with the shared ones."""
    spec = registry_argument_spec()
    spec.update(argument_spec)
    kwargs: dict[str, t.Any] = {
        "argument_spec": spec,
        "supports_check_mode": True,
        "mutually_exclusive": REGISTRY_MUTUALLY_EXCLUSIVE + list(extra.pop("mutually_exclusive", [])),
        "required_together": REGISTRY_REQUIRED_TOGETHER + list(extra.pop("required_together", [])),
    }
    kwargs.update(extra)
    return kwargs


def client_from_params(params: t.Mapping[str, t.Any], transport: Transport | None = None) -> RegistryClient:
    url = validation.registry_url(params["registry_url"])
    if params.get("timeout") is not None and params["timeout"] <= 0:
        raise InvalidInput("timeout must be more than 0 seconds")
    if transport is None:
        transport = Transport(validate_certs=params.get("validate_certs", True), ca_path=params.get("ca_path"),
                              timeout=params.get("timeout") or 30)
    auth = Authenticator(transport, params.get("username"), params.get("password"), params.get("token"))
    return RegistryClient(url, transport, auth)
