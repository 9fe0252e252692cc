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
  - overlay.vxlan contributors
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

from ansible_collections.overlay.vxlan.plugins.module_utils import _tables as tables
from ansible_collections.overlay.vxlan.plugins.module_utils import _validate as v
from ansible_collections.overlay.vxlan.plugins.module_utils._fastnl import NUD_NAMES
from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import (
    InputError,
    require_link,
    require_pyroute2,
    run_module,
    session,
)


def validate_entries(raw_entries: list, state: str) -> list[tables.NeighEntry]:
    """Normalise every entry before anything is read or changed; fail on the first bad one."""
    result = []
    for index, raw in enumerate(raw_entries):
        field = "entries[%d]" % index
        # IPv4 (ARP) and IPv6 (NDP) entries may be mixed: a dual-stack overlay needs both on
        # the same device, and state=exact must be able to hold both.
        ip = v.unicast_ip(field + ".ip", raw.get("ip"))
        if raw.get("lladdr") is None:
            if state != "absent":
                raise InputError(field + ".lladdr", None, "is required unless state=absent")
            lladdr = None
        else:
            lladdr = v.mac(field + ".lladdr", raw["lladdr"], unicast=True)
        result.append(tables.NeighEntry(ip, lladdr))
    v.no_duplicates("entries", [entry.ip for entry in result])
    return result


def manage(module) -> dict:
    params = module.params
    netns = v.netns_name("netns", params["netns"]) if params["netns"] is not None else None
    dev = v.ifname("dev", params["dev"])
    desired = validate_entries(params["entries"], params["state"])
    nud = NUD_NAMES[params["nud"]]

    with session(netns) as ipr:
        ifindex = require_link(ipr, "dev", dev)["index"]

    with tables.nl.NeighSocket(netns) as sock:
        current = tables.read_neigh(sock, ifindex, nud)
        changes = tables.plan_neigh(desired, current, params["state"])
        after = tables.apply_plan(current, changes)

        if changes and not module.check_mode:
            def request(op, entry):
                return tables.nl.neigh_request(op, ifindex, entry.ip, entry.lladdr, state=nud, tag=entry)

            def to_request(change):
                return request("delete" if change.op == "delete" else "replace", change.entry)

            def undo_request(change):
                if change.op == "delete":
                    return request("replace", change.entry)
                if change.op == "replace":
                    return request("replace", change.old)
                return request("delete", change.entry)

            tables.execute(sock, changes, to_request, undo_request, "neighbour entry", describe=tables.NeighEntry.text)

    result = {
        "changed": bool(changes),
        "entries": [entry.as_dict() for entry in after],
        "added": [c.entry.text() for c in changes if c.op != "delete"],
        "removed": [c.entry.text() for c in changes if c.op == "delete"] + [c.old.text() for c in changes if c.op == "replace"],
    }
    if module._diff:
        result["diff"] = {
            "before_header": "%s neighbours (%s)" % (dev, params["nud"]),
            "after_header": "%s neighbours (%s)" % (dev, params["nud"]),
            "before": "".join(e.text() + "\n" for e in sorted(current)),
            "after": "".join(e.text() + "\n" for e in after),
        }
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            dev=dict(type="str", required=True),
            entries=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(
                    ip=dict(type="str", required=True),
                    lladdr=dict(type="str"),
                ),
            ),
            nud=dict(type="str", default="permanent", choices=list(NUD_NAMES)),
            state=dict(type="str", default="present", choices=["present", "absent", "exact"]),
            netns=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    require_pyroute2(module)
    run_module(module, lambda: manage(module))


if __name__ == "__main__":
    main()
