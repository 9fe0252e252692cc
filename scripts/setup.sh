#!/bin/bash
# Install what overlay.vxlan and its lab need on a Debian machine (run as root). Safe to re-run:
# apt and pip only run when something is missing or requirements.txt / test-requirements.txt changed
# (requirements.txt: what the collection needs at run time; test-requirements.txt: the pinned toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(iproute2 iputils-ping python3 python3-venv util-linux procps etcd-server iperf3
    etcd-client                    # etcdctl: the controller role's RBAC (module etcd_rbac) and the DOVE tests
    debootstrap systemd-container  # machine labs (docs/lab.md)
    nftables python3-nftables      # the VTEP allow-list (libnftables and its binding; docs/security.md)
    frr frr-pythontools            # vxlan_mode=evpn (zebra, bgpd, vtysh, frr-reload.py; docs/evpn.md)
    gobgpd)                        # tests only: the rogue BGP speaker of test_evpn (docs/security.md)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: apt-get install ${missing[*]}"
    # Never let a package start a daemon in the machine's own namespace (etcd-server, frr and
    # gobgpd would): the controller and evpn roles (and the tests) run them where they belong.
    policy_rc=/usr/sbin/policy-rc.d
    restore=""
    if [ -e "$policy_rc" ]; then restore=$(mktemp); cp -p "$policy_rc" "$restore"; fi
    printf '#!/bin/sh\nexit 101\n' >"$policy_rc"; chmod +x "$policy_rc"
    trap 'if [ -n "$restore" ]; then mv "$restore" "$policy_rc"; else rm -f "$policy_rc"; fi' EXIT
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt test-requirements.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: pip install -r requirements.txt -r test-requirements.txt"
    .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt -r test-requirements.txt
    echo "$want" >"$stamp"
fi
# community.crypto (galaxy.yml's dependency: the etcd CA and certificates of DOVE mode) into
# .collections/, where ansible.cfg looks. Galaxy is not always reachable (CI, offline machines):
# without it, the collection is taken from the `ansible` package's wheel on PyPI (pinned below).
CRYPTO_DIR=.collections/ansible_collections/community/crypto
ANSIBLE_WHEEL_VERSION=12.3.0  # ships community.crypto 3.0.x; its ansible-core range includes ours
if [ ! -f "$CRYPTO_DIR/MANIFEST.json" ]; then
    if ! .venv/bin/ansible-galaxy collection install -p .collections 'community.crypto>=2.0.0' >/dev/null 2>&1; then
        echo "setup: community.crypto from the ansible $ANSIBLE_WHEEL_VERSION wheel (PyPI)"
        wheel_dir=$(mktemp -d)
        .venv/bin/pip download -q --disable-pip-version-check --no-deps -d "$wheel_dir" "ansible==$ANSIBLE_WHEEL_VERSION"
        .venv/bin/python - "$wheel_dir"/ansible-*.whl <<'PY'
import sys
import zipfile

prefix = "ansible_collections/community/crypto/"
with zipfile.ZipFile(sys.argv[1]) as wheel:
    wheel.extractall(".collections", [name for name in wheel.namelist() if name.startswith(prefix)])
PY
        rm -rf "$wheel_dir"
    fi
fi
crypto_version=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$CRYPTO_DIR/MANIFEST.json" | head -1)
echo "setup: ready ($(.venv/bin/ansible --version 2>/dev/null | head -1), pyroute2 $(.venv/bin/python -c 'import pyroute2; print(pyroute2.__version__)'), community.crypto $crypto_version)"
