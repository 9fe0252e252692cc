# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ip_neigh module's work: its options (SPEC), checks, kernel read, plan and apply.

It lives here, not in the module, so that overlay_plan can ask the very same code, in check
mode, whether a task has anything to do (one comparison, never a second copy of it).
"""

from __future__ import annotations

from ansible_collections.overlay.vxlan.plugins.module_utils import _rows
from ansible_collections.overlay.vxlan.plugins.module_utils import _tables as tables
from ansible_collections.overlay.vxlan.plugins.module_utils import _validate as v
from ansible_collections.overlay.vxlan.plugins.module_utils._fastnl import NUD_NAMES
from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import (
    InputError,
    created_earlier,
    require_link,
    session,
)


def validate_entries(raw_entries: list, state: str, name: str = "entries") -> list[tables.NeighEntry]:
    """Normalise every entry before anything is read or changed; fail on the first bad one.
    `name`: the option the entries came from (entries or rows), for the messages."""
    result = []
    for index, raw in enumerate(raw_entries):
        field = "%s[%d]" % (name, index)
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
    v.no_duplicates(name, [entry.ip for entry in result])
    return result


def manage(module) -> dict:
    params = module.params
    netns = v.netns_name("netns", params["netns"]) if params["netns"] is not None else None
    dev = v.ifname("dev", params["dev"])
    name = "rows" if params.get("rows") is not None else "entries"
    desired = validate_entries(_rows.neigh_rows(params["rows"]) if name == "rows" else params["entries"], params["state"], name)
    nud = NUD_NAMES[params["nud"]]

    with session(netns) as ipr:
        # In check mode a device the same run creates first has an empty table.
        ifindex = None if created_earlier(ipr, module, "dev", dev) else require_link(ipr, "dev", dev)["index"]

    with tables.nl.NeighSocket(netns) as sock:
        current = tables.read_neigh(sock, ifindex, nud) if ifindex is not None else []
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

    added = [c.entry.text() for c in changes if c.op != "delete"]
    removed = [c.entry.text() for c in changes if c.op == "delete"] + [c.old.text() for c in changes if c.op == "replace"]
    result = {
        "changed": bool(changes),
        "added": added,
        "removed": removed,
        "counts": {"entries": len(after), "added": len(added), "removed": len(removed)},
    }
    # The whole table only on request (see _bridge_fdb: its cost is in carrying it back).
    if params.get("return_entries"):
        result["entries"] = [entry.as_dict() for entry in after]
    if module._diff:
        result["diff"] = {
            "before_header": "%s neighbours (%s)" % (dev, params["nud"]),
            "after_header": "%s neighbours (%s)" % (dev, params["nud"]),
            "before": "".join(e.text() + "\n" for e in sorted(current)),
            "after": "".join(e.text() + "\n" for e in after),
        }
    return result


# AnsibleModule's keyword arguments: the module and overlay_plan validate with the same spec.
SPEC = dict(
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
        # Compact rows, checked by validate_entries (not by Ansible's per-entry suboptions).
        rows=dict(type="raw"),
        return_entries=dict(type="bool", default=False),
        nud=dict(type="str", default="permanent", choices=list(NUD_NAMES)),
        state=dict(type="str", default="present", choices=["present", "absent", "exact"]),
        netns=dict(type="str"),
    ),
    mutually_exclusive=[["entries", "rows"]],
    supports_check_mode=True,
)
