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
    description:
      - The neighbour entries. With O(state=exact), the complete set.
      - For large tables use O(rows), the same entries in a compact form; the two are mutually exclusive.
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
  rows:
    description:
      - The neighbour entries in compact form, instead of O(entries); mutually exclusive with it.
      - One string per entry, C(IP LLADDR) (C(IP lladdr LLADDR), the words of C(ip neigh) and of
        RV(added), is accepted too; C(IP) alone with O(state=absent)), with the meaning and
        checks of O(entries[].ip) and O(entries[].lladdr).
      - Either a list of such strings or one string with one entry per line (blank lines and
        lines starting with C(#) are skipped). One string is the cheapest for the controller,
        which templates a list element by element (docs/benchmarks.md, "Fleet scale").
      - The module checks every row itself, in one pass, before it reads or changes anything; a
        bad row fails the task naming its index and value, e.g. C(rows[3].ip='100.0.0').
        Ansible's per-entry suboption validation, the cost of O(entries) for 10,000 entries, is
        not involved.
    type: raw
  return_entries:
    description:
      - Also return RV(entries), the whole table after the task. By default the result only
        summarises (RV(counts), RV(added), RV(removed)), which keeps a large table's result cheap.
    type: bool
    default: false
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

- name: A large ARP-proxy table in compact rows
  overlay.vxlan.ip_neigh:
    dev: vxlan0
    state: exact
    rows:
      - 100.0.0.3 36:ae:ed:9d:22:aa
      - 100.0.0.4 4e:11:78:36:da:e7

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
  returned: success, when O(return_entries=true)
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
counts:
  description: How many entries in state O(nud) the device has after the task, and how many were added and removed.
  returned: success
  type: dict
  sample: {entries: 10000, added: 2, removed: 1}
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
