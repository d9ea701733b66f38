#!/usr/bin/env bash
# ansible-test sanity on a copy of the checkout laid out as ansible_collections/dockyard/registry.
# Offline trick (see ../shared/ENVIRONMENT.md): ansible-test bootstraps pip in its
# virtualenvs with a script from a host this machine cannot reach; a stand-in that
# runs the pip wheel bundled with ensurepip does the same from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# Outside this checkout: ansible-test would list files with our git, which ignores .build/.
dest=${TMPDIR:-/var/tmp}/dockyard-sanity/ansible_collections/dockyard/registry
venv=${VENV:-.venv}

cache=~/.ansible/test/cache
mkdir -p "$cache"
cat >"$cache/get_pip_24_2.py" <<'PY'
"""Offline stand-in for get-pip.py: install what was asked with ensurepip's bundled pip."""
import glob
import os
import sys

import ensurepip

WHEEL = sorted(glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl")))[-1]
sys.path.insert(0, WHEEL)

from pip._internal.cli.main import main  # noqa: E402

sys.exit(main(["install"] + [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]))
PY

rm -rf "$dest"
mkdir -p "$dest"
git ls-files -z --cached --others --exclude-standard | rsync -a --from0 --files-from=- ./ "$dest/"
cd "$dest"
git init -q && git add -A
"$root/$venv/bin/ansible-test" sanity --color no --python 3.11 --requirements
