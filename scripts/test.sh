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
# pytest and molecule share nothing (every test and scenario makes its own uniquely named lab), and
# each mostly waits on one ansible process at a time: side by side they use both cores and the
# run takes well under CI's time. Molecule's output goes to a file, printed after pytest's.
molecule_log=$(mktemp /tmp/overlay-vxlan-molecule.XXXXXX)
step "molecule test --all (in the background, log $molecule_log)"
molecule test --all >"$molecule_log" 2>&1 &
molecule_pid=$!
trap 'kill "$molecule_pid" 2>/dev/null || true; wait "$molecule_pid" 2>/dev/null || true' EXIT
step "pytest: unit, modules, docs, lab and roles"
pytest_rc=0
pytest -q -p no:cacheprovider tests || pytest_rc=$?
step "pytest done in $((SECONDS - t0)) s (rc=$pytest_rc); waiting for molecule"
molecule_rc=0
wait "$molecule_pid" || molecule_rc=$?
trap - EXIT
step "molecule test --all (rc=$molecule_rc)"
cat "$molecule_log"
rm -f "$molecule_log"
if ((pytest_rc || molecule_rc)); then
    step "FAILED: pytest rc=$pytest_rc, molecule rc=$molecule_rc, after $((SECONDS - t0)) s"
    exit 1
fi
step "all green in $((SECONDS - t0)) s"
