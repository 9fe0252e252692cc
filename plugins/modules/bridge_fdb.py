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
  - overlay.vxlan contributors
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

from ansible_collections.overlay.vxlan.plugins.module_utils import _tables as tables
from ansible_collections.overlay.vxlan.plugins.module_utils import _validate as v
from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import (
    InputError,
    index_names,
    link_info_data,
    require_link,
    require_pyroute2,
    run_module,
    session,
)


def validate_entries(raw_entries: list) -> list[dict]:
    """Normalise every entry before anything is read or changed; fail on the first bad one."""
    result = []
    family = None
    for index, raw in enumerate(raw_entries):
        field = "entries[%d]" % index
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
    wanted = validate_entries(params["entries"])

    with session(netns) as ipr:
        link = require_link(ipr, "dev", dev, kind="vxlan")
        ifindex = link["index"]
        data = link_info_data(link)
        dev_vni = data.get("IFLA_VXLAN_ID")
        dev_port = data.get("IFLA_VXLAN_PORT") or 8472
        underlay = data.get("IFLA_VXLAN_LOCAL") or data.get("IFLA_VXLAN_LOCAL6") or data.get("IFLA_VXLAN_GROUP") or data.get("IFLA_VXLAN_GROUP6")
        names = index_names(ipr)
    # A device with neither local nor group/remote is IPv4: the kernel assumes so unless an IPv6
    # address was given, and refuses IPv6 entries on it (EAFNOSUPPORT).
    underlay_family = v.ip_version(underlay) if underlay else 4
    index_of = {name: index for index, name in names.items()}

    desired = []
    for index, entry in enumerate(wanted):
        if entry["family"] != underlay_family:
            raise InputError("entries[%d].dst" % index, entry["dst"], "is IPv%d but %s's underlay (%s) is IPv%d"
                             % (entry["family"], dev, underlay or "no local/group/remote set: the kernel's default", underlay_family))
        if entry["via"] is not None and entry["via"] not in index_of:
            raise InputError("entries[%d].via" % index, entry["via"], "no such interface")
        desired.append(tables.FdbEntry(entry["mac"], entry["dst"], entry["vni"] or dev_vni, entry["port"] or dev_port, entry["via"]))
    v.no_duplicates("entries", desired)
    first_dst: dict[str, tuple[int, str]] = {}
    for index, entry in enumerate(desired):
        if entry.mac == v.ZERO_MAC:
            continue
        if entry.mac in first_dst and first_dst[entry.mac][1] != entry:
            raise InputError("entries[%d].mac" % index, entry.mac,
                             "is already listed at entries[%d] with another dst; only the all-zero MAC "
                             "(the flood list) may have several" % first_dst[entry.mac][0])
        first_dst[entry.mac] = (index, entry)

    with tables.nl.NeighSocket(netns) as sock:
        current, learned = tables.read_fdb(sock, ifindex, dev_vni, dev_port, names)
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

    result = {
        "changed": bool(changes),
        "entries": [entry.as_dict() for entry in after],
        "added": [text(c.entry) for c in changes if c.op != "delete"],
        "removed": [text(c.entry) for c in changes if c.op == "delete"] + [text(c.old) for c in changes if c.op == "replace"],
        "learned": learned,
    }
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


def main() -> None:
    module = AnsibleModule(
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
            state=dict(type="str", default="present", choices=["present", "absent", "exact"]),
            netns=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    require_pyroute2(module)
    run_module(module, lambda: manage(module))


if __name__ == "__main__":
    main()
