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
      - For large tables use O(rows), the same entries in a compact form; the two are mutually exclusive.
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
  rows:
    description:
      - The forwarding entries in compact form, instead of O(entries); mutually exclusive with it.
      - One string per entry, C(MAC DST [vni VNI] [port PORT] [via IFNAME]), words separated by
        spaces, with the meaning and checks of O(entries[].mac), O(entries[].dst),
        O(entries[].vni), O(entries[].port) and O(entries[].via). C(MAC dst DST ...), the words
        of C(bridge fdb) and of RV(added), is accepted too.
      - Either a list of such strings or one string with one entry per line (blank lines and
        lines starting with C(#) are skipped). One string is the cheapest for the controller,
        which templates a list element by element (docs/benchmarks.md, "Fleet scale").
      - The module checks every row itself, in one pass, before it reads or changes anything; a
        bad row fails the task naming its index and value, e.g. C(rows[3].mac='02:aa').
        Ansible's per-entry suboption validation, the cost of O(entries) for 10,000 entries, is
        not involved.
    type: raw
  return_entries:
    description:
      - Also return RV(entries), the whole table after the task. By default the result only
        summarises (RV(counts), RV(added), RV(removed)), which keeps a large table's result cheap.
    type: bool
    default: false
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

- name: A large static mesh in compact rows (one string, one entry per line)
  overlay.vxlan.bridge_fdb:
    dev: vxlan0
    state: exact
    rows: |
      36:ae:ed:9d:22:aa 192.168.1.2
      4e:11:78:36:da:e7 192.168.1.3 vni 200 port 8472

- name: Inside a network namespace
  overlay.vxlan.bridge_fdb:
    netns: lab-h1
    dev: vxlan0
    entries: "{{ vxlan_fdb_entries }}"
"""

RETURN = r"""
entries:
  description: The device's permanent self entries after the task (in check mode, as they would be).
  returned: success, when O(return_entries=true)
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
counts:
  description: How many permanent self entries the device has after the task, and how many were added and removed.
  returned: success
  type: dict
  sample: {entries: 10000, added: 2, removed: 1}
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
