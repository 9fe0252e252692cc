#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: linux_bridge
short_description: Manage a Linux bridge
version_added: 0.1.0
description:
  - Creates, changes or removes a Linux bridge, what C(brctl addbr br1) / C(ip link add br1 type
    bridge) and C(ip link set br1 up) do, and keeps it up.
  - Options left out are not managed; the kernel's value (or the bridge's current one) stays.
  - Ports are attached by the modules that own them (M(overlay.vxlan.netns_veth) with
    O(overlay.vxlan.netns_veth#module:master), M(overlay.vxlan.vxlan_link) with
    O(overlay.vxlan.vxlan_link#module:master)); this module only reports them.
options:
  name:
    description: The bridge's name, e.g. C(br1). At most 15 characters, no C(/), C(:) or whitespace.
    type: str
    required: true
  state:
    description:
      - V(present) creates the bridge if needed, applies the options and brings it up.
      - V(absent) deletes it; its ports are released, not deleted.
      - An existing interface of that name that is not a bridge is never touched; the task fails.
    type: str
    choices: [present, absent]
    default: present
  mtu:
    description:
      - The bridge's MTU (68..65535).
      - Set explicitly, it sticks; left out, the kernel keeps the bridge at the smallest MTU of
        its ports.
    type: int
  stp:
    description: Run the spanning tree protocol (C(stp_state)). The kernel's default is off.
    type: bool
  vlan_filtering:
    description:
      - VLAN-aware bridge (C(vlan_filtering)). The kernel's default is off.
      - Needs a kernel built with C(CONFIG_BRIDGE_VLAN_FILTERING); otherwise asking for V(true) fails
        with the kernel's C(Operation not supported) and nothing is changed.
    type: bool
  ageing_time:
    description:
      - How long a learned MAC stays in the bridge's forwarding table, in B(seconds) (0..1000000).
      - C(ip link ... type bridge ageing_time) takes centiseconds; this option is seconds, so
        V(300) here is C(ageing_time 30000) there. The kernel's default is 300 seconds.
    type: int
  addresses:
    description:
      - The bridge's own addresses (CIDR, IPv4 and IPv6), what C(ip addr add 100.0.0.254/24 dev br1)
        does, making the bridge an interface of the host in the overlay network (an SVI). EVPN's ARP/ND
        suppression needs one - FRR's zebra learns the VMs' MAC+IP from the bridge's neighbour table
        and installs the remote ones there, where the bridge answers ARP requests from.
      - Exactly this set when given (missing ones added, others removed); V([]) removes every
        address. Left out, the bridge's addresses are not managed.
      - IPv6 link-local addresses are the kernel's and are neither accepted nor compared.
    type: list
    elements: str
    version_added: 0.2.0
  mac:
    description:
      - The bridge's MAC address, what C(ip link set br1 address 02:00:64:00:00:fe) does; a unicast MAC,
        any case and separator (C(02-00-64-00-00-FE)), compared in lower-case colon form.
      - Pinned this way, the MAC stays when ports come and go. Left to the kernel, a bridge takes the
        smallest MAC of its ports, and changes it when that port leaves - EVPN peers that learned the
        bridge's MAC (its SVI's type-2 route, the gateway MAC the VMs ARP for) are then wrong until they
        learn it again.
      - Left out, the MAC is not managed (and not reported).
    type: str
    version_added: 0.2.0
extends_documentation_fragment:
  - overlay.vxlan.netlink
author:
  - overlay.vxlan contributors (@overlay-vxlan)
"""

EXAMPLES = r"""
- name: The source's bridge (brctl addbr br1; ip link set br1 up)
  overlay.vxlan.linux_bridge:
    name: br1

- name: Bridge with explicit settings
  overlay.vxlan.linux_bridge:
    name: br1
    mtu: 1450
    stp: false
    ageing_time: 300  # seconds (ip link's ageing_time 30000)

- name: Inside a lab namespace
  overlay.vxlan.linux_bridge:
    netns: lab-h1
    name: br1

- name: The bridge with an address in the overlay (EVPN's SVI; ip addr add 100.0.0.254/24 dev br1)
  overlay.vxlan.linux_bridge:
    name: br1
    mtu: 1450
    addresses: [100.0.0.254/24]

- name: A pinned MAC (ip link set br1 address 02:00:64:00:00:fe), kept when ports come and go
  overlay.vxlan.linux_bridge:
    name: br1
    mac: 02:00:64:00:00:fe

- name: Remove it (tap1 and vxlan0 are released, not deleted)
  overlay.vxlan.linux_bridge:
    name: br1
    state: absent
"""

RETURN = r"""
bridge:
  description: The bridge after the task (in check mode, as it would be); empty when absent.
  returned: success
  type: dict
  contains:
    name:
      description: Bridge name.
      type: str
    mtu:
      description: MTU.
      type: int
    stp:
      description: Whether STP runs.
      type: bool
    vlan_filtering:
      description: Whether the bridge is VLAN-aware.
      type: bool
    ageing_time:
      description: MAC ageing time in seconds.
      type: int
    ports:
      description: Names of the interfaces enslaved to the bridge, sorted.
      type: list
      elements: str
    up:
      description: Whether the bridge is administratively up.
      type: bool
    addresses:
      description: The bridge's addresses (CIDR; IPv4 first, IPv6 link-local left out).
      type: list
      elements: str
    mac:
      description: The bridge's MAC (lower-case), when the task manages it (O(mac) given).
      type: str
      returned: when O(mac) is given
  sample:
    name: br1
    mtu: 1500
    stp: false
    vlan_filtering: false
    ageing_time: 300
    ports: [tap1, vxlan0]
    up: true
    addresses: [100.0.0.254/24]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.overlay.vxlan.plugins.module_utils._linux_bridge import SPEC, manage
from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import require_pyroute2, run_module


def main() -> None:
    module = AnsibleModule(**SPEC)
    require_pyroute2(module)
    run_module(module, lambda: manage(module))


if __name__ == "__main__":
    main()
