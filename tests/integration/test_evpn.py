"""vxlan_mode=evpn on the simulated lab: FRR (zebra + bgpd, watchfrr) inside each lab host with
its own /etc/frr and /run/frr, two route reflectors (ctl, ctl2), the VMs of the source document.

One lab (OVERLAY_VXLAN_LAB_PREFIX + random) goes through: converge, routes and zebra's entries
read back, the bridges' addresses (SVIs) with MAC+IP type-2 routes and ARP answered by the local
bridge (a request that never reaches the remote VM), an idempotent second run, a moved VM, the
loss of one route reflector, a switch to static and back (nothing of either mode left behind,
the bridge address included), evpn_svi=false, and teardown; the machine's own namespace is
compared before and after.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from lab_fixtures import ROOT, recap, root_netns_snapshot, unique_lab_name

from ansible_collections.overlay.vxlan.plugins.module_utils import _lab

EVPN = ROOT / "playbooks" / "evpn.yml"
STATIC = ROOT / "playbooks" / "static.yml"
TEARDOWN = ROOT / "playbooks" / "teardown.yml"
VTEPS = {"h1": "192.168.1.2", "h2": "192.168.1.3", "h3": "192.168.1.4"}
REFLECTORS = {"ctl": "192.168.1.10", "ctl2": "192.168.1.11"}
FRR_DAEMONS = {"watchfrr", "zebra", "bgpd", "staticd"}
# The bridges' generated addresses (evpn_svi): the n-th overlay host, the n-th from the top.
SVIS = {"h1": "100.0.0.254/24", "h2": "100.0.0.253/24", "h3": "100.0.0.252/24"}
VM_IPS = {"h1": "100.0.0.2", "h2": "100.0.0.3", "h3": "100.0.0.4"}
ARP_PROBE = Path(__file__).resolve().parents[1] / "arp_probe.py"


def lab_nsenter(lab, host: str) -> list[str]:
    return _lab.nsenter_argv(lab.name, host)


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


def mac_of(ip: str) -> str:
    return "02:00:64:00:00:%02x" % int(ip.rsplit(".", 1)[1])


def bridge_addresses(lab, host: str) -> list[str]:
    """br1's addresses as the kernel has them (IPv6 link-local left out)."""
    info = json.loads(lab.enter(host, "ip", "-j", "addr", "show", "dev", "br1").stdout)[0]["addr_info"]
    return sorted("%s/%d" % (a["local"], a["prefixlen"]) for a in info if not a["local"].startswith("fe80:"))


def zebra_neighbours(lab, host: str) -> dict[str, str]:
    """ip -> lladdr of zebra's extern_learn neighbour entries on br1 (the remote VMs' MAC+IP)."""
    entries = json.loads(lab.enter(host, "ip", "-j", "neigh", "show", "dev", "br1").stdout or "[]")
    return {e["dst"]: e["lladdr"] for e in entries if "extern_learn" in e}  # ip -j: "extern_learn": null


def macip_routes(lab, host: str) -> set[tuple[str, str, str]]:
    """(mac, ip, next hop) of every type-2 route with an IP in bgpd's table."""
    table = vtysh_json(lab, host, "show bgp l2vpn evpn route type macip json")
    found = set()
    for entry in table.values():
        if not isinstance(entry, dict):
            continue
        for prefix, route in entry.items():
            if prefix.startswith("[2]") and isinstance(route, dict):
                for path in (p for paths in route.get("paths", []) for p in paths):
                    if path.get("ip") and path.get("bestpath"):
                        hop = path.get("nexthops", [{}])[0].get("ip")
                        found.add((path["mac"], path["ip"], hop))
    return found


def arp_probe(lab, host: str, *args: str, netns: str = "ns1") -> str:
    return lab.enter(host, "python3", "-", *args, netns=netns, input=ARP_PROBE.read_text()).stdout.strip()


