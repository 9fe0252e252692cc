# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vxlan_link module's work: its options (SPEC), checks, kernel read, plan and apply.

It lives here, not in the module, so that overlay_plan can ask the very same code, in check
mode, whether a task has anything to do (one comparison, never a second copy of it).
"""

from __future__ import annotations

import os
import socket

from ansible_collections.overlay.vxlan.plugins.module_utils import _fastnl as fastnl
from ansible_collections.overlay.vxlan.plugins.module_utils import _validate as v
from ansible_collections.overlay.vxlan.plugins.module_utils._links import vxlan_state
from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import (
    InputError,
    Journal,
    NetlinkError,
    created_earlier,
    get_link,
    host_has_address,
    index_names,
    link_info_data,
    link_kind,
    require_link,
    session,
)

# What the kernel's vxlan changelink accepts; everything else needs a new device.
IN_PLACE = ("learning", "ttl", "tos", "ageing")
RECREATE = ("vni", "dstport", "local", "group", "remote", "dev", "proxy", "l2miss", "l3miss")
# What a new device gets for knobs left unset (a device without `dev` keeps the Ethernet MTU).
KERNEL_DEFAULTS = {"ttl": 0, "tos": 0, "ageing": 300, "mtu": 1500}
# Flags of the device's bridge port (IFLA_BRPORT_*), set with the port in `master`.
PORT_FLAGS = ("port_learning", "neigh_suppress")
PORT_ATTRS = {"port_learning": "learning", "neigh_suppress": "neigh_suppress"}
# What a new bridge port has (the bridge's defaults).
PORT_DEFAULTS = {"port_learning": True, "neigh_suppress": False}
# Receive flags: the kernel lets devices that differ in these share a VNI and port.
RCV_FLAGS = ("IFLA_VXLAN_GBP", "IFLA_VXLAN_GPE", "IFLA_VXLAN_REMCSUM_RX", "IFLA_VXLAN_REMCSUM_NOPARTIAL",
             "IFLA_VXLAN_UDP_ZERO_CSUM6_RX", "IFLA_VXLAN_COLLECT_METADATA", "IFLA_VXLAN_VNIFILTER")


def validate(params: dict) -> dict:
    """Every parameter checked and normalised; nothing about the kernel is known yet."""
    wanted = {"name": v.ifname("name", params["name"])}
    if params["state"] == "absent":
        return wanted
    if params["vni"] is None:
        raise InputError("vni", None, "is required with state=present")
    wanted["vni"] = v.vni("vni", params["vni"])
    wanted["dstport"] = v.port("dstport", params["dstport"])
    family = None
    for field in ("local", "group", "remote"):
        value = params[field]
        if value is None:
            wanted[field] = None
            continue
        addr = v.ip_address(field, value, version=family)
        family = addr.version
        wanted[field] = v.multicast_ip(field, value) if field == "group" else v.unicast_ip(field, value)
    wanted["family"] = family or 4
    wanted["dev"] = v.ifname("dev", params["dev"]) if params["dev"] is not None else None
    wanted["master"] = v.ifname("master", params["master"]) if params["master"] is not None else None
    if wanted["group"] and not wanted["dev"]:
        raise InputError("dev", None, "is required with group (the multicast group is joined on the underlay device)")
    for flag in ("learning", "proxy", "l2miss", "l3miss"):
        wanted[flag] = bool(params[flag])
    # Bridge-port flags of the device's port in `master` (unset: whatever the port has).
    for flag in PORT_FLAGS:
        if params.get(flag) is not None and not wanted["master"]:
            raise InputError(flag, params[flag], "needs master (it is a flag of the device's port in that bridge)")
        wanted[flag] = bool(params[flag]) if params.get(flag) is not None else None
    for field in ("ttl", "tos"):
        wanted[field] = v.int_range(field, params[field], 0, 255) if params[field] is not None else None
    wanted["ageing"] = v.int_range("ageing", params["ageing"], 0, 2**31 - 1) if params["ageing"] is not None else None
    wanted["mtu"] = v.int_range("mtu", params["mtu"], 68, 65535) if params["mtu"] is not None else None
    return wanted


def read_link(ipr, link) -> dict:
    return vxlan_state(link, index_names(ipr))


def resolve(ipr, wanted: dict, module=None) -> dict:
    """Check what must already exist on the host and fill in the derived defaults."""
    resolved = dict(wanted)
    underlay_mtu = None
    if wanted["dev"]:
        dev = require_link(ipr, "dev", wanted["dev"])
        resolved["dev_index"] = dev["index"]
        underlay_mtu = dev.get_attr("IFLA_MTU")
    if wanted["master"] and not (module is not None and created_earlier(ipr, module, "master", wanted["master"])):
        resolved["master_index"] = require_link(ipr, "master", wanted["master"], kind="bridge")["index"]
    if wanted["local"] and not host_has_address(ipr, wanted["local"]):
        raise InputError("local", wanted["local"], "is not an address of this host; peers would drop its packets")
    for link in ipr.link("dump"):
        other = link.get_attr("IFLA_IFNAME")
        if other == wanted["name"] or link_kind(link) != "vxlan":
            continue
        data = link_info_data(link)
        other_family = 6 if (data.get("IFLA_VXLAN_LOCAL6") or data.get("IFLA_VXLAN_GROUP6")) else 4
        if (data.get("IFLA_VXLAN_ID"), data.get("IFLA_VXLAN_PORT"), other_family) == (wanted["vni"], wanted["dstport"], wanted["family"]) \
                and not any(data.get(flag) for flag in RCV_FLAGS):
            raise InputError("vni", wanted["vni"], "is already used by %s with dstport %d; the kernel allows one device per VNI and port"
                             % (other, wanted["dstport"]))
    overhead = v.VXLAN_OVERHEAD[wanted["family"]]
    if underlay_mtu is not None:
        ceiling = underlay_mtu - overhead
        if wanted["mtu"] is None:
            resolved["mtu"] = ceiling
        elif wanted["mtu"] > ceiling:
            raise InputError("mtu", wanted["mtu"], "exceeds what %s can carry without fragmenting (%d - %d = %d)"
                             % (wanted["dev"], underlay_mtu, overhead, ceiling))
    return resolved


def link_kwargs(cfg: dict) -> dict:
    """pyroute2 IFLA_VXLAN_* arguments for a configuration (validated or read back)."""
    six = cfg.get("family") == 6 or ":" in (cfg.get("local") or cfg.get("group") or cfg.get("remote") or "")
    kwargs = {"vxlan_id": cfg["vni"], "vxlan_port": cfg["dstport"],
              "vxlan_learning": int(cfg["learning"]), "vxlan_proxy": int(cfg["proxy"]),
              "vxlan_l2miss": int(cfg["l2miss"]), "vxlan_l3miss": int(cfg["l3miss"])}
    if cfg.get("local"):
        kwargs["vxlan_local6" if six else "vxlan_local"] = cfg["local"]
    if cfg.get("group") or cfg.get("remote"):
        kwargs["vxlan_group6" if six else "vxlan_group"] = cfg.get("group") or cfg.get("remote")
    if cfg.get("dev_index"):
        kwargs["vxlan_link"] = cfg["dev_index"]
    for field in IN_PLACE[1:]:
        if cfg.get(field) is not None:
            kwargs["vxlan_" + field] = cfg[field]
    return kwargs


def create(ipr, cfg: dict, journal: Journal | None = None, up: bool = True) -> int:
    extra = {}
    # index/address only when a rolled-back recreate puts the old device back as it was.
    for key in ("mtu", "index", "address"):
        if cfg.get(key):
            extra[key] = cfg[key]
    ipr.link("add", ifname=cfg["name"], kind="vxlan", **extra, **link_kwargs(cfg))
    index = ipr.link_lookup(ifname=cfg["name"])[0]
    if journal is not None:
        # Recorded before "up": bringing it up can still fail (e.g. EADDRINUSE when another
        # socket holds the UDP port), and then the new device must not be left behind.
        journal.record("create %s" % cfg["name"], lambda: ipr.link("del", index=index))
    if up:
        ipr.link("set", index=index, state="up")
    # The bridge is joined last: a port joining and leaving is not neutral for the bridge (it
    # takes its MAC from its ports), so a device refused earlier must never have been a port.
    if cfg.get("master_index"):
        ipr.link("set", index=index, master=cfg["master_index"])
        flags = port_kwargs(cfg, PORT_FLAGS)
        if flags:
            ipr.brport("set", index=index, **flags)
    return index


def port_kwargs(cfg: dict, fields) -> dict:
    """pyroute2 brport arguments (IFLA_BRPORT_*) of the bridge-port flags set in `cfg`."""
    return {PORT_ATTRS[f]: int(cfg[f]) for f in fields if f in PORT_FLAGS and cfg.get(f) is not None}


def save_tables(netns: str | None, index: int) -> list:
    """Requests that put back a device's permanent fdb and neighbour entries.

    Deleting the device for a recreate empties its tables; if the new device is then refused,
    the old one must come back with its entries, not empty.
    """
    requests = []
    with fastnl.NeighSocket(netns) as sock:
        for raw in sock.dump(fastnl.AF_BRIDGE):
            if raw["ifindex"] == index and raw["flags"] & fastnl.NTF_SELF and raw["state"] & fastnl.NUD_PERMANENT and raw["dst"] and raw["mac"]:
                op = "append" if raw["mac"] == v.ZERO_MAC else "replace"
                requests.append(fastnl.fdb_request(op, index, raw["mac"], raw["dst"], vni=raw["vni"], port=raw["port"], via=raw["via"]))
        for raw in sock.dump(socket.AF_UNSPEC):
            if raw["ifindex"] != index or raw["family"] not in (socket.AF_INET, socket.AF_INET6) or not raw["dst"] or not raw["mac"]:
                continue
            if raw["state"] & (fastnl.NUD_PERMANENT | fastnl.NUD_NOARP) and not int(raw["mac"][:2], 16) & 1:
                requests.append(fastnl.neigh_request("replace", index, raw["dst"], raw["mac"], state=raw["state"]))
    return requests


def restore(ipr, netns: str | None, old_cfg: dict, saved: list) -> None:
    """Undo of a delete: the old device with its ifindex, MAC, bridge, state and entries."""
    create(ipr, old_cfg, up=old_cfg["up"])
    if saved:
        with fastnl.NeighSocket(netns) as sock:
            failures = sock.apply(saved)
        if failures:
            _request, code, text = failures[0]
            raise OSError(code, "%d of its fdb/neighbour entries not restored: %s" % (len(failures), text or os.strerror(code)))


def compare(current: dict, wanted: dict) -> tuple[list[str], list[str]]:
    """(attributes that need a new device, attributes changeable in place)."""
    recreate = [f for f in RECREATE if wanted.get(f) != current.get(f)]
    in_place = [f for f in IN_PLACE if wanted.get(f) is not None and wanted[f] != current.get(f)]
    in_place += [f for f in ("mtu", "master") if wanted.get(f) is not None and wanted[f] != current.get(f)]
    # A new port (another master) starts with the bridge's defaults: set every flag asked for.
    in_place += [f for f in PORT_FLAGS if wanted.get(f) is not None and ("master" in in_place or wanted[f] != current.get(f))]
    if not current.get("up"):
        in_place.append("up")
    return recreate, in_place


def public(cfg: dict | None) -> dict:
    keys = ("name", "vni", "dstport", "local", "group", "remote", "dev", "learning", "proxy", "l2miss",
            "l3miss", "ttl", "tos", "ageing", "mtu", "master", "port_learning", "neigh_suppress", "up")
    return {k: cfg.get(k) for k in keys} if cfg else {}


def manage(module) -> dict:
    params = module.params
    netns = v.netns_name("netns", params["netns"]) if params["netns"] is not None else None
    wanted = validate(params)
    name = wanted["name"]
    journal = Journal()

    with session(netns) as ipr:
        link = get_link(ipr, name)
        if link is not None and link_kind(link) != "vxlan":
            raise InputError("name", name, "exists and is a %s, not a vxlan device; refusing to touch it" % (link_kind(link) or "plain device"))
        current = read_link(ipr, link) if link is not None else None

        if params["state"] == "absent":
            if current and not module.check_mode:
                ipr.link("del", index=link["index"])
            return {"changed": bool(current), "recreated": False, "link": {},
                    "diff": {"before": public(current), "after": {}}}

        cfg = resolve(ipr, wanted, module)
        target = dict(cfg, up=True)
        if current is None:
            recreate, in_place = ["create"], []
            for field, default in KERNEL_DEFAULTS.items():  # what the kernel gives a new device
                if target.get(field) is None:
                    target[field] = default
            if target.get("master"):
                for field, default in PORT_DEFAULTS.items():
                    if target.get(field) is None:
                        target[field] = default
        else:
            recreate, in_place = compare(current, cfg)
            for field in IN_PLACE + ("mtu", "master") + PORT_FLAGS:  # unset knobs keep whatever the kernel has
                if cfg.get(field) is None:
                    target[field] = current[field]
        changed = bool(recreate or in_place)
        recreated = bool(recreate) and current is not None

        if changed and not module.check_mode:
            try:
                if recreate:
                    if current is not None:
                        old_cfg = dict(current, dev_index=ipr.link_lookup(ifname=current["dev"])[0] if current["dev"] else None,
                                       master_index=link.get_attr("IFLA_MASTER"), index=link["index"],
                                       address=link.get_attr("IFLA_ADDRESS"))
                        saved = save_tables(netns, link["index"])
                        ipr.link("del", index=link["index"])
                        journal.record("delete %s" % name, lambda: restore(ipr, netns, old_cfg, saved))
                    create(ipr, cfg, journal)
                else:
                    apply_in_place(ipr, link, current, cfg, in_place, journal)
            except (NetlinkError, OSError) as exc:
                raise journal.fail("%s %s" % ("recreating" if recreated else "changing" if current else "creating", name), exc) from None
        after = read_link(ipr, get_link(ipr, name)) if changed and not module.check_mode else public(dict(current or {}, **target))

    diff = {"before": public(current), "after": public(after)}
    if recreated:
        diff["after_header"] = "%s (recreated: %s cannot change in place)" % (name, ", ".join(recreate))
    return {"changed": changed, "recreated": recreated, "link": public(after), "diff": diff}


def apply_in_place(ipr, link, current: dict, cfg: dict, fields: list[str], journal: Journal) -> None:
    index = link["index"]
    knobs = {"vxlan_" + f: (int(cfg[f]) if f == "learning" else cfg[f]) for f in fields if f in IN_PLACE}
    if knobs:
        ipr.link("set", index=index, kind="vxlan", **knobs)
        old = {"vxlan_" + f: (int(current[f]) if f == "learning" else current[f]) for f in fields if f in IN_PLACE}
        journal.record("vxlan attributes", lambda: ipr.link("set", index=index, kind="vxlan", **old))
    if "mtu" in fields:
        ipr.link("set", index=index, mtu=cfg["mtu"])
        journal.record("mtu", lambda: ipr.link("set", index=index, mtu=current["mtu"]))
    if "master" in fields:
        ipr.link("set", index=index, master=cfg["master_index"])
        old_master = link.get_attr("IFLA_MASTER") or 0
        journal.record("master", lambda: ipr.link("set", index=index, master=old_master))
    flags = port_kwargs(cfg, fields)
    if flags:
        ipr.brport("set", index=index, **flags)
        old_flags = {PORT_ATTRS[f]: int(current[f] if current.get(f) is not None else PORT_DEFAULTS[f]) for f in fields if f in PORT_FLAGS}
        journal.record("bridge port flags", lambda: ipr.brport("set", index=index, **old_flags))
    if "up" in fields:
        ipr.link("set", index=index, state="up")
        journal.record("up", lambda: ipr.link("set", index=index, state="down"))


# AnsibleModule's keyword arguments: the module and overlay_plan validate with the same spec.
SPEC = dict(
    argument_spec=dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        vni=dict(type="int"),
        dstport=dict(type="int", default=4789),
        local=dict(type="str"),
        group=dict(type="str"),
        remote=dict(type="str"),
        dev=dict(type="str"),
        learning=dict(type="bool", default=True),
        proxy=dict(type="bool", default=False),
        l2miss=dict(type="bool", default=False),
        l3miss=dict(type="bool", default=False),
        ttl=dict(type="int"),
        tos=dict(type="int"),
        ageing=dict(type="int"),
        mtu=dict(type="int"),
        master=dict(type="str"),
        port_learning=dict(type="bool"),
        neigh_suppress=dict(type="bool"),
        netns=dict(type="str"),
    ),
    mutually_exclusive=[("group", "remote")],
    required_if=[("state", "present", ("vni",))],
    supports_check_mode=True,
)
