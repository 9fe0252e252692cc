"""The VTEP allow-list against an intruder on the lab's underlay, IPv4 and IPv6.

The intruder is lab host `ctl`: on the fabric bridge like h1..h3, but not in group overlay (in
static mode nothing runs on it). It sends VXLAN datagrams to h1 with VNI 100 whose inner frame
is a UDP datagram to h1's VM (ns1, 100.0.0.2, MAC 02:00:64:00:00:02), once from its own
address and once spoofing h2's. A listener in h1's ns1 reports what arrives. With the
allow-list nothing arrives and h1's drop counters count both probes (foreign, spoofed); with
vxlan_vtep_allowlist=false both probes reach the VM, so the test can fail. Legitimate traffic
(VM to VM pings) flows throughout.

A local user on h1 (uid nobody) sends the same datagram over the loopback device, to 127.0.0.1
(::1) and to h1's own underlay address (a member's): dropped and counted as foreign.

The converge follows site.yml's own role order: the allow-list first, so a host whose table
cannot be applied (here h1, whose Python cannot load python3-nftables) stops before it has any
vxlan device, with a message naming host and cause, while the others converge. Teardown removes
the table after the vxlan devices.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import yaml
from lab_fixtures import ROOT, _lab, recap

TEARDOWN = ROOT / "playbooks" / "teardown.yml"
PROBE = ROOT / "tests" / "vxlan_probe.py"
VM_MAC, VM_IP = "02:00:64:00:00:02", "100.0.0.2"
CASES = {
    "ipv4": (ROOT / "inventories" / "lab", {"h1": "192.168.1.2", "h2": "192.168.1.3", "h3": "192.168.1.4", "ctl": "192.168.1.10"}),
    "ipv6": (ROOT / "inventories" / "lab6", {"h1": "2001:db8:1::2", "h2": "2001:db8:1::3", "h3": "2001:db8:1::4", "ctl": "2001:db8:1::10"}),
}
# site.yml's overlay roles, in site.yml's order, without its validation, persistence and verify
# plays (those are tested elsewhere; a whole site.yml run takes ~50 s on this machine).
SITE_ROLES = [r["role"] for r in next(p for p in yaml.safe_load((ROOT / "site.yml").read_text()) if p.get("roles"))["roles"]]
CONVERGE_PLAY = yaml.safe_dump([{"name": "The overlay with the allow-list, as site.yml orders it", "hosts": "overlay",
                                 "gather_facts": False,
                                 "roles": [{"role": r} for r in SITE_ROLES if r != "overlay.vxlan.persist"]}], sort_keys=False)
# h1's Python for the fail-closed converge: python3-nftables "missing", hidden under an empty
# read-only directory in a mount namespace of the module process's own (gone when it exits).
NO_BINDING_PYTHON = """#!/bin/sh
exec unshare --mount --propagation private sh -c \
  'mount -t tmpfs -o ro none /usr/lib/python3/dist-packages/nftables && exec "$0" "$@"' %s "$@"
"""
ALLOWLIST_PLAY = """---
- name: The allow-list alone
  hosts: overlay
  gather_facts: false
  roles:
    - role: overlay.vxlan.allowlist
