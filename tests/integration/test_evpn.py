"""vxlan_mode=evpn on the simulated lab: FRR (zebra + bgpd, watchfrr) inside each lab host with
its own /etc/frr and /run/frr, two route reflectors (ctl, ctl2), the VMs of the source document.

One lab (name prefix `ev`) goes through: converge, routes and zebra's entries read back, an
idempotent second run, a moved VM, the loss of one route reflector, a switch to static and back
(nothing of either mode left behind), and teardown; the machine's own namespace is compared
before and after.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from lab_fixtures import ROOT, recap, root_netns_snapshot

EVPN = ROOT / "playbooks" / "evpn.yml"
STATIC = ROOT / "playbooks" / "static.yml"
TEARDOWN = ROOT / "playbooks" / "teardown.yml"
VTEPS = {"h1": "192.168.1.2", "h2": "192.168.1.3", "h3": "192.168.1.4"}
REFLECTORS = {"ctl": "192.168.1.10", "ctl2": "192.168.1.11"}
FRR_DAEMONS = {"watchfrr", "zebra", "bgpd", "staticd"}


def vm(address: str, namespace: str = "ns1", host_if: str = "tap1", vm_if: str = "tap2") -> str:
    return "{network: blue, namespace: %s, host_if: %s, vm_if: %s, address: %s/24}" % (namespace, host_if, vm_if, address)


def write_inventory(path: Path, lab_name: str, endpoints: dict[str, list[str]]) -> Path:
    """inventories/lab with a second route reflector; `endpoints`: host -> its VMs."""
    lines = ["all:", "  vars:", "    ansible_connection: overlay.vxlan.lab",
             "    ansible_python_interpreter: \"{{ ansible_playbook_python }}\"",
             "    lab_name: %s" % lab_name, "    lab_underlay_prefix: 24", "  children:",
             "    lab:", "      children:", "        overlay:", "        controller:",
             "    controller:", "      hosts:"]
    lines += ["        %s: {vxlan_underlay_ip: %s}" % item for item in REFLECTORS.items()]
    lines += ["    overlay:", "      vars:", "        vxlan_mode: static", "        vxlan_underlay_dev: eth0",
              "        vxlan_networks:", "          - {name: blue, vni: 100, bridge: br1, vxlan_dev: vxlan0, dstport: 4789}",
              "      hosts:"]
    for host, ip in VTEPS.items():
        vms = endpoints.get(host, [])
        lines += ["        %s:" % host, "          vxlan_underlay_ip: %s" % ip, "          vxlan_endpoints:%s" % ("" if vms else " []")]
        lines += ["            - %s" % e for e in vms]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


SOURCE_VMS = {"h1": [vm("100.0.0.2")], "h2": [vm("100.0.0.3")], "h3": [vm("100.0.0.4")]}
# 100.0.0.4 (MAC 02:00:64:00:00:04) leaves h3 for h2.
MOVED_VMS = {"h1": [vm("100.0.0.2")], "h2": [vm("100.0.0.3"), vm("100.0.0.4", "ns2", "tap3", "tap4")], "h3": []}


def assert_ok(proc, hosts, changed=None):
    stats = recap(proc.stdout)
    for host in hosts:
        assert stats[host]["failed"] == 0 and stats[host]["unreachable"] == 0, proc.stdout[-4000:]
        if changed is not None:
            assert stats[host]["changed"] == changed, "%s changed=%d\n%s" % (host, stats[host]["changed"], proc.stdout[-6000:])


def fdb(lab, host: str) -> list[dict]:
    return json.loads(lab.enter(host, "bridge", "-j", "fdb", "show", "dev", "vxlan0").stdout or "[]")


def extern_learn(lab, host: str) -> dict[str, str]:
    """mac -> dst of zebra's `self extern_learn` entries on vxlan0."""
    return {e["mac"]: e["dst"] for e in fdb(lab, host) if "extern_learn" in e.get("flags", []) and e.get("dst")}


def vtysh_json(lab, host: str, command: str) -> dict:
    return json.loads(lab.enter(host, "vtysh", "-c", command).stdout)


def frr_processes(lab) -> list[str]:
    names = []
    for pid in lab.processes():
        try:
            names.append(Path("/proc/%d/comm" % pid).read_text().strip())
        except OSError:
            continue
    return [n for n in names if n in FRR_DAEMONS]


