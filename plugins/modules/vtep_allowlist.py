#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: vtep_allowlist
short_description: Accept VXLAN only from the overlay's VTEPs (an nftables table of its own)
version_added: 0.2.0
description:
  - VXLAN has no authentication; any host that can send UDP to a VTEP's port with a matching VNI
    can put frames into the tenant's network. This module keeps the nftables table
    C(inet overlay_vxlan) (O(table)), which accepts datagrams to the O(ports) only from the
    O(members), and drops the rest, counting them.
  - A member with a O(members[].mac) is accepted only from that MAC (its underlay device's, on a
    shared L2 underlay); a datagram carrying a member's address from another MAC is dropped and
    counted as C(spoofed). Without a MAC (or with O(bind_mac=false), for a routed underlay, where
    every datagram arrives from a router's MAC) the member is accepted by source address alone.
  - Everything else sent to the ports is dropped and counted as C(foreign), also what arrives
    over the loopback device C(lo). The kernel never sends VXLAN over it, so only a local
    process can (any user may send to C(127.0.0.1:4789), or to the host's own underlay address,
    a member's). Traffic to other ports, and the host's other nftables tables, are not touched.
  - With O(bgp_filter) (vxlan_mode=evpn), TCP segments to port 179 (BGP) are accepted only from the
    O(bgp_peers), the addresses this host's bgpd is configured to peer with; the rest, also what
    arrives over C(lo), is dropped and counted as C(bgp_foreign), so no other host gets a TCP
    connection to bgpd at all. Only the destination port is matched, so the replies to the
    sessions this host opens itself (source port 179) pass without conntrack state. Without
    O(bgp_filter) TCP port 179 is not filtered.
  - The table's sets are updated element by element when the members change (no moment without
    the filter, counters kept); a table whose sets, chains or rules were changed by hand is
    replaced in the same transaction.
options:
  members:
    description: The VTEPs allowed to send VXLAN to this host (IPv4 and IPv6 may be mixed).
    type: list
    elements: dict
    default: []
    suboptions:
      address:
        description: The member's underlay (VTEP) address.
        type: str
        required: true
      mac:
        description: The MAC the member's datagrams come from (its underlay device's).
        type: str
  ports:
    description: The VXLAN UDP ports to filter (the networks' C(dstport)).
    type: list
    elements: int
    default: [4789]
  bgp_filter:
    description:
      - Filter TCP port 179 (BGP) too, accepting only the O(bgp_peers).
      - V(false) leaves BGP alone (every mode but evpn); O(bgp_peers) must then be empty.
      - Switching it on or off updates the table's sets in place (counters kept).
    type: bool
    default: false
  bgp_peers:
    description:
      - The addresses allowed to connect to TCP port 179 (IPv4 and IPv6 may be mixed), the
        neighbours of this host's bgpd.
      - Role overlay.vxlan.allowlist passes the peers role overlay.vxlan.evpn configures (filter
        C(overlay.vxlan.evpn_peers)). Empty with O(bgp_filter) drops every BGP connection, with a warning.
    type: list
    elements: str
    default: []
  bind_mac:
    description:
      - Bind each member's address to its O(members[].mac). A member without a MAC is then
        accepted by address alone, with a warning.
      - V(false) for a routed underlay; MACs are ignored.
    type: bool
    default: true
  table:
    description: Name of the nftables table (family C(inet)) this module owns.
    type: str
    default: overlay_vxlan
  state:
    description: V(present) keeps the table as described; V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  netns:
    description:
      - Operate inside this existing network namespace (a name under C(/run/netns) or an absolute
        path to a pinned namespace file) instead of the namespace Ansible runs in.
      - A missing namespace is an error; it is never created implicitly.
    type: str
attributes:
  check_mode:
    support: full
    description: Computes C(changed) and the diff; the transaction is checked by the kernel (C(nft --check)) and not applied.
  diff_mode:
    support: full
    description: Returns the ports, members, BGP filter and BGP peers before and after.
  idempotent:
    support: full
    description: A second run with the same parameters reports no change.
requirements:
  - nftables and the libnftables Python binding on the managed host (Debian C(nftables), C(python3-nftables));
    a Python that cannot import it (a virtualenv) loads it from C(/usr/lib/python3/dist-packages/nftables)
  - root (CAP_NET_ADMIN) on the managed host
notes:
  - Talks to nftables through libnftables; never runs C(nft).
  - What it does not stop, and what needs encryption, is in the collection's docs/security.md.
author:
  - overlay.vxlan contributors (@overlay-vxlan)
"""

EXAMPLES = r"""
- name: Only h1, h2 and h3 may send VXLAN to this host, each from its own underlay MAC
  overlay.vxlan.vtep_allowlist:
    ports: [4789]
    members:
      - {address: 192.168.1.2, mac: "02:fa:c0:a8:01:02"}
      - {address: 192.168.1.3, mac: "02:fa:c0:a8:01:03"}
      - {address: 192.168.1.4, mac: "02:fa:c0:a8:01:04"}

- name: Routed underlay - by address only
  overlay.vxlan.vtep_allowlist:
    bind_mac: false
    members: [{address: "2001:db8:1::2"}, {address: "2001:db8:2::3"}]

- name: EVPN - also accept BGP only from the route reflectors
  overlay.vxlan.vtep_allowlist:
    members: [{address: 192.168.1.2}, {address: 192.168.1.3}, {address: 192.168.1.4}]
    bind_mac: false
    bgp_filter: true
    bgp_peers: [192.168.1.10, 192.168.1.11]

- name: Remove the allow-list
  overlay.vxlan.vtep_allowlist:
    state: absent
"""

RETURN = r"""
table:
  description: The table the module owns.
  returned: success
  type: str
  sample: inet overlay_vxlan
counters:
  description: The drop counters after the task (before it, in check mode); empty when absent.
  returned: success
  type: dict
  sample: {foreign: {packets: 3, bytes: 354}, spoofed: {packets: 1, bytes: 118}, bgp_foreign: {packets: 2, bytes: 120}}
commands:
  description: The nftables commands of the one transaction applied (or, in check mode, checked).
  returned: success
  type: list
  elements: str
  sample: ["add element inet overlay_vxlan members4 { 192.168.1.5 }"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import run_module
from ansible_collections.overlay.vxlan.plugins.module_utils._validate import OverlayError
from ansible_collections.overlay.vxlan.plugins.module_utils._vtep_allowlist import SPEC, manage


def main() -> None:
    module = AnsibleModule(**SPEC)

    def body():
        try:
            return manage(module)
        except OverlayError as exc:
            if getattr(exc, "field", None):
                raise
            module.fail_json(msg=exc.msg, changed=False)

    run_module(module, body)


if __name__ == "__main__":
    main()