def arp_crosses(lab, asker: str, target_host: str, target_ip: str) -> tuple[str, int]:
    """One ARP request from `asker`'s VM for `target_ip`: (the MAC of the answer or 'none', how
    many requests for it arrived at the VM of `target_host`)."""
    listener = subprocess.Popen(lab_nsenter(lab, target_host) + ["ip", "netns", "exec", "ns1", "python3", "-", "count", "tap2", target_ip, "3"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    listener.stdin.write(ARP_PROBE.read_text())
    listener.stdin.close()
    assert listener.stdout.readline().strip() == "listening"
    answer = arp_probe(lab, asker, "ask", "tap2", VM_IPS[asker], target_ip)
    arrived = int(listener.stdout.read().strip())
    listener.wait(timeout=10)
    return answer, arrived


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
    name = unique_lab_name()
    inventory = write_inventory(tmp_path / "source.yml", name, SOURCE_VMS)
    lab = lab_factory(dict(VTEPS, **REFLECTORS), inventory=inventory, name=name)
    everyone = list(VTEPS) + list(REFLECTORS)

    # Converge: verify (in the playbook) waited for the flood list, pinged every pair, found
    # the type-2/type-3 routes and zebra's entries.
    first = lab.playbook(EVPN)
    assert_ok(first, everyone)
    assert ("EVPN: 6 type-2 (3 with an IP) and 3 type-3 routes, 2 extern_learn entries, 2 remote MAC+IP on the bridges"
            in " ".join(first.stdout.split())), first.stdout[-3000:]
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
        # One MAC-only and one MAC+IP route per VM: the bridge's address (SVI) lets zebra learn the IPs.
        assert macip["numPrefix"] == 6
        assert bridge_addresses(lab, host) == [SVIS[host]]
        assert macip_routes(lab, host) == {(mac_of(i), i, VTEPS[h]) for h, i in VM_IPS.items()}
        # zebra's remote MAC+IP on the bridge (from which it answers ARP), and in its ARP cache.
        remote = {VM_IPS[h]: mac_of(VM_IPS[h]) for h in VTEPS if h != host}
        assert zebra_neighbours(lab, host) == remote
        cache = vtysh_json(lab, host, "show evpn arp-cache vni 100 json")
        assert {ip: (e["type"], e["mac"], e.get("remoteVtep")) for ip, e in cache.items() if isinstance(e, dict)} == dict(
            {VM_IPS[h]: ("remote", mac_of(VM_IPS[h]), VTEPS[h]) for h in VTEPS if h != host},
            **{VM_IPS[host]: ("local", mac_of(VM_IPS[host]), None)})
    for rr, rr_ip in REFLECTORS.items():
        # Its clients (every VTEP) and the other route reflector.
        summary = vtysh_json(lab, rr, "show bgp l2vpn evpn summary json")
        peers = set(VTEPS.values()) | set(REFLECTORS.values()) - {rr_ip}
        assert {p: s["state"] for p, s in summary["peers"].items()} == dict.fromkeys(peers, "Established")

    # ARP suppression: h2's VM asks for h1's VM; h2's bridge answers with the right MAC and the
    # request never reaches h1's VM. A request for an address no one advertised is flooded and
    # does reach it (the listener sees what crosses).
    assert arp_crosses(lab, "h2", "h1", "100.0.0.2") == (mac_of("100.0.0.2"), 0)
    assert arp_crosses(lab, "h2", "h1", "100.0.0.99") == ("none", 1)

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
        # The bridge's address (evpn's SVI) is gone, and zebra's MAC+IP entries with it.
        assert bridge_addresses(lab, host) == []
        assert zebra_neighbours(lab, host) == {}
    lab.ping("h1", "100.0.0.4", netns="ns1")

    # And evpn again: static's permanent MAC and neighbour entries are gone, zebra's are there.
    assert_ok(lab.playbook(EVPN), everyone)
    for host in VTEPS:
        assert [e for e in fdb(lab, host) if e.get("dst") and e["mac"] != "00:00:00:00:00:00"
                and "extern_learn" not in e.get("flags", [])] == []
        assert lab.enter(host, "ip", "neigh", "show", "dev", "vxlan0", "nud", "permanent").stdout.strip() == ""
        assert len(extern_learn(lab, host)) == 2
        assert bridge_addresses(lab, host) == [SVIS[host]]
        assert len(zebra_neighbours(lab, host)) == 2

    # evpn_svi=false: no bridge address, type-2 routes with MACs only, no MAC+IP on the bridges.
    no_svi = lab.playbook(EVPN, "-e", "evpn_svi=false")
    assert_ok(no_svi, everyone)
    # (Read back from the kernel and FRR below, not from verify's summary.)
    for host in VTEPS:
        assert bridge_addresses(lab, host) == []
        assert wait_for(lambda host=host: zebra_neighbours(lab, host) == {} and macip_routes(lab, host) == set(), timeout=10), \
            (zebra_neighbours(lab, host), macip_routes(lab, host))

    # Teardown stops FRR on the VTEPs and the route reflectors.
    assert_ok(lab.playbook(TEARDOWN), everyone)
    assert frr_processes(lab) == []
    assert not any(os.path.exists("/run/overlay-vxlan-lab/%s/%s/frr" % (lab.name, h)) for h in everyone)

    lab.destroy()
    assert root_netns_snapshot() == root_before
