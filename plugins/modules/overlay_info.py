#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: overlay_info
short_description: Read a host's VXLAN overlay - bridges, vxlan links, veth pairs, namespaces, fdb and neighbours
version_added: 0.1.0
description:
  - Reads, never changes, what the other overlay.vxlan modules manage, in the form they return
    it. Useful to check a host after a play, to feed C(assert) tasks, or to see what a host
    looks like before writing its inventory.
  - Everything is read through netlink (pyroute2); nothing runs C(ip) or C(bridge).
options:
  gather:
    description:
      - The sections to read. V(bridges), V(vxlan) and V(veth) are the links of O(netns) of that
        kind; V(namespaces) are the named namespaces under C(/run/netns) with their interfaces;
        V(fdb) and V(neigh) are the tables of the devices in O(dev).
      - V(interfaces) (not read by default) is every link of O(netns) itself, whatever its kind,
        with its MTU and addresses; playbooks/validate.yml checks the underlay device with it.
    type: list
    elements: str
    choices: [bridges, vxlan, veth, namespaces, fdb, neigh, interfaces]
    default: [bridges, vxlan, veth, namespaces, fdb, neigh]
  dev:
    description:
      - Devices (in O(netns)) whose forwarding (V(fdb), vxlan devices only) and neighbour
        (V(neigh)) entries are read. They must exist.
      - Left out, every vxlan device of O(netns).
    type: list
    elements: str
extends_documentation_fragment:
  - overlay.vxlan.netlink
attributes:
  check_mode:
    support: full
    description: Reads only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is no diff.
  idempotent:
    support: full
    description: Never reports a change.
author:
  - overlay.vxlan contributors (@overlay-vxlan)
"""

EXAMPLES = r"""
- name: Everything about the source's host (br1, vxlan0, tap1 <-> ns1/tap2)
  overlay.vxlan.overlay_info:
  register: overlay

- name: The VM's address, as its namespace has it
  ansible.builtin.assert:
    that:
      - "'100.0.0.2/24' in overlay.namespaces.ns1.interfaces.tap2.addresses"
      - overlay.bridges.br1.ports == ['tap1', 'vxlan0']
      - overlay.vxlan.vxlan0.dstport == 4789

- name: Only vxlan0's static fdb and ARP entries (the source's mode 3)
  overlay.vxlan.overlay_info:
    gather: [fdb, neigh]
    dev: [vxlan0]
  register: tables

- name: Inside a lab namespace
  overlay.vxlan.overlay_info:
    netns: lab-h1
    gather: [bridges, vxlan]
"""

RETURN = r"""
bridges:
  description: Bridges by name, as M(overlay.vxlan.linux_bridge) returns one.
  returned: when gathered
  type: dict
  sample: {br1: {name: br1, mtu: 1450, stp: false, vlan_filtering: false, ageing_time: 300, ports: [tap1, vxlan0], up: true}}
vxlan:
  description:
    - VXLAN devices by name with all their attributes (C(group) for a multicast destination,
      C(remote) for a unicast one, C(dev) the underlay, C(ageing) in seconds).
  returned: when gathered
  type: dict
  sample:
    vxlan0: {name: vxlan0, vni: 100, dstport: 4789, local: 192.168.1.4, group: 239.1.1.1, remote: null, dev: eth0,
             learning: true, proxy: false, l2miss: false, l3miss: false, ttl: 0, tos: 0, ageing: 300,
             udp_csum: false, udp6zerocsumtx: false, udp6zerocsumrx: false, mtu: 1450, master: br1, up: true}
veth:
  description:
    - veth ends by name, with their peer. C(namespace) is the peer's namespace name when it is
      under C(/run/netns); C(peer_nsid) is null when the peer is in the same namespace. C(peer)
      is null when the peer's namespace has no name.
  returned: when gathered
  type: dict
  sample:
    tap1: {name: tap1, peer: tap2, peer_ifindex: 2, peer_nsid: 0, namespace: ns1, master: br1, mtu: 1450,
           mac: "3a:e7:7a:19:79:60", up: true}