"""


def counters(lab, host: str) -> dict:
    out = lab.enter(host, "nft", "-j", "list", "counters", "table", "inet", "overlay_vxlan").stdout
    return {c["counter"]["name"]: c["counter"]["packets"] for c in json.loads(out)["nftables"] if "counter" in c}


def has_table(lab, host: str) -> bool:
    return lab.enter(host, "nft", "list", "table", "inet", "overlay_vxlan", check=False).returncode == 0


def links(lab, host: str) -> set[str]:
    return {item["ifname"] for item in json.loads(lab.enter(host, "ip", "-j", "link", "show").stdout)}


def probe(lab, hosts: dict) -> list[str]:
    """The intruder's two probes (own address, h2's address) to h1, and a local user's on h1 over
    lo (to the loopback address, and to h1's own underlay address); what h1's VM received."""
    listener = subprocess.Popen(_lab.nsenter_argv(lab.name, "h1") + [
        "ip", "netns", "exec", "ns1", sys.executable, str(PROBE), "listen", "--timeout", "4"],
        stdout=subprocess.PIPE, text=True)
    assert listener.stdout.readline().strip() == "listening"
    send = [sys.executable, str(PROBE), "send", "--vtep", hosts["h1"], "--vni", "100",
            "--dst-mac", VM_MAC, "--dst-ip", VM_IP]
    lab.enter("ctl", *send, "--marker", "own")
    lab.enter("ctl", *send, "--marker", "spoof", "--spoof", hosts["h2"])
    # Any local user: nobody, with the distribution's Python (no privilege, no venv).
    local = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", str(PROBE), "send",
             "--vni", "100", "--dst-mac", VM_MAC, "--dst-ip", VM_IP]
    lab.enter("h1", *local, "--vtep", "::1" if ":" in hosts["h1"] else "127.0.0.1", "--marker", "loopback")
    lab.enter("h1", *local, "--vtep", hosts["h1"], "--marker", "self")
    out, _ = listener.communicate(timeout=20)
    return sorted(set(out.split()))


def fails_closed(lab, tmp_path, hosts: dict) -> None:
    """h1 cannot apply its table: it stops before it has a vxlan device; h2 and h3 converge."""
    python = tmp_path / "python-without-nftables"
    python.write_text(NO_BINDING_PYTHON % sys.executable)
    python.chmod(0o755)
    (tmp_path / "h1-python.yml").write_text(yaml.safe_dump({"all": {"hosts": {"h1": {"ansible_python_interpreter": str(python)}}}}))
    run = lab.playbook(tmp_path / "converge.yml", "-i", str(tmp_path / "h1-python.yml"), check=False)
    counts = recap(run.stdout)
    assert "vxlan0" not in links(lab, "h1") and not has_table(lab, "h1"), "h1 has a vxlan device and no allow-list"
    assert run.returncode != 0 and counts["h1"]["failed"] == 1, run.stdout[-3000:]
    assert ("host h1: the VTEP allow-list (table inet overlay_vxlan) cannot be applied: the nftables Python binding "
            "is missing on this host") in " ".join(run.stdout.split()), run.stdout[-3000:]
    for host in ("h2", "h3"):
        assert counts[host]["failed"] == 0 and "vxlan0" in links(lab, host) and has_table(lab, host), run.stdout[-3000:]


@pytest.mark.parametrize("case", sorted(CASES))
def test_allowlist_stops_an_intruder_and_its_spoofing(lab_factory, tmp_path, case):
    inventory, hosts = CASES[case]
    lab = lab_factory(hosts, inventory=inventory)
    (tmp_path / "converge.yml").write_text(CONVERGE_PLAY)
    if case == "ipv4":  # the order of the roles is family-independent; once is enough
        fails_closed(lab, tmp_path, hosts)
    converge = lab.playbook(tmp_path / "converge.yml")
    assert all(recap(converge.stdout)[h]["failed"] == 0 for h in ("h1", "h2", "h3"))

    # allow-list on (the default): h1's VM gets no probe, the counters show them all
    before = counters(lab, "h1")
    assert probe(lab, hosts) == []
    after = counters(lab, "h1")
    # 3 each: the intruder's own (foreign), its spoofed ones (spoofed), the local user's two kinds (foreign)
    assert after["foreign"] - before["foreign"] >= 9 and after["spoofed"] - before["spoofed"] >= 3, after
    assert not has_table(lab, "ctl")  # the intruder is not in the overlay: no table there
    lab.ping("h2", VM_IP, netns="ns1")  # legitimate traffic flows
    lab.ping("h3", VM_IP, netns="ns1")
    time.sleep(0.2)
    assert counters(lab, "h1") == after  # and was never counted as dropped

    # allow-list off: the same probes reach the VM (the test above can fail)
    play = tmp_path / "allowlist.yml"
    play.write_text(ALLOWLIST_PLAY)
    off = lab.playbook(play, "-e", "vxlan_vtep_allowlist=false")
    assert all(recap(off.stdout)[h]["changed"] == 1 for h in ("h1", "h2", "h3")), off.stdout[-2000:]
    assert not has_table(lab, "h1")
    assert probe(lab, hosts) == ["loopback", "own", "self", "spoof"]
    lab.ping("h2", VM_IP, netns="ns1")

    # on again (a no-change second run), and teardown removes the table, after the vxlan devices
    lab.playbook(play)
    assert all(recap(lab.playbook(play).stdout)[h]["changed"] == 0 for h in ("h1", "h2", "h3"))
    assert probe(lab, hosts) == []
    if case == "ipv4":  # teardown is family-independent; once is enough
        down = lab.playbook(TEARDOWN)
        tasks = [line for line in down.stdout.splitlines() if line.startswith("TASK [")]
        last_vxlan = max(i for i, t in enumerate(tasks) if t.startswith(("TASK [overlay.vxlan.vxlan : Remove",
                                                                          "TASK [overlay.vxlan.persist : Remove")))
        table_gone = next(i for i, t in enumerate(tasks) if t.startswith("TASK [overlay.vxlan.allowlist : Remove the VTEP"))
        assert table_gone > last_vxlan, tasks
        assert not any(has_table(lab, h) for h in ("h1", "h2", "h3"))
        assert not any("vxlan0" in links(lab, h) for h in ("h1", "h2", "h3"))
