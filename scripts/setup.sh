#!/bin/bash
# Install what overlay.vxlan and its lab need on a Debian machine (run as root). Safe to re-run:
# apt and pip only run when something is missing or requirements.txt / test-requirements.txt changed
# (requirements.txt: what the collection needs at run time; test-requirements.txt: the pinned toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(iproute2 iputils-ping python3 python3-venv util-linux procps etcd-server iperf3
    debootstrap systemd-container  # machine labs (docs/lab.md)
    nftables python3-nftables      # the VTEP allow-list (libnftables and its binding; docs/security.md)
    frr frr-pythontools)           # vxlan_mode=evpn (zebra, bgpd, vtysh, frr-reload.py; docs/evpn.md)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: apt-get install ${missing[*]}"
    # Never let a package start a daemon in the machine's own namespace (etcd-server and frr
    # would): the controller and evpn roles run them where they belong.
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
echo "setup: ready ($(.venv/bin/ansible --version 2>/dev/null | head -1), pyroute2 $(.venv/bin/python -c 'import pyroute2; print(pyroute2.__version__)'))"
