# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The parameters of the roles' module tasks, computed once from a host's share of the mesh.

The endpoint and vxlan roles hand each list both to overlay.vxlan.overlay_plan (is anything
to do?) and to the tasks that make the changes, so the two can never ask for different things.
Docs: vxlan_endpoint_params.yml and vxlan_overlay_params.yml next to this file.

The four control planes of the source, as vxlan_link / bridge_fdb / ip_neigh parameters:

    mode       device (ip link add vxlan0 type vxlan id 100 dstport 4789 local ... dev eth0 ...)
    multicast  group 239.1.1.1, learning            no static fdb, no neighbours
    flood      learning                              00:00:00:00:00:00 dst <peer>, one per peer
    static     nolearning proxy                      <vm mac> dst <its vtep>; <vm ip> lladdr <mac>
    dove       nolearning proxy l2miss l3miss        nothing: the agent answers the misses
    evpn       nolearning; bridge port learning off,  empty (exact) until FRR runs; then nothing:
               neigh_suppress on                      zebra installs the flood list and the MACs

In DOVE mode the tables belong to the agent (overlay.vxlan.dove_agent), so no table task is given.
In EVPN mode they belong to FRR's zebra once it runs: its flood-list entries (`00:00:00:00:00:00
dst <peer> self permanent`) look exactly like the ones this collection writes, so an exact table
would delete them. The empty exact tables are given only while FRR is not running on the host
(a switch from another mode: what that mode left goes before zebra starts).
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.overlay.vxlan.plugins.module_utils import _overlay_rules as rules
from ansible_collections.overlay.vxlan.plugins.module_utils import _validate as v
from ansible_collections.overlay.vxlan.plugins.module_utils._vm_mac import bridge_mac


def fdb_rows(entries: list) -> str:
    """bridge_fdb `rows` of mesh fdb/flood entries: `MAC DST` per line."""
    return "".join("%s %s\n" % (e["mac"], e["dst"]) for e in entries)


def neigh_rows(entries: list) -> str:
    """ip_neigh `rows` of mesh neighbour entries: `IP LLADDR` per line."""
    return "".join("%s %s\n" % (e["ip"], e["lladdr"]) for e in entries)


def endpoint_params(mesh: list, mtu, bridge_addresses=False, leave_addresses=False, pin_mac=False) -> dict:
    """linux_bridge and netns_veth parameters: one bridge per network, one veth pair per VM.

    The bridges' addresses are always given, so the collection owns them: with
    `bridge_addresses` (vxlan_mode=evpn with evpn_svi) each network's `bridge_addresses` from the
    endpoint map (its SVI), otherwise none (a switch away from evpn removes them). The bridges'
    neighbour entries are overlay_params' (`bridge_neighbours`).

    `leave_addresses` (vxlan_mode=evpn without evpn_svi): the addresses are not given here but
    removed by overlay_params' linux_bridge items, after the bridges' neighbour entries: zebra
    withdraws a local MAC+IP route when its entry goes only while the bridge has an address
    (measured with FRR 8.4), so the address must go last.

    `pin_mac` (vxlan_mode=evpn): each bridge gets a fixed MAC (`_vm_mac.bridge_mac`), so a VM
    joining or leaving the host never changes it (the SVI's MAC in zebra's routes, and the
    kernel's flush of the bridge's neighbour table that a change brings)."""
    mtu = int(mtu)
    svi = {net["bridge"]: list(net.get("bridge_addresses") or []) if bridge_addresses else [] for net in mesh}
    bridges = []
    for net in mesh:
        bridge = {"name": net["bridge"], "mtu": mtu}
        if bridge_addresses or not leave_addresses:
            bridge["addresses"] = svi[net["bridge"]]
        if pin_mac:
            bridge["mac"] = bridge_mac(net["local"], net["bridge"])
        bridges.append(bridge)
    return {
        "linux_bridge": bridges,
        "netns_veth": [
            {
                "namespace": vm["namespace"],
                "name": vm["host_if"],
                "peer": vm["vm_if"],
                "master": net["bridge"],
                "addresses": [vm["address"]],
                "mac": vm["mac"],
                "mtu": mtu,
            }
            for net in mesh
            for vm in net["endpoints"]
        ],
    }


def overlay_params(mesh: list, mode: str, underlay_dev: str, mtu, ttl=None, evpn_running=False, bridge_neighbours=False) -> dict:
    """vxlan_link, bridge_fdb and ip_neigh parameters of `mode` for every network of the host.
    `evpn_running`: FRR runs on the host (evpn mode then gives no table task for the device).

    Each bridge's own neighbour table is given too (ip_neigh, exact, permanent entries only, so
    zebra's remote MAC+IP entries and what the kernel learns are left alone): with
    `bridge_neighbours` (vxlan_mode=evpn with evpn_svi) a permanent entry per local VM of a
    network whose bridge has an address (`ip lladdr mac`, what the host knows of its VMs), which
    zebra advertises as a MAC+IP type-2 route and which never ages out as a learnt entry does
    when the VM is quiet; otherwise none. After the vxlan devices: enslaving one can change the
    bridge's MAC, and the kernel then flushes the bridge's neighbour table."""
    problems = rules.mode_problems(mode, mesh)
    if problems:
        raise AnsibleFilterError("; ".join(problems))
    links, fdb, neigh = [], [], []
    for net in mesh:
        link = {
            "name": net["vxlan_dev"],
            "vni": int(net["vni"]),
            "dstport": int(net["dstport"]),
            "local": net["local"],
            "dev": underlay_dev,
            "learning": mode in ("multicast", "flood"),
            "proxy": mode in ("static", "dove"),
            "l2miss": mode == "dove",
            "l3miss": mode == "dove",
            "mtu": int(mtu),
            "master": net["bridge"],
            # The bridge port: EVPN suppresses ARP/ND and does not learn on it; every other mode
            # has the bridge's defaults (a switch from evpn puts them back).
            "port_learning": mode != "evpn",
            "neigh_suppress": mode == "evpn",
        }
        if mode == "multicast":
            link["group"] = net["group"]
        if ttl:  # as the roles always did: `vxlan_ttl | default(omit, true)`
            link["ttl"] = int(ttl)
        links.append(link)
        if mode == "dove" or (mode == "evpn" and evpn_running):
            continue
        # exact everywhere: whatever an earlier mode (or a hand) left in the tables goes.
        # The tables go as compact rows, one string of one entry per line: a 10,000-entry table
        # is then one value to template, validate and echo, not 10,000 dicts (the modules'
        # `rows` option; the same entries and checks as `entries`).
        entries = {"multicast": [], "flood": net["flood"], "static": net["fdb"], "evpn": []}[mode]
        fdb.append({"dev": net["vxlan_dev"], "state": "exact", "rows": fdb_rows(entries)})
        neigh.append({"dev": net["vxlan_dev"], "state": "exact", "rows": neigh_rows(net["neigh"] if mode == "static" else [])})
    for net in mesh:
        own = [{"ip": vm["ip"], "lladdr": vm["mac"]} for vm in net["endpoints"]] if bridge_neighbours and net.get("bridge_addresses") else []
        neigh.append({"dev": net["bridge"], "state": "exact", "rows": neigh_rows(own)})
    # evpn without evpn_svi: the bridges' addresses go after their neighbour entries (the
    # endpoint role leaves them: endpoint_params' leave_addresses), a separate apply step.
    bridges = [{"name": net["bridge"], "addresses": []} for net in mesh] if mode == "evpn" and not bridge_neighbours else []
    return {"vxlan_link": links, "bridge_fdb": fdb, "ip_neigh": neigh, "linux_bridge": bridges}


def mode_problems(mesh: list, mode) -> list[str]:
    """Why the host cannot carry its share `mesh` in `mode` (a play's own vxlan_mode, which the
    inventory check does not see), one sentence each; empty if it can."""
    return rules.mode_problems(mode, mesh)


def overlay_mtu(underlay_mtu, underlay_ip) -> int:
    """The overlay MTU (VXLAN devices, bridges, VMs) over the underlay address' family."""
    try:
        return rules.overlay_mtu(int(underlay_mtu), v.ip_version(v.unicast_ip("underlay_ip", underlay_ip)))
    except (TypeError, ValueError, v.OverlayError) as exc:
        raise AnsibleFilterError("vxlan_overlay_mtu: underlay MTU %r, underlay address %r: %s"
                                 % (underlay_mtu, underlay_ip, getattr(exc, "msg", exc))) from None


class FilterModule:
    def filters(self):
        return {"vxlan_endpoint_params": endpoint_params, "vxlan_overlay_params": overlay_params,
                "vxlan_mode_problems": mode_problems, "vxlan_overlay_mtu": overlay_mtu}
