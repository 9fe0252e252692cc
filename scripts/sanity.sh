#!/bin/bash
# ansible-test sanity on exactly what the collection ships: build the tarball, unpack it under
# .../ansible_collections/overlay/vxlan in a temporary directory (ansible-test wants that path
# and a real tree, not the .collections symlink), and run every sanity test there, with no
# ignore file. scripts/test.sh runs it; run it alone after scripts/setup.sh.
#
# Offline: ansible-test creates a virtual environment per sanity test (cached under
# ~/.ansible/test/venv) and bootstraps pip into each with a get-pip script it downloads from a
# host this machine cannot reach, unless ~/.ansible/test/cache/get_pip_<version>.py is there.
# scripts/ansible_test_get_pip.py, put there (unless a real get-pip already is), does the same
# from the interpreter's own ensurepip wheel and the package index pip is configured for; each
# test's requirements then come from the index as usual. No test needs to be skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "sanity: run scripts/setup.sh first" >&2; exit 1; }

pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pip_version=$("$PY" -c "import types; from ansible_test._internal.python_requirements import get_venv_packages as g
print(g(types.SimpleNamespace(version='$pyver'))['pip'])")
get_pip=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
marker='# overlay.vxlan offline get-pip for ansible-test'
if [ ! -s "$get_pip" ] || head -1 "$get_pip" | grep -qF "$marker"; then
    mkdir -p "$(dirname "$get_pip")"
    cp scripts/ansible_test_get_pip.py "$get_pip"
fi

work=$(mktemp -d /tmp/overlay-vxlan-sanity.XXXXXX)
trap 'rm -rf "$work"' EXIT
.venv/bin/ansible-galaxy collection build --force --output-path "$work/dist" . >/dev/null
root=$work/ansible_collections/overlay/vxlan
mkdir -p "$root"
tar -xzf "$work"/dist/overlay-vxlan-*.tar.gz -C "$root"
cd "$root"
exec "$OLDPWD/.venv/bin/ansible-test" sanity --local --python "$pyver" --color no "$@"
