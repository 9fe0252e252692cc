# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn the inventory into each host's share of the VXLAN mesh.

`compute_mesh` is a plain function (unit-tested in tests/unit/test_mesh.py): given every
overlay host's underlay address and endpoints, it returns, for one host, each network it carries
with the flood list (every peer VTEP), the static fdb entries (every remote VM MAC -> its VTEP)
and the ARP-proxy entries (every remote VM IP -> its MAC). Nothing needs gathered facts: VM MACs
come from the inventory or are derived from the VM address.
"""

from __future__ import annotations

import ipaddress

# vm_mac lives in module_utils so that the inventory check (module_utils/_overlay_map.py) uses the
# very same derivation without importing a filter plugin; re-exported here.
from ansible_collections.overlay.vxlan.plugins.module_utils._vm_mac import vm_mac  # noqa: F401

# Documentation: one file per filter beside this one (vxlan_mesh.yml, vxlan_vm_mac.yml,
# vxlan_in_subnet.yml), so ansible-doc renders each filter with its own.

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # plain unit tests without Ansible
    AnsibleFilterError = ValueError  # type: ignore[misc,assignment]


def _endpoint_view(host: str, underlay_ip: str, endpoint: dict) -> dict:
    address = str(endpoint["address"])
    ip = str(ipaddress.ip_interface(address).ip)
    mac = str(endpoint.get("mac") or vm_mac(address, endpoint["network"])).lower()
    return {"host": host, "vtep": underlay_ip, "network": endpoint["network"], "namespace": endpoint["namespace"],
            "host_if": endpoint["host_if"], "vm_if": endpoint["vm_if"], "address": address, "ip": ip, "mac": mac}


def all_endpoints(hosts: dict, networks: list) -> list[dict]:
    """Every endpoint of the inventory, validated: known network, unique IP and MAC per network."""
    known = {net["name"] for net in networks}
    result, seen_ip, seen_mac = [], {}, {}
    for host in sorted(hosts):
        info = hosts[host]
        underlay_ip = info.get("vxlan_underlay_ip")
        if not underlay_ip:
            raise AnsibleFilterError("host %s has no vxlan_underlay_ip" % host)
        for endpoint in info.get("vxlan_endpoints") or []:
            if endpoint.get("network") not in known:
                raise AnsibleFilterError("host %s: endpoint %s is on unknown network %r (vxlan_networks has %s)"
                                         % (host, endpoint.get("address"), endpoint.get("network"), sorted(known)))
            view = _endpoint_view(host, str(underlay_ip), endpoint)
            for kind, key, seen in (("address", view["ip"], seen_ip), ("MAC", view["mac"], seen_mac)):
                if (view["network"], key) in seen:
                    raise AnsibleFilterError("network %s: %s %s is used twice (%s and %s)"
                                             % (view["network"], kind, key, seen[(view["network"], key)], host))
                seen[(view["network"], key)] = host
            result.append(view)
    return result


def compute_mesh(hosts: dict, networks: list, me: str) -> list[dict]:
    """This host's networks with flood, fdb and neighbour entries towards every other host."""
    if me not in hosts:
        raise AnsibleFilterError("host %s is not one of the overlay hosts" % me)
    endpoints = all_endpoints(hosts, networks)
    result = []
    for net in networks:
        bridge = net.get("bridge", "br1")
        mine = [dict(e, bridge=bridge) for e in endpoints if e["network"] == net["name"] and e["host"] == me]
        if not mine:
            continue
        remote = [e for e in endpoints if e["network"] == net["name"] and e["host"] != me]
        peers = sorted({e["vtep"] for e in remote}, key=ipaddress.ip_address)
        result.append({
            "name": net["name"],
            "vni": int(net["vni"]),
            "bridge": bridge,
            "vxlan_dev": net.get("vxlan_dev", "vxlan0"),
            "dstport": int(net.get("dstport", 4789)),
            "group": net.get("group"),
            "local": str(hosts[me]["vxlan_underlay_ip"]),
            "endpoints": mine,
            "remote_endpoints": remote,
            # Endpoints of the other networks: verify pings them to prove the VNIs never leak.
            "foreign_endpoints": [e for e in endpoints if e["network"] != net["name"]],
            "flood": [{"mac": "00:00:00:00:00:00", "dst": peer} for peer in peers],
            "fdb": [{"mac": e["mac"], "dst": e["vtep"]} for e in remote],
            "neigh": [{"ip": e["ip"], "lladdr": e["mac"]} for e in remote],
        })
    return result


def vxlan_mesh(hostvars, networks, overlay_hosts, host):
    hosts = {}
    for name in overlay_hosts:
        hv = hostvars[name]
        hosts[name] = {"vxlan_underlay_ip": hv.get("vxlan_underlay_ip"), "vxlan_endpoints": hv.get("vxlan_endpoints", [])}
    return compute_mesh(hosts, networks, host)


def in_subnet(ip: str, cidr: str) -> bool:
    """Whether `ip` lies in the network of the interface address `cidr` (100.0.0.2/24)."""
    address = ipaddress.ip_address(str(ip))
    network = ipaddress.ip_interface(str(cidr)).network
    return address.version == network.version and address in network


def vxlan_vm_mac(address, network=""):
    return vm_mac(str(address), str(network))


class FilterModule:
    def filters(self):
        return {"vxlan_mesh": vxlan_mesh, "vxlan_vm_mac": vxlan_vm_mac, "vxlan_in_subnet": in_subnet}
