#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: netns_veth
short_description: Simulate a VM with a network namespace and a veth pair
version_added: 0.1.0
description:
  - Makes the source's simulated virtual machine, a network namespace O(namespace) holding one end of a
    veth pair (O(peer), with its addresses and MAC), the other end (O(name)) on the bridge
    O(master). This is C(ip netns add ns1; ip link add tap1 type veth peer name tap2; ip link set
    tap2 netns ns1; brctl addif br1 tap1; ip netns exec ns1 ip addr add 100.0.0.2/24 dev tap2) and
    bringing C(tap1), C(tap2) and the namespace's C(lo) up.
  - The pair is created with O(peer) directly inside O(namespace), so no transient interface
    appears in the host's namespace.
  - An existing O(name) whose veth peer is not O(peer) inside O(namespace) (or that is not a
    veth) is never recreated or changed; the task fails and says where its peer is.
  - O(netns) (from the shared options) is where the host end O(name) and O(master) live;
    O(namespace) is the VM's namespace. Both are names under C(/run/netns).
options:
  namespace:
    description:
      - The VM's network namespace, a name under C(/run/netns) (e.g. C(ns1)).
      - Created when missing with O(state=present) (and removed again if the task then fails).
    type: str
    required: true
  name:
    description: The host end of the pair, e.g. C(tap1).
    type: str
    required: true
  peer:
    description:
      - The end inside O(namespace), e.g. C(tap2). Required with O(state=present).
      - With O(state=absent), if given, the pair is only removed when its peer has this name.
    type: str
  master:
    description:
      - The bridge the host end is attached to, e.g. C(br1). It must exist (see
        M(overlay.vxlan.linux_bridge)); it is never created here.
      - Left out, the host end's bridge membership is not managed.
    type: str
  addresses:
    description:
      - Addresses with prefix (CIDR) on O(peer), IPv4 and IPv6, e.g. C(100.0.0.2/24).
      - This is the exact set, other addresses on O(peer) are removed. IPv6 link-local addresses are
        the kernel's and are neither listed here nor removed.
      - Left out, the addresses are not managed; V([]) removes them all.
    type: list
    elements: str
  mac:
    description:
      - The MAC of O(peer) (a unicast address, any case, C(:) or C(-) separated). Left out, the
        kernel picks a random one at creation and it is not managed afterwards.
    type: str
  mtu:
    description:
      - MTU of both ends (68..65535; at least 1280 when O(peer) has IPv6 addresses). Left out,
        not managed (a new pair gets 1500).
    type: int
  state:
    description:
      - V(present) creates or converges the pair and brings both ends and the namespace's C(lo) up.
      - V(absent) deletes the pair (deleting one end of a veth deletes both).
    type: str
    choices: [present, absent]
    default: present
  namespace_state:
    description:
      - With O(state=absent), V(absent) also removes O(namespace) if nothing but C(lo) is left in
        it; a namespace still holding other interfaces is kept, with a warning.
      - V(absent) with O(state=present) is an error.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - overlay.vxlan.netlink
author:
  - overlay.vxlan contributors (@overlay-vxlan)
"""

EXAMPLES = r"""
- name: The source's VM on every host (ns1 with tap2 = 100.0.0.2/24, tap1 on br1)
  overlay.vxlan.netns_veth:
    namespace: ns1
    name: tap1
    peer: tap2
    master: br1
    addresses: [100.0.0.2/24]
    mac: "02:00:64:00:00:02"
    mtu: 1450

- name: Dual stack
  overlay.vxlan.netns_veth:
    namespace: ns1
    name: tap1
    peer: tap2
    master: br1
    addresses: [100.0.0.2/24, "fd00:100::2/64"]

- name: Host end inside a lab namespace (where br1 lives), the VM in ns1
  overlay.vxlan.netns_veth:
    netns: lab-h1
    namespace: ns1
    name: tap1
    peer: tap2
    master: br1

- name: Remove the VM, and its namespace once empty
  overlay.vxlan.netns_veth:
    namespace: ns1
    name: tap1
    state: absent
    namespace_state: absent
"""

RETURN = r"""
veth:
  description: The pair after the task (in check mode, as it would be); empty when absent.
  returned: success
  type: dict
  contains:
    name:
      description: Host end.
      type: str
    peer:
      description: End inside O(namespace).
      type: str
    namespace:
      description: The VM's namespace.
      type: str
    master:
      description: Bridge of the host end, or null.
      type: str
    mtu:
      description: MTU of the host end.
      type: int
    peer_mtu:
      description: MTU of the peer.
      type: int
    mac:
      description: MAC of the peer (null in check mode when a new pair would get a random one).
      type: str
    addresses:
      description: Addresses of the peer, IPv4 then IPv6, IPv6 link-local left out.
      type: list
      elements: str
    up:
      description: Whether both ends and the namespace's C(lo) are up.
      type: bool
  sample:
    name: tap1
    peer: tap2
    namespace: ns1
    master: br1
    mtu: 1450
    peer_mtu: 1450
    mac: "02:00:64:00:00:02"
    addresses: [100.0.0.2/24]
    up: true
namespace_exists:
  description: Whether O(namespace) exists after the task.
  returned: success
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import require_pyroute2, run_module
from ansible_collections.overlay.vxlan.plugins.module_utils._netns_veth import SPEC, manage


def main() -> None:
    module = AnsibleModule(**SPEC)
    require_pyroute2(module)
    run_module(module, lambda: manage(module))


if __name__ == "__main__":
    main()
