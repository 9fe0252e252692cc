#!/bin/bash
# The README's test command (CI runs it through .ci/run): set up, then lint, ansible-test sanity, unit and module
# tests against the real kernel, lab/role integration tests, and every molecule scenario.
# Any failure fails the whole run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0

step() { printf '\n=== %s\n' "$*"; }
t0=$SECONDS
step "ruff"; ruff check .
step "ansible-lint (production profile)"; ansible-lint --profile production
step "ansible-test sanity (the built tarball, no ignore file)"; scripts/sanity.sh
step "pytest: unit, modules, docs, lab and roles"; pytest -q -p no:cacheprovider tests
step "molecule test --all"; molecule test --all
step "all green in $((SECONDS - t0)) s"