def wait_for(predicate, timeout: float, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def assert_no_frr_left(lab):
    assert frr_processes(lab) == []
    for host in list(VTEPS) + list(REFLECTORS):
        assert not os.path.exists("/run/overlay-vxlan-lab/%s/%s/frr" % (lab.name, host))
        assert lab.enter(host, "mountpoint", "-q", "/etc/frr", check=False).returncode != 0
        assert lab.enter(host, "mountpoint", "-q", "/run/frr", check=False).returncode != 0
    for host in VTEPS:
        assert extern_learn(lab, host) == {}


def test_evpn_converges_follows_a_move_survives_a_reflector_and_switches_cleanly(lab_factory, tmp_path):
    root_before = root_netns_snapshot()
    name = "ev" + uuid.uuid4().hex[:6]
    inventory = write_inventory(tmp_path / "source.yml", name, SOURCE_VMS)
    lab = lab_factory(dict(VTEPS, **REFLECTORS), inventory=inventory, name=name)
    everyone = list(VTEPS) + list(REFLECTORS)

    # Converge: verify (in the playbook) waited for the flood list, pinged every pair, found
    # the type-2/type-3 routes and zebra's entries.
    first = lab.playbook(EVPN)
    assert_ok(first, everyone)
    assert "EVPN: 3 type-2 and 3 type-3 routes, 2 extern_learn entries" in first.stdout
    # Read back from the kernel and from FRR, not from the playbook.
    for host, ip in VTEPS.items():
        others = {h: i for h, i in VTEPS.items() if h != host}
        macs = {"02:00:64:00:00:%02x" % int(i.rsplit(".", 1)[1]): i for i in others.values()}
        assert extern_learn(lab, host) == macs
        flood = sorted(e["dst"] for e in fdb(lab, host) if e["mac"] == "00:00:00:00:00:00")
        assert flood == sorted(others.values())
        # No entry of ours: every unicast MAC on vxlan0 with a dst is zebra's.
        assert [e for e in fdb(lab, host) if e.get("dst") and e["mac"] != "00:00:00:00:00:00"
                and "extern_learn" not in e.get("flags", [])] == []
        port = json.loads(lab.enter(host, "ip", "-d", "-j", "link", "show", "vxlan0").stdout)[0]["linkinfo"]
        assert (port["info_slave_data"]["learning"], port["info_slave_data"]["neigh_suppress"]) == (False, True)
        assert port["info_data"]["learning"] is False
        vni = vtysh_json(lab, host, "show evpn vni 100 json")
        assert vni["vtepIp"] == ip and sorted(vni["numRemoteVteps"]) == sorted(others.values())
        macip = vtysh_json(lab, host, "show bgp l2vpn evpn route type macip json")
        assert macip["numPrefix"] == 3
    for rr, rr_ip in REFLECTORS.items():
        # Its clients (every VTEP) and the other route reflector.
        summary = vtysh_json(lab, rr, "show bgp l2vpn evpn summary json")
        peers = set(VTEPS.values()) | set(REFLECTORS.values()) - {rr_ip}
        assert {p: s["state"] for p, s in summary["peers"].items()} == dict.fromkeys(peers, "Established")

    # Idempotent: nothing changes on any host, FRR's running configuration included.
    assert_ok(lab.playbook(EVPN), everyone, changed=0)

    # A VM moves from h3 to h2 (inventory change + converge): h1 reaches it at its new VTEP.
    lab.inventory = write_inventory(tmp_path / "moved.yml", name, MOVED_VMS)
    moved = lab.playbook(EVPN)
    converged_at = time.monotonic()
    assert_ok(moved, everyone)
    followed = wait_for(lambda: extern_learn(lab, "h1").get("02:00:64:00:00:04") == VTEPS["h2"], timeout=10)
    follow_seconds = time.monotonic() - converged_at
    assert followed, extern_learn(lab, "h1")
    lab.ping("h1", "100.0.0.4", netns="ns1")
    print("moved VM followed %.1f s after the converge" % follow_seconds)

    # One of the two route reflectors is lost (its underlay goes down): once its hold time
    # passed and its routes are gone, every VM still reaches every other.
    lab.enter("ctl", "ip", "link", "set", "eth0", "down")
    try:
        lost = wait_for(lambda: vtysh_json(lab, "h1", "show bgp l2vpn evpn summary json")["peers"]["192.168.1.10"]["state"]
                        != "Established", timeout=20, step=0.5)
        assert lost, "h1 still has an Established session with the lost route reflector"
        for src, dst in (("h1", "100.0.0.3"), ("h1", "100.0.0.4"), ("h2", "100.0.0.2")):
            lab.ping(src, dst, netns="ns1")
        assert extern_learn(lab, "h1") == {"02:00:64:00:00:03": VTEPS["h2"], "02:00:64:00:00:04": VTEPS["h2"]}
    finally:
        lab.enter("ctl", "ip", "link", "set", "eth0", "up")

    # Back to the source's VMs, then static: FRR stopped everywhere (zebra removed its entries),
    # its directories and mounts gone, the bridge port back to its defaults.
    lab.inventory = inventory
    assert_ok(lab.playbook(STATIC), everyone)
    assert_no_frr_left(lab)
    for host in VTEPS:
        port = json.loads(lab.enter(host, "ip", "-d", "-j", "link", "show", "vxlan0").stdout)[0]["linkinfo"]["info_slave_data"]
        assert (port["learning"], port["neigh_suppress"]) == (True, False)
    lab.ping("h1", "100.0.0.4", netns="ns1")

    # And evpn again: static's permanent MAC and neighbour entries are gone, zebra's are there.
    assert_ok(lab.playbook(EVPN), everyone)
    for host in VTEPS:
        assert [e for e in fdb(lab, host) if e.get("dst") and e["mac"] != "00:00:00:00:00:00"
                and "extern_learn" not in e.get("flags", [])] == []
        assert lab.enter(host, "ip", "neigh", "show", "dev", "vxlan0", "nud", "permanent").stdout.strip() == ""
        assert len(extern_learn(lab, host)) == 2

    # Teardown stops FRR on the VTEPs and the route reflectors.
    assert_ok(lab.playbook(TEARDOWN), everyone)
    assert frr_processes(lab) == []
    assert not any(os.path.exists("/run/overlay-vxlan-lab/%s/%s/frr" % (lab.name, h)) for h in everyone)

    lab.destroy()
    assert root_netns_snapshot() == root_before
