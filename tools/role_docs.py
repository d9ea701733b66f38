"""Render every role variable from meta/argument_specs.yml into README.md.

The argument specs are the contract the roles validate; the README's tables are made
from them so the two cannot drift (tests/unit/test_readme.py checks it).

    python3 tools/role_docs.py          # rewrite the tables in README.md
    python3 tools/role_docs.py --check  # exit 1 when README.md is out of date
"""
from __future__ import annotations

import argparse
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- BEGIN ROLE VARIABLES -->", "<!-- END ROLE VARIABLES -->"
_MARKUP = re.compile(r"\b[CIVO]\(([^)]*)\)")


def plain(text: object) -> str:
    lines = text if isinstance(text, list) else [text]
    return " ".join(_MARKUP.sub(r"`\1`", str(line)) for line in lines).replace("|", "\\|")


def default(spec: dict) -> str:
    if spec.get("required"):
        return "*required*"
    if "default" not in spec:
        return "see defaults/main.yml"
    value = spec["default"]
    return "`" + (yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()
                  if not isinstance(value, str) else value or '""') + "`"


def render() -> str:
    parts = [BEGIN]
    for specs in sorted(ROOT.glob("roles/*/meta/argument_specs.yml")):
        role = specs.parts[-3]
        main = yaml.safe_load(specs.read_text())["argument_specs"]["main"]
        parts += ["", f"### Role `dockyard.registry.{role}`", "", plain(main["short_description"]) + ".", "",
                  "| Variable | Type | Default | Description |", "| --- | --- | --- | --- |"]
        for name, spec in main["options"].items():
            kind = spec.get("type", "str") + (f" of {spec['elements']}" if "elements" in spec else "")
            choices = f" One of: {', '.join(f'`{c}`' for c in spec['choices'])}." if "choices" in spec else ""
            parts.append(f"| `{name}` | {kind} | {default(spec)} | {plain(spec.get('description', ''))}{choices} |")
    parts += ["", END]
    return "\n".join(parts)


def updated(readme: str) -> str:
    start, end = readme.index(BEGIN), readme.index(END) + len(END)
    return readme[:start] + render() + readme[end:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    path = ROOT / "README.md"
    readme = path.read_text()
    new = updated(readme)
    if args.check:
        if new != readme:
            print("README.md's role variables are out of date: run python3 tools/role_docs.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
