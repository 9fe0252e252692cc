"""vxlan_mode=evpn with IPv6 VMs (over the IPv4 underlay: FRR 8.4 has no IPv6 VTEP): ND
suppression proven, as test_evpn.py proves ARP suppression for IPv4 VMs.

One lab (h1, h2 and route reflector ctl), network green (VNI 200, br2, vxlan1) with VMs fd10::2
on h1 and fd10::3 on h2, converged with playbooks/evpn.yml (its verify pings every pair):

- bgpd has each VM's MAC+IPv6 type-2 route (the bridge's IPv6 address lets zebra learn it) with
  the VM's VTEP as next hop, and zebra installed the remote VM's MAC+IPv6 on the bridge
  (`extern_learn`), from which the bridge answers neighbour solicitations;
- a neighbour solicitation from h1's VM for h2's VM gets the right MAC and never reaches h2's VM
  (counted there); the control: with neigh_suppress off on h1's vxlan1 (by hand) it does, and the
  next converge puts the flag back;
- teardown, and the machine's own namespace is untouched.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from evpn_helpers import assert_ok, macip_routes, wait_for
from lab_fixtures import ROOT, Lab, root_netns_snapshot, unique_lab_name

from ansible_collections.overlay.vxlan.plugins.module_utils import _lab

EVPN = ROOT / "playbooks" / "evpn.yml"
TEARDOWN = ROOT / "playbooks" / "teardown.yml"
VTEPS = {"h1": "192.168.1.2", "h2": "192.168.1.3"}
CTL = {"ctl": "192.168.1.10"}
VM_IPS = {"h1": "fd10::2", "h2": "fd10::3"}
PROBE = Path(__file__).resolve().parents[1] / "arp_probe.py"


def write_inventory(path: Path, lab_name: str) -> Path:
    lines = ["all:", "  vars:", "    ansible_connection: overlay.vxlan.lab",
             "    ansible_python_interpreter: \"{{ ansible_playbook_python }}\"",
             "    lab_name: %s" % lab_name, "    lab_underlay_prefix: 24", "  children:",
             "    lab:", "      children:", "        overlay:", "        controller:",
             "    controller:", "      hosts:", "        ctl: {vxlan_underlay_ip: %s}" % CTL["ctl"],
             "    overlay:", "      vars:", "        vxlan_mode: static", "        vxlan_underlay_dev: eth0",
             "        vxlan_networks:", "          - {name: green, vni: 200, bridge: br2, vxlan_dev: vxlan1, dstport: 4789}",
             "      hosts:"]
    for host, ip in VTEPS.items():
        lines += ["        %s:" % host, "          vxlan_underlay_ip: %s" % ip, "          vxlan_endpoints:",
                  "            - {network: green, namespace: ns1, host_if: tap1, vm_if: tap2, address: '%s/64'}" % VM_IPS[host]]
    path.write_text("\n".join(lines) + "\n")
    return path


def vm_mac(lab, host: str) -> str:
    return json.loads(lab.enter(host, "ip", "-j", "link", "show", "dev", "tap2", netns="ns1").stdout)[0]["address"]


def zebra_neighbours6(lab, host: str) -> dict[str, str]:
    entries = json.loads(lab.enter(host, "ip", "-6", "-j", "neigh", "show", "dev", "br2").stdout or "[]")
    return {e["dst"]: e["lladdr"] for e in entries if "extern_learn" in e}


def solicit(lab, asker: str, target_host: str) -> tuple[str | None, int]:
    """h1's VM resolves the other VM's address afresh (its neighbour cache flushed, one ping):
    (the MAC its cache then holds, how many solicitations for that address reached the other VM)."""
    target_ip = VM_IPS[target_host]
    listener = subprocess.Popen(_lab.nsenter_argv(lab.name, target_host) + ["ip", "netns", "exec", "ns1", "python3", "-", "count6",
                                                                           "tap2", target_ip, "3"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    listener.stdin.write(PROBE.read_text())
    listener.stdin.close()
    assert listener.stdout.readline().strip() == "listening"
    lab.enter(asker, "ip", "-6", "neigh", "flush", "dev", "tap2", netns="ns1")
    lab.enter(asker, "ping", "-6", "-n", "-c", "1", "-W", "2", target_ip, netns="ns1", check=False)
    arrived = int(listener.stdout.read().strip())
    listener.wait(timeout=10)
    cache = json.loads(lab.enter(asker, "ip", "-6", "-j", "neigh", "show", "to", target_ip, "dev", "tap2", netns="ns1").stdout or "[]")
    return (cache[0].get("lladdr") if cache else None), arrived


@pytest.fixture(scope="module")
def ipv6_lab(tmp_path_factory):
    root_before = root_netns_snapshot()
    directory = tmp_path_factory.mktemp("evpn6")
    name = unique_lab_name()
    lab = Lab(name, write_inventory(directory / "evpn6.yml", name), dict(VTEPS, **CTL))
    try:
        lab.create()
        yield lab
    finally:
        if lab.exists():
            proc = lab.destroy(check=False)
            assert proc.returncode == 0 and not lab.exists(), proc.stdout[-2000:]
    assert root_netns_snapshot() == root_before


def test_evpn_with_ipv6_vms_suppresses_neighbour_solicitations(ipv6_lab):
    lab = ipv6_lab
    # The playbook's verify pings every pair (IPv6) and waits for the routes and zebra's entries.
    assert_ok(lab.playbook(EVPN), list(VTEPS) + list(CTL))
    macs = {host: vm_mac(lab, host) for host in VTEPS}
    for host in VTEPS:
        other = next(h for h in VTEPS if h != host)
        # The MAC+IPv6 type-2 routes of both VMs, each at its VM's VTEP.
        assert wait_for(lambda host=host: {(macs[h], VM_IPS[h], VTEPS[h]) for h in VTEPS} <= macip_routes(lab, host), 20), \
            macip_routes(lab, host)
        # zebra's MAC+IPv6 of the remote VM on the bridge: what the bridge answers NS from.
        assert wait_for(lambda host=host, other=other: zebra_neighbours6(lab, host) == {VM_IPS[other]: macs[other]}, 20), \
            zebra_neighbours6(lab, host)
        port = json.loads(lab.enter(host, "ip", "-d", "-j", "link", "show", "vxlan1").stdout)[0]["linkinfo"]["info_slave_data"]
        assert port["neigh_suppress"] is True
    # ND suppression: h1's VM learns h2's VM's MAC, and no solicitation crosses the overlay.
    assert solicit(lab, "h1", "h2") == (macs["h2"], 0)
    # The control: without neigh_suppress on h1's vxlan1 the solicitation reaches h2's VM.
    lab.enter("h1", "bridge", "link", "set", "dev", "vxlan1", "neigh_suppress", "off")
    mac, arrived = solicit(lab, "h1", "h2")
    assert (mac, arrived >= 1) == (macs["h2"], True), (mac, arrived)
    # The next converge puts the flag back (the only change), and suppression with it.
    again = lab.playbook(EVPN)
    assert_ok(again, list(VTEPS) + list(CTL))
    assert solicit(lab, "h1", "h2") == (macs["h2"], 0)

    assert_ok(lab.playbook(TEARDOWN), list(VTEPS) + list(CTL))
    assert "br2" not in lab.enter("h1", "ip", "-br", "link").stdout
