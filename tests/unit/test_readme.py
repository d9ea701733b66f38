"""README.md documents every role variable exactly as meta/argument_specs.yml declares it."""
from __future__ import annotations

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_role_docs():
    spec = importlib.util.spec_from_file_location("role_docs", ROOT / "tools" / "role_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_role_variables_match_the_argument_specs():
    role_docs = load_role_docs()
    readme = (ROOT / "README.md").read_text()
    assert role_docs.updated(readme) == readme, "run: python3 tools/role_docs.py"


def test_every_role_variable_appears_in_the_readme():
    import yaml
    readme = (ROOT / "README.md").read_text()
    for specs in ROOT.glob("roles/*/meta/argument_specs.yml"):
        defaults = yaml.safe_load((specs.parent.parent / "defaults" / "main.yml").read_text()) or {}
        options = yaml.safe_load(specs.read_text())["argument_specs"]["main"]["options"]
        assert set(defaults) <= set(options), (specs, set(defaults) - set(options))
        for name in options:
            assert f"| `{name}` |" in readme, name