namespaces:
  description:
    - Named namespaces under C(/run/netns), each with its interfaces by name (kind, MAC, MTU, up,
      addresses without IPv6 link-local ones). A namespace removed while being read is left out.
  returned: when gathered
  type: dict
  sample:
    ns1:
      name: ns1
      interfaces:
        lo: {name: lo, kind: null, mac: "00:00:00:00:00:00", mtu: 65536, up: true, addresses: [127.0.0.1/8, "::1/128"]}
        tap2: {name: tap2, kind: veth, mac: "02:00:64:00:00:02", mtu: 1450, up: true, addresses: [100.0.0.2/24]}
fdb:
  description:
    - For each vxlan device of O(dev), its permanent C(self) entries (as M(overlay.vxlan.bridge_fdb)
      returns them) and how many other (kernel-learned) entries it has.
    - C(extern_learn) lists the C(self extern_learn) entries a control plane installed (FRR's
      zebra in C(vxlan_mode=evpn), every remote VM's MAC to its VTEP); they are also counted in
      C(learned).
  returned: when gathered
  type: dict
  sample: {vxlan0: {entries: [{mac: "00:00:00:00:00:00", dst: 192.168.1.2, vni: 100, port: 4789, via: null}], learned: 0, extern_learn: []}}
neigh:
  description: For each device of O(dev), its permanent neighbour entries and the others (learned, stale...).
  returned: when gathered
  type: dict
  sample: {vxlan0: {permanent: [{ip: 100.0.0.3, lladdr: "36:ae:ed:9d:22:aa"}], other: []}}
interfaces:
  description:
    - Every interface of O(netns) by name (kind, MAC, MTU, up, addresses without IPv6 link-local
      ones), in the form of the interfaces of RV(namespaces).
  returned: when gathered
  type: dict
  sample:
    eth0: {name: eth0, kind: veth, mac: "02:fa:c0:a8:01:02", mtu: 1500, up: true, addresses: [192.168.1.2/24]}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.overlay.vxlan.plugins.module_utils import _links as links
from ansible_collections.overlay.vxlan.plugins.module_utils import _tables as tables
from ansible_collections.overlay.vxlan.plugins.module_utils import _validate as v
from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import (
    InputError,
    NetlinkError,
    link_info_data,
    link_is_up,
    link_kind,
    list_netns,
    require_pyroute2,
    run_module,
)

SECTIONS = ["bridges", "vxlan", "veth", "namespaces", "fdb", "neigh"]
# Read only when asked for: the default result stays what it always was.
EXTRA_SECTIONS = ["interfaces"]
NUD_ALL = 0xFF


class Namespaces:
    """The named namespaces' links, each read at most once."""

    def __init__(self):
        self._links: dict[str, list] = {}

    def interfaces(self, name: str) -> dict | None:
        """Interfaces of namespace `name` by name, or None if it vanished or is not a namespace."""
        if name not in self._links:
            try:
                with links.open_session(name, "namespace") as ipr:
                    self._links[name] = {link.get_attr("IFLA_IFNAME"): links.interface_state(ipr, link) | {"index": link["index"]}
                                         for link in ipr.link("dump")}
            except (InputError, OSError, NetlinkError):
                self._links[name] = None
        return self._links[name]


def read_veth(ipr, all_links, names, spaces: Namespaces) -> dict:
    by_nsid = None
    result = {}
    for link in all_links:
        if link_kind(link) != "veth":
            continue
        peer_index, peer_nsid = links.veth_peer(link)
        namespace = peer = None
        if peer_nsid is None:
            peer = names.get(peer_index)
        else:
            if by_nsid is None:
                by_nsid = links.namespaces_by_nsid(ipr)
            namespace = by_nsid.get(peer_nsid)
            interfaces = spaces.interfaces(namespace) if namespace else None
            peer = next((i["name"] for i in (interfaces or {}).values() if i["index"] == peer_index), None)
        name = link.get_attr("IFLA_IFNAME")
        result[name] = {
            "name": name,
            "peer": peer,
            "peer_ifindex": peer_index,
            "peer_nsid": peer_nsid,
            "namespace": namespace,
            "master": names.get(link.get_attr("IFLA_MASTER")) if link.get_attr("IFLA_MASTER") else None,
            "mtu": link.get_attr("IFLA_MTU"),
            "mac": link.get_attr("IFLA_ADDRESS"),
            "up": link_is_up(link),
        }
    return result


def read_namespaces(spaces: Namespaces) -> dict:
    result = {}
    for name in list_netns():
        interfaces = spaces.interfaces(name)
        if interfaces is None:
            continue  # removed meanwhile (or a stale file): not a namespace any more
        result[name] = {"name": name, "interfaces": {ifname: {k: val for k, val in state.items() if k != "index"}
                                                     for ifname, state in sorted(interfaces.items())}}
    return result


def read_tables(netns, gather, targets, by_name, names) -> dict:
    result = {}
    with tables.nl.NeighSocket(netns) as sock:
        if "fdb" in gather:
            result["fdb"] = {}
            for dev in targets:
                link = by_name[dev]
                if link_kind(link) != "vxlan":
                    continue
                data = link_info_data(link)
                dev_vni, dev_port = data.get("IFLA_VXLAN_ID"), data.get("IFLA_VXLAN_PORT") or 8472
                permanent, learned = tables.read_fdb(sock, link["index"], dev_vni, dev_port, names)
                extern = tables.read_extern_learned(sock, link["index"], dev_vni, dev_port, names)
                result["fdb"][dev] = {"entries": [e.as_dict() for e in sorted(permanent)], "learned": learned,
                                      "extern_learn": [e.as_dict() for e in extern]}
        if "neigh" in gather:
            result["neigh"] = {}
            for dev in targets:
                index = by_name[dev]["index"]
                permanent = tables.read_neigh(sock, index, tables.nl.NUD_PERMANENT)
                other = tables.read_neigh(sock, index, NUD_ALL & ~tables.nl.NUD_PERMANENT)
                result["neigh"][dev] = {"permanent": [e.as_dict() for e in sorted(permanent)],
                                        "other": [e.as_dict() for e in sorted(other)]}
    return result


def manage(module) -> dict:
    params = module.params
    netns = v.netns_name("netns", params["netns"]) if params["netns"] is not None else None
    gather = [section for section in SECTIONS + EXTRA_SECTIONS if section in params["gather"]]
    devs = None
    if params["dev"] is not None:
        devs = [links.ifname("dev[%d]" % index, dev) for index, dev in enumerate(params["dev"])]
        v.no_duplicates("dev", devs)

    result = {"changed": False}
    spaces = Namespaces()
    with links.open_session(netns) as ipr:
        all_links = ipr.link("dump")
        names = links.names_by_index(all_links)
        by_name = {link.get_attr("IFLA_IFNAME"): link for link in all_links}
        for index, dev in enumerate(devs or []):
            if dev not in by_name:
                links.find_link(ipr, "dev[%d]" % index, dev)  # an alternative name gets its own message
                raise InputError("dev[%d]" % index, dev, "no such interface%s" % (" in namespace %s" % netns if netns else ""))
        if "bridges" in gather:
            result["bridges"] = {name: links.bridge_state(link, all_links) for name, link in sorted(by_name.items()) if link_kind(link) == "bridge"}
        if "vxlan" in gather:
            result["vxlan"] = {name: links.vxlan_state(link, names) for name, link in sorted(by_name.items()) if link_kind(link) == "vxlan"}
        if "veth" in gather:
            result["veth"] = dict(sorted(read_veth(ipr, all_links, names, spaces).items()))
        if "interfaces" in gather:
            result["interfaces"] = {name: links.interface_state(ipr, link) for name, link in sorted(by_name.items())}
    if "namespaces" in gather:
        result["namespaces"] = read_namespaces(spaces)
    if "fdb" in gather or "neigh" in gather:
        targets = devs if devs is not None else sorted(name for name, link in by_name.items() if link_kind(link) == "vxlan")
        result.update(read_tables(netns, gather, targets, by_name, names))
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            gather=dict(type="list", elements="str", choices=SECTIONS + EXTRA_SECTIONS, default=list(SECTIONS)),
            dev=dict(type="list", elements="str"),
            netns=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    require_pyroute2(module)
    run_module(module, lambda: manage(module))


if __name__ == "__main__":
    main()
