#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: vxlan_link
short_description: Manage a Linux VXLAN device
version_added: 0.1.0
description:
  - Creates, changes or removes a VXLAN device, what
    C(ip link add vxlan0 type vxlan id 100 dstport 4789 group 239.1.1.1 local 192.168.1.4 dev eth0)
    followed by C(ip link set vxlan0 master br1) and C(ip link set vxlan0 up) do.
  - Attributes the kernel changes in place (O(learning), O(ttl), O(tos), O(ageing), O(mtu),
    O(master)) are changed in place. Any other difference (O(vni), O(dstport), O(group),
    O(remote), O(local), O(dev), O(proxy), O(l2miss), O(l3miss)) makes the module recreate the
    device; it stays in its bridge, the diff says so and the result has RV(recreated=true).
    A recreated device has an empty forwarding table, so run M(overlay.vxlan.bridge_fdb) and
    M(overlay.vxlan.ip_neigh) after this module.
  - O(port_learning) and O(neigh_suppress) are flags of the device's port in O(master), set
    through netlink (C(IFLA_BRPORT_LEARNING), C(IFLA_BRPORT_NEIGH_SUPPRESS)), never with
    C(bridge link).
  - The UDP port is always set explicitly (the kernel's default, 8472, is not the IANA 4789).
options:
  name:
    description: Device name, e.g. C(vxlan0).
    type: str
    required: true
  state:
    description: Whether the device exists.
    type: str
    choices: [present, absent]
    default: present
  vni:
    description: VXLAN network identifier, 1..16777215. Required with O(state=present).
    type: int
  dstport:
    description: Destination UDP port.
    type: int
    default: 4789
  local:
    description:
      - Source (VTEP) address. Set it, because if the kernel picks another source than the one peers
        were told, their permanent entries drop every frame. It must be an address of the host.
    type: str
  group:
    description: Multicast group for flooding and learning (the source's mode 1).
    type: str
  remote:
    description: A single unicast remote VTEP as the default destination.
    type: str
  dev:
    description: Underlay device, e.g. C(eth0). It must exist.
    type: str
  learning:
    description: Kernel learning of remote MAC -> VTEP pairs on this device.
    type: bool
    default: true
  proxy:
    description: Answer ARP/NDP from the device's neighbour table (ARP proxy).
    type: bool
    default: false
  l2miss:
    description: Send a netlink notification when no VTEP is known for a MAC (DOVE).
    type: bool
    default: false
  l3miss:
    description: Send a netlink notification when no MAC is known for an IP (DOVE).
    type: bool
    default: false
  ttl:
    description: TTL of the outer packets, 0..255 (unset keeps the kernel's default).
    type: int
  tos:
    description: TOS of the outer packets, 0..255 (unset keeps the kernel's default).
    type: int
  ageing:
    description: Lifetime in seconds of learned fdb entries (unset keeps the kernel's 300).
    type: int
  mtu:
    description:
      - Device MTU. Default is the underlay's MTU minus the encapsulation overhead (50 bytes over
        IPv4, 70 over IPv6), so the overlay never fragments. A larger value is refused.
    type: int
  master:
    description: Bridge to enslave the device to, e.g. C(br1). It must exist.
    type: str
  port_learning:
    description:
      - Learning on the device's port in O(master) (C(bridge link set dev vxlan0 learning off)), a
        setting separate from the device's own O(learning). Changed in place; unset keeps what the
        port has (a new port learns). Needs O(master).
      - EVPN sets it off (the control plane installs the remote entries).
    type: bool
    version_added: 0.2.0
  neigh_suppress:
    description:
      - ARP/ND suppression on the device's port in O(master) (C(bridge link set dev vxlan0
        neigh_suppress on)) - the bridge answers requests for addresses it knows instead of
        flooding them over the overlay. Changed in place; unset keeps what the port has (a new
        port has it off). Needs O(master).
    type: bool
    version_added: 0.2.0
extends_documentation_fragment:
  - overlay.vxlan.netlink
author:
  - overlay.vxlan contributors (@overlay-vxlan)
"""

EXAMPLES = r"""
- name: Multicast mode on h3 (the source's mode 1)
  overlay.vxlan.vxlan_link:
    name: vxlan0
    vni: 100
    dstport: 4789
    group: 239.1.1.1
    local: 192.168.1.4
    dev: eth0
    master: br1

- name: Static mode (the source's mode 3) - no learning, ARP proxy
  overlay.vxlan.vxlan_link:
    name: vxlan0
    vni: 100
    local: 192.168.1.4
    dev: eth0
    learning: false
    proxy: true
    master: br1

- name: DOVE mode (the source's mode 4)
  overlay.vxlan.vxlan_link:
    name: vxlan0
    vni: 100
    local: 192.168.1.4
    dev: eth0
    learning: false
    proxy: true
    l2miss: true
    l3miss: true
    master: br1

- name: EVPN mode - no learning, ARP suppressed on the bridge port (FRR's zebra installs the entries)
  overlay.vxlan.vxlan_link:
    name: vxlan0
    vni: 100
    local: 192.168.1.4
    dev: eth0
    learning: false
    master: br1
    port_learning: false
    neigh_suppress: true

- name: Remove it
  overlay.vxlan.vxlan_link:
    name: vxlan0
    state: absent
"""

RETURN = r"""
link:
  description: The device after the task (in check mode, as it would be); empty when absent.
  returned: success
  type: dict
  sample:
    name: vxlan0
    vni: 100
    dstport: 4789
    local: 192.168.1.4
    group: 239.1.1.1
    remote: null
    dev: eth0
    learning: true
    proxy: false
    l2miss: false
    l3miss: false
    ttl: 0
    tos: 0
    ageing: 300
    mtu: 1450
    master: br1
    port_learning: true
    neigh_suppress: false
    up: true
recreated:
  description: Whether the device was (or in check mode would be) deleted and created again.
  returned: success
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import require_pyroute2, run_module
from ansible_collections.overlay.vxlan.plugins.module_utils._vxlan_link import SPEC, manage


def main() -> None:
    module = AnsibleModule(**SPEC)
    require_pyroute2(module)
    run_module(module, lambda: manage(module))


if __name__ == "__main__":
    main()
