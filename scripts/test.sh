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
# each mostly waits on one ansible process at a time (pytest alone keeps the load near 1.5 on 2
# cores): two streams side by side use both cores. The background stream runs every molecule
# scenario (~16 min), then pytest's two longest files (~12 min: test_verify, test_check_and_leave)
# test_dove_etcd (~5 min) and test_evpn_peers (~3 min); the foreground runs the rest of pytest. Measured on a clean clone: one stream took 42 min (pytest
# 41 of them), two streams 36 (the background ended first). The background stream's output goes
# to a file, printed after the foreground's.
second_part=(tests/integration/test_verify.py tests/integration/test_check_and_leave.py tests/integration/test_dove_etcd.py
             tests/integration/test_evpn_peers.py)
background_log=$(mktemp /tmp/overlay-vxlan-background.XXXXXX)
background_rc=$(mktemp /tmp/overlay-vxlan-background-rc.XXXXXX)
step "molecule test --all, then pytest ${second_part[*]} (in the background, log $background_log)"
(
    molecule_rc=0
    molecule test --all || molecule_rc=$?
    printf '\n=== pytest, second part: %s\n' "${second_part[*]}"
    second_rc=0
    pytest -q -p no:cacheprovider "${second_part[@]}" || second_rc=$?
    echo "$molecule_rc $second_rc" >"$background_rc"
) >"$background_log" 2>&1 &
background_pid=$!
trap 'pkill -TERM -P "$background_pid" 2>/dev/null || true; kill "$background_pid" 2>/dev/null || true; wait "$background_pid" 2>/dev/null || true' EXIT
step "pytest: unit, modules, docs, lab and roles (all but the second part)"
pytest_rc=0
pytest -q -p no:cacheprovider tests "${second_part[@]/#/--ignore=}" || pytest_rc=$?
step "pytest done in $((SECONDS - t0)) s (rc=$pytest_rc); waiting for the background stream"
wait "$background_pid" || true
trap - EXIT
step "molecule test --all and pytest's second part"
cat "$background_log"
# No rc written: the stream was killed before it ended; that is a failure of both.
read -r molecule_rc second_rc <"$background_rc" || { molecule_rc=1; second_rc=1; }
rm -f "$background_log" "$background_rc"
if ((pytest_rc || molecule_rc || second_rc)); then
    step "FAILED: pytest rc=$pytest_rc, molecule rc=$molecule_rc, pytest second part rc=$second_rc, after $((SECONDS - t0)) s"
    exit 1
fi
step "all green in $((SECONDS - t0)) s"
