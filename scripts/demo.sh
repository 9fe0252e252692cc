#!/bin/bash
# The README's main command: set up, build the simulated lab, converge site.yml and show the
# ping matrix. Re-running it is quick and reports no changes. Extra arguments go to
# ansible-playbook, e.g.  scripts/demo.sh -e vxlan_mode=flood
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
ansible-playbook playbooks/lab.yml
ansible-playbook site.yml "$@"
