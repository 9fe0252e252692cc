#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: ip_neigh
short_description: Manage neighbour (ARP/NDP) entries of a device, e.g. a VXLAN ARP proxy table
version_added: 0.1.0
description:
  - Adds, removes or enforces the neighbour entries of one device, the entries
    C(ip neigh add 100.0.0.3 lladdr 36:ae:ed:9d:22:aa dev vxlan0) makes.
  - On a VXLAN device created with C(proxy), these entries let the local VTEP answer the VMs' ARP
    requests itself, so nothing is flooded (the source's mode 3).
  - An entry is keyed by IP on the device; a known IP with a new O(entries[].lladdr) is replaced.
  - Reads the device's table once and applies every change in one pipelined netlink session.
options:
  dev:
    description: The device the entries belong to, e.g. C(vxlan0). It must exist.
    type: str
    required: true
  entries:
    description: The neighbour entries. With O(state=exact), the complete set.
    type: list
    elements: dict
    default: []
    suboptions:
      ip:
        description: The neighbour's IPv4 or IPv6 address (no prefix).
        type: str
        required: true
      lladdr:
        description:
          - Its unicast MAC, any case. Required unless O(state=absent), where an entry is
            removed only if it still has this MAC.
        type: str
  nud:
    description:
      - Neighbour state to install and to manage. Only entries in this state are compared and,
        with O(state=exact), purged; dynamic entries the kernel resolved are left alone.
    type: str
    choices: [permanent, noarp, reachable, stale]
    default: permanent
  state:
    description:
      - V(present) adds missing entries and replaces entries whose MAC changed.
      - V(absent) removes the listed entries.
      - V(exact) also removes every other entry in state O(nud) on O(dev), on that device only.
    type: str
    choices: [present, absent, exact]
    default: present
extends_documentation_fragment:
  - overlay.vxlan.netlink
author:
  - overlay.vxlan contributors (@overlay-vxlan)
"""

EXAMPLES = r"""
- name: ARP proxy entries on h1 for the other two VMs (the source's mode 3)
  overlay.vxlan.ip_neigh:
    dev: vxlan0
    state: exact
    entries:
      - {ip: 100.0.0.3, lladdr: "36:ae:ed:9d:22:aa"}
      - {ip: 100.0.0.4, lladdr: "4e:11:78:36:da:e7"}

- name: Forget one VM
  overlay.vxlan.ip_neigh:
    dev: vxlan0
    state: absent
    entries:
      - {ip: 100.0.0.4}
"""

RETURN = r"""
entries:
  description: The device's entries in state O(nud) after the task (in check mode, as they would be).
  returned: success
  type: list
  elements: dict
  sample: [{ip: 100.0.0.3, lladdr: "36:ae:ed:9d:22:aa"}]
added:
  description: Entries added or replaced, as C(ip neigh) would print them.
  returned: success
  type: list
  elements: str
  sample: ["100.0.0.3 lladdr 36:ae:ed:9d:22:aa"]
removed:
  description: Entries removed, including the old side of a replaced one.
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.overlay.vxlan.plugins.module_utils._ip_neigh import SPEC, manage
from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import require_pyroute2, run_module


def main() -> None:
    module = AnsibleModule(**SPEC)
    require_pyroute2(module)
    run_module(module, lambda: manage(module))


if __name__ == "__main__":
    main()
