# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bridge_fdb module's work: its options (SPEC), checks, kernel read, plan and apply.

It lives here, not in the module, so that overlay_plan can ask the very same code, in check
mode, whether a task has anything to do (one comparison, never a second copy of it).
"""

from __future__ import annotations

from ansible_collections.overlay.vxlan.plugins.module_utils import _rows
from ansible_collections.overlay.vxlan.plugins.module_utils import _tables as tables
from ansible_collections.overlay.vxlan.plugins.module_utils import _validate as v
from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import (
    InputError,
    created_earlier,
    index_names,
    link_info_data,
    require_link,
    session,
)


def validate_entries(raw_entries: list, name: str = "entries") -> list[dict]:
    """Normalise every entry before anything is read or changed; fail on the first bad one.
    `name`: the option the entries came from (entries or rows), for the messages."""
    result = []
    family = None
    for index, raw in enumerate(raw_entries):
        field = "%s[%d]" % (name, index)
        mac = v.mac(field + ".mac", raw.get("mac"), unicast=True, allow_zero=True)
        dst = v.unicast_ip(field + ".dst", raw.get("dst"), version=family)
        family = v.ip_version(dst)
        vni = v.vni(field + ".vni", raw["vni"]) if raw.get("vni") is not None else None
        port = v.port(field + ".port", raw["port"]) if raw.get("port") is not None else None
        via = v.ifname(field + ".via", raw["via"]) if raw.get("via") is not None else None
        result.append({"mac": mac, "dst": dst, "vni": vni, "port": port, "via": via, "family": family})
    return result


def manage(module) -> dict:
    params = module.params
    netns = v.netns_name("netns", params["netns"]) if params["netns"] is not None else None
    dev = v.ifname("dev", params["dev"])
    name = "rows" if params.get("rows") is not None else "entries"
    wanted = validate_entries(_rows.fdb_rows(params["rows"]) if name == "rows" else params["entries"], name)

    with session(netns) as ipr:
        # In check mode a device the same run creates first has an empty table (and, unknown
        # yet, the entries' own VNI and port only).
        link = None if created_earlier(ipr, module, "dev", dev) else require_link(ipr, "dev", dev, kind="vxlan")
        ifindex = link["index"] if link is not None else None
        data = link_info_data(link) if link is not None else {}
        dev_vni = data.get("IFLA_VXLAN_ID")
        dev_port = (data.get("IFLA_VXLAN_PORT") or 8472) if link is not None else None
        underlay = data.get("IFLA_VXLAN_LOCAL") or data.get("IFLA_VXLAN_LOCAL6") or data.get("IFLA_VXLAN_GROUP") or data.get("IFLA_VXLAN_GROUP6")
        names = index_names(ipr)
    # A device with neither local nor group/remote is IPv4: the kernel assumes so unless an IPv6
    # address was given, and refuses IPv6 entries on it (EAFNOSUPPORT).
    underlay_family = v.ip_version(underlay) if underlay else (4 if link is not None else None)
    index_of = {name: index for index, name in names.items()}

    desired = []
    for index, entry in enumerate(wanted):
        if underlay_family is not None and entry["family"] != underlay_family:
            raise InputError("%s[%d].dst" % (name, index), entry["dst"], "is IPv%d but %s's underlay (%s) is IPv%d"
                             % (entry["family"], dev, underlay or "no local/group/remote set: the kernel's default", underlay_family))
        if entry["via"] is not None and entry["via"] not in index_of:
            raise InputError("%s[%d].via" % (name, index), entry["via"], "no such interface")
        desired.append(tables.FdbEntry(entry["mac"], entry["dst"], entry["vni"] or dev_vni, entry["port"] or dev_port, entry["via"]))
    v.no_duplicates(name, desired)
    first_dst: dict[str, tuple[int, str]] = {}
    for index, entry in enumerate(desired):
        if entry.mac == v.ZERO_MAC:
            continue
        if entry.mac in first_dst and first_dst[entry.mac][1] != entry:
            raise InputError("%s[%d].mac" % (name, index), entry.mac,
                             "is already listed at %s[%d] with another dst; only the all-zero MAC "
                             "(the flood list) may have several" % (name, first_dst[entry.mac][0]))
        first_dst[entry.mac] = (index, entry)

    with tables.nl.NeighSocket(netns) as sock:
        current, learned = tables.read_fdb(sock, ifindex, dev_vni, dev_port, names) if link is not None else ([], 0)
        protected = set()
        default_dst = data.get("IFLA_VXLAN_GROUP") or data.get("IFLA_VXLAN_GROUP6")
        if default_dst:
            protected.add(tables.FdbEntry(v.ZERO_MAC, default_dst, dev_vni, dev_port, names.get(data.get("IFLA_VXLAN_LINK"))))
            protected.add(tables.FdbEntry(v.ZERO_MAC, default_dst, dev_vni, dev_port, None))
        changes = tables.plan_fdb(desired, current, params["state"], frozenset(protected))
        after = tables.apply_plan(current, changes)

        if changes and not module.check_mode:
            def to_request(change):
                return _request(change.op, change.entry, ifindex, dev_vni, dev_port, index_of)

            def undo_request(change):
                if change.op == "delete":
                    return _request("add", change.entry, ifindex, dev_vni, dev_port, index_of)
                if change.op == "replace":
                    return _request("replace", change.old, ifindex, dev_vni, dev_port, index_of)
                return _request("delete", change.entry, ifindex, dev_vni, dev_port, index_of)

            tables.execute(sock, changes, to_request, undo_request, "fdb entry", describe=lambda entry: entry.text(dev_vni, dev_port))

    def text(entry):
        return entry.text(dev_vni, dev_port)

    added = [text(c.entry) for c in changes if c.op != "delete"]
    removed = [text(c.entry) for c in changes if c.op == "delete"] + [text(c.old) for c in changes if c.op == "replace"]
    result = {
        "changed": bool(changes),
        "added": added,
        "removed": removed,
        "learned": learned,
        "counts": {"entries": len(after), "added": len(added), "removed": len(removed)},
    }
    # The whole table only on request: 10,000 dicts cost more to serialise, scrub and carry
    # back to the controller than the module's own work.
    if params.get("return_entries"):
        result["entries"] = [entry.as_dict() for entry in after]
    if module._diff:
        result["diff"] = {
            "before_header": "%s fdb" % dev,
            "after_header": "%s fdb" % dev,
            "before": "".join(text(e) + "\n" for e in sorted(current)),
            "after": "".join(text(e) + "\n" for e in after),
        }
    return result


def _request(op, entry, ifindex, dev_vni, dev_port, index_of):
    # Flood-list entries are appended (several per MAC); a unicast MAC is created or repointed.
    if op != "delete":
        op = "append" if entry.mac == v.ZERO_MAC else "replace"
    return tables.nl.fdb_request(
        op, ifindex, entry.mac, entry.dst,
        vni=entry.vni if entry.vni != dev_vni else None,
        port=entry.port if entry.port != dev_port else None,
        via=index_of.get(entry.via) if entry.via else None,
        tag=entry,
    )


# AnsibleModule's keyword arguments: the module and overlay_plan validate with the same spec.
SPEC = dict(
    argument_spec=dict(
        dev=dict(type="str", required=True),
        entries=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                mac=dict(type="str", required=True),
                dst=dict(type="str", required=True),
                vni=dict(type="int"),
                port=dict(type="int"),
                via=dict(type="str"),
            ),
        ),
        # Compact rows, checked by validate_entries (not by Ansible's per-entry suboptions).
        rows=dict(type="raw"),
        return_entries=dict(type="bool", default=False),
        state=dict(type="str", default="present", choices=["present", "absent", "exact"]),
        netns=dict(type="str"),
    ),
    mutually_exclusive=[["entries", "rows"]],
    supports_check_mode=True,
)
