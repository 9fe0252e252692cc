#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: bridge_fdb
short_description: Manage the forwarding entries (fdb) of a VXLAN device
version_added: 0.1.0
description:
  - Adds, removes or enforces the permanent C(self) forwarding entries of a Linux VXLAN device,
    the entries C(bridge fdb append ... dev vxlan0 dst ...) makes.
  - Several C(00:00:00:00:00:00) entries with different O(entries[].dst) coexist; together they are the
    unicast flood list (head-end replication). A unicast MAC points to one VTEP; when it moves,
    its entry is replaced in place.
  - An entry's identity is (mac, dst, vni, port, via) after normalisation, never the MAC alone.
  - Reads the device's table once, diffs in memory and applies every change in one pipelined
    netlink session, so tables of tens of thousands of entries converge in well under a second.
options:
  dev:
    description: The VXLAN device, e.g. C(vxlan0). It must exist.
    type: str
    required: true
  entries:
    description:
      - The forwarding entries. With O(state=exact), the complete set.
    type: list
    elements: dict
    default: []
    suboptions:
      mac:
        description:
          - Destination MAC, any case, C(:) or C(-) separated. C(00:00:00:00:00:00) is the
            flood-list (default) entry; multicast MACs are refused.
        type: str
        required: true
      dst:
        description: Underlay IP of the remote VTEP (same family as the device's underlay).
        type: str
        required: true
      vni:
        description: Remote VNI, when it differs from the device's (1..16777215).
        type: int
      port:
        description: Remote UDP port, when it differs from the device's C(dstport).
        type: int
      via:
        description: Outgoing underlay interface for this remote.
        type: str
  state:
    description:
      - V(present) adds missing entries (and repoints a moved unicast MAC).
      - V(absent) removes the listed entries.
      - V(exact) also removes every other permanent self entry on O(dev), except the default
        entry the device's own C(group)/C(remote) created. Kernel-learned entries are never
        touched.
    type: str
    choices: [present, absent, exact]
    default: present
extends_documentation_fragment:
  - overlay.vxlan.netlink
author:
  - overlay.vxlan contributors (@overlay-vxlan)
"""

EXAMPLES = r"""
- name: Unicast flood list on h3 (the source's mode 2)
  overlay.vxlan.bridge_fdb:
    dev: vxlan0
    entries:
      - {mac: "00:00:00:00:00:00", dst: 192.168.1.2}
      - {mac: "00:00:00:00:00:00", dst: 192.168.1.3}

- name: Static full mesh (the source's mode 3); remove anything else we once added
  overlay.vxlan.bridge_fdb:
    dev: vxlan0
    state: exact
    entries:
      - {mac: "36:ae:ed:9d:22:aa", dst: 192.168.1.2}
      - {mac: "4e:11:78:36:da:e7", dst: 192.168.1.3}

- name: Inside a network namespace
  overlay.vxlan.bridge_fdb:
    netns: lab-h1
    dev: vxlan0
    entries: "{{ vxlan_fdb_entries }}"
"""

RETURN = r"""
entries:
  description: The device's permanent self entries after the task (in check mode, as they would be).
  returned: success
  type: list
  elements: dict
  sample: [{mac: "00:00:00:00:00:00", dst: 192.168.1.2, vni: 100, port: 4789, via: null}]
added:
  description: Entries added or repointed, as C(bridge fdb) would print them.
  returned: success
  type: list
  elements: str
  sample: ["00:00:00:00:00:00 dst 192.168.1.3"]
removed:
  description: Entries removed (including the old side of a repointed MAC).
  returned: success
  type: list
  elements: str
learned:
  description: Number of kernel-learned (non-permanent) entries on the device; never modified.
  returned: success
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.overlay.vxlan.plugins.module_utils._bridge_fdb import SPEC, manage
from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import require_pyroute2, run_module


def main() -> None:
    module = AnsibleModule(**SPEC)
    require_pyroute2(module)
    run_module(module, lambda: manage(module))


if __name__ == "__main__":
    main()
