# Two commands do everything on a fresh Debian 12 machine (as root):
#   make demo   - set up the tools, provision a local demo registry host, push a sample image
#                 from this host with skopeo and pull it back; RELEASE=12 for a Debian 12
#                 demo host instead of Debian 13 (the default)
#   make test   - lint, sanity, unit, alert-rule, integration and Molecule tests
# and, on their own:
#   make rules  - check the shipped Prometheus alert rules and run their unit tests (promtool)
SHELL := /bin/bash
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.build/collections
# Molecule scenarios in lanes (tools/molecule.sh): lanes run side by side, the scenarios of a
# lane one after another. One scenario: make molecule SCENARIOS=token
SCENARIOS ?= default,cluster,sites token,identity,operations
# Debian release of the demo host: 13 (trixie, the current stable) or 12 (bookworm).
RELEASE ?= 13
# promtool from Debian's prometheus package, extracted by tools/bootstrap.sh.
PROMTOOL := .build/tools/promtool

.PHONY: demo demo-destroy bootstrap test lint sanity unit rules integration molecule bench build

bootstrap:
	tools/bootstrap.sh

demo: bootstrap
	DOCKYARD_DEMO_RELEASE=$(RELEASE) tools/demo.sh up

demo-destroy:
	tools/demo.sh down

test: bootstrap lint sanity unit rules integration molecule
	@echo "make test: every suite passed"

lint:
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --profile production --offline

sanity:
	tools/sanity.sh

unit:
	$(BIN)/python -m pytest -q tests/unit

# The alert rules shipped in roles/monitoring: syntax and templates, then the unit tests
# with synthetic series (tests/prometheus/). No Prometheus server runs.
rules: $(PROMTOOL)
	$(PROMTOOL) check rules roles/monitoring/files/dockyard-alerts.yml
	$(PROMTOOL) test rules tests/prometheus/*.test.yml

$(PROMTOOL):
	tools/bootstrap.sh

integration:
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests/integration

# `default` runs on Debian 13 and 12 side by side; `token` on the current stable only (CI time);
# `cluster` on its own five instances (molecule/cluster/molecule.yml); `identity` on two
# (a directory and OIDC issuer fixture, and a Debian 12 token-mode registry); `operations`
# on three (a Debian 13 registry host, a Debian 12 Prometheus and a client).
molecule:
	tools/molecule.sh $(SCENARIOS)

build:
	$(BIN)/ansible-galaxy collection build --force --output-path .build/dist

bench:
	$(BIN)/python bench/gateway.py
