from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))

from registry_checks import Instance  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture
def instance(host):
    return Instance(host)
