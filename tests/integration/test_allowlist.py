"""The VTEP allow-list against an intruder on the lab's underlay, IPv4 and IPv6.

The intruder is lab host `ctl`: on the fabric bridge like h1..h3, but not in group overlay (in
static mode nothing runs on it). It sends VXLAN datagrams to h1 with VNI 100 whose inner frame
is a UDP datagram to h1's VM (ns1, 100.0.0.2, MAC 02:00:64:00:00:02), once from its own
address and once spoofing h2's. A listener in h1's ns1 reports what arrives. With the
allow-list nothing arrives and h1's drop counters count both probes (foreign, spoofed); with
vxlan_vtep_allowlist=false both probes reach the VM, so the test can fail. Legitimate traffic
(VM to VM pings) flows throughout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from lab_fixtures import ROOT, _lab, recap

TEARDOWN = ROOT / "playbooks" / "teardown.yml"
PROBE = ROOT / "tests" / "vxlan_probe.py"
VM_MAC, VM_IP = "02:00:64:00:00:02", "100.0.0.2"
CASES = {
    "ipv4": (ROOT / "inventories" / "lab", {"h1": "192.168.1.2", "h2": "192.168.1.3", "h3": "192.168.1.4", "ctl": "192.168.1.10"}),
    "ipv6": (ROOT / "inventories" / "lab6", {"h1": "2001:db8:1::2", "h2": "2001:db8:1::3", "h3": "2001:db8:1::4", "ctl": "2001:db8:1::10"}),
}
# site.yml's overlay roles without its validation, persistence and verify plays (those are
# tested elsewhere; a whole site.yml run takes ~50 s on this machine), and the allow-list alone.
CONVERGE_PLAY = """---
- name: The overlay with the allow-list
  hosts: overlay
  gather_facts: false
  roles:
    - role: overlay.vxlan.endpoint
    - role: overlay.vxlan.vxlan
    - role: overlay.vxlan.allowlist
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


def probe(lab, hosts: dict) -> list[str]:
    """The intruder's two probes (own address, h2's address) to h1; what h1's VM received."""
    listener = subprocess.Popen(_lab.nsenter_argv(lab.name, "h1") + [
        "ip", "netns", "exec", "ns1", sys.executable, str(PROBE), "listen", "--timeout", "3"],
        stdout=subprocess.PIPE, text=True)
    assert listener.stdout.readline().strip() == "listening"
    send = [sys.executable, str(PROBE), "send", "--vtep", hosts["h1"], "--vni", "100",
            "--dst-mac", VM_MAC, "--dst-ip", VM_IP]
    lab.enter("ctl", *send, "--marker", "own")
    lab.enter("ctl", *send, "--marker", "spoof", "--spoof", hosts["h2"])
    out, _ = listener.communicate(timeout=20)
    return sorted(set(out.split()))


@pytest.mark.parametrize("case", sorted(CASES))
def test_allowlist_stops_an_intruder_and_its_spoofing(lab_factory, tmp_path, case):
    inventory, hosts = CASES[case]
    lab = lab_factory(hosts, inventory=inventory)
    (tmp_path / "converge.yml").write_text(CONVERGE_PLAY)
    converge = lab.playbook(tmp_path / "converge.yml")
    assert all(recap(converge.stdout)[h]["failed"] == 0 for h in ("h1", "h2", "h3"))

    # allow-list on (the default): h1's VM gets neither probe, the counters show both
    before = counters(lab, "h1")
    assert probe(lab, hosts) == []
    after = counters(lab, "h1")
    assert after["foreign"] - before["foreign"] >= 3 and after["spoofed"] - before["spoofed"] >= 3, after
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
    assert probe(lab, hosts) == ["own", "spoof"]
    lab.ping("h2", VM_IP, netns="ns1")

    # on again (a no-change second run), and teardown removes the table
    lab.playbook(play)
    assert all(recap(lab.playbook(play).stdout)[h]["changed"] == 0 for h in ("h1", "h2", "h3"))
    assert probe(lab, hosts) == []
    if case == "ipv4":  # teardown is family-independent; once is enough
        lab.playbook(TEARDOWN)
        assert not any(has_table(lab, h) for h in ("h1", "h2", "h3"))
