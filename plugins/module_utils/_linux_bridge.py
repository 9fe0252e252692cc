# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The linux_bridge module's work: its options (SPEC), checks, kernel read, plan and apply.

It lives here, not in the module, so that overlay_plan can ask the very same code, in check
mode, whether a task has anything to do (one comparison, never a second copy of it).
"""

from __future__ import annotations

from ansible_collections.overlay.vxlan.plugins.module_utils import _links as links
from ansible_collections.overlay.vxlan.plugins.module_utils import _validate as v
from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import (
    InputError,
    Journal,
    NetlinkError,
    addresses_of,
)
from ansible_collections.overlay.vxlan.plugins.module_utils._netns_veth import set_addresses

# The kernel's values for a new bridge (what check mode predicts for options left out). A new
# bridge's MAC is the kernel's pick (random, then its smallest port's), so none is predicted.
DEFAULTS = {"mtu": 1500, "stp": False, "vlan_filtering": False, "ageing_time": 300, "mac": None}
# One netlink message per attribute, in this order: the bridge's changelink is not atomic (a
# refused attribute leaves the earlier ones of the same message applied), so each is journalled.
ORDER = ("mtu", "ageing_time", "stp", "vlan_filtering", "mac")


def validate(params: dict) -> dict:
    wanted = {"name": links.ifname("name", params["name"])}
    wanted["mtu"] = links.mtu("mtu", params["mtu"]) if params["mtu"] is not None else None
    wanted["ageing_time"] = v.int_range("ageing_time", params["ageing_time"], 0, links.AGEING_TIME_MAX) if params["ageing_time"] is not None else None
    wanted["stp"] = params["stp"]
    wanted["vlan_filtering"] = params["vlan_filtering"]
    # A pinned MAC: set by hand, the kernel no longer moves it to the smallest port's MAC when
    # ports come and go (addr_assign_type "set"), so what peers learned of it stays true.
    wanted["mac"] = v.mac("mac", params["mac"]) if params["mac"] is not None else None
    # The bridge's own addresses (an SVI: EVPN's ARP/ND suppression learns the VMs' MAC+IP from
    # its neighbour table); exactly this set when given, not managed when left out.
    wanted["addresses"] = links.peer_addresses("addresses", params["addresses"]) if params["addresses"] is not None else None
    six = [a for a in wanted["addresses"] or [] if ":" in a]
    if six and wanted["mtu"] is not None and wanted["mtu"] < links.IPV6_MIN_MTU:
        raise InputError("mtu", wanted["mtu"], "is below %d, the minimum for IPv6 (%s)" % (links.IPV6_MIN_MTU, ", ".join(six)))
    return wanted


def attribute_kwargs(field: str, value) -> dict:
    """pyroute2 arguments setting one bridge attribute."""
    if field == "mtu":
        return {"mtu": value}
    if field == "ageing_time":
        return {"kind": "bridge", "br_ageing_time": links.ageing_to_kernel(value)}
    if field == "stp":
        return {"kind": "bridge", "br_stp_state": int(value)}
    if field == "mac":
        return {"address": value}
    return {"kind": "bridge", "br_vlan_filtering": int(value)}


def read(ipr, name: str):
    link = links.find_kind(ipr, "name", name, "bridge")
    if link is None:
        return None, None
    state = links.bridge_state(link, ipr.link("dump"))
    state["addresses"] = links.sort_cidrs(addresses_of(ipr, link["index"]))
    state["mac"] = str(link.get_attr("IFLA_ADDRESS") or "").lower() or None
    return link, state


def plan(current: dict | None, wanted: dict) -> list[str]:
    """Attributes to change, in ORDER, plus "create" / "up" / "addresses" (last: an IPv6
    address is best added to an interface that is up)."""
    if current is None:
        # An explicit MTU is always set (so it sticks); the rest only when not the kernel's default.
        fields = ["create"] + [f for f in ORDER if wanted[f] is not None and (f == "mtu" or wanted[f] != DEFAULTS[f])] + ["up"]
        return fields + (["addresses"] if wanted["addresses"] else [])
    fields = [f for f in ORDER if wanted[f] is not None and wanted[f] != current[f]]
    if not current["up"]:
        fields.append("up")
    if wanted["addresses"] is not None and wanted["addresses"] != current["addresses"]:
        fields.append("addresses")
    return fields


def apply(ipr, name: str, link, current: dict | None, wanted: dict, fields: list[str]) -> None:
    journal = Journal()
    step = "creating %s" % name
    try:
        if "create" in fields:
            # A new bridge is created bare: attributes in the create message would be applied
            # in the kernel's order, and an MTU given there is not the user's (the kernel would
            # lower it again when the first smaller port joins).
            ipr.link("add", ifname=name, kind="bridge")
            journal.record("create %s" % name, lambda: ipr.link("del", index=ipr.link_lookup(ifname=name)[0]))
            link = links.find_link(ipr, "name", name)
            current = dict(DEFAULTS, up=False, addresses=[])
        index = link["index"]
        for field in ORDER:
            if field not in fields:
                continue
            step = "setting %s %s to %s" % (name, field, wanted[field])
            ipr.link("set", index=index, **attribute_kwargs(field, wanted[field]))
            old = current[field]
            if old is not None:  # a new bridge's MAC: nothing to put back, the bridge goes
                journal.record(step, lambda field=field, old=old: ipr.link("set", index=index, **attribute_kwargs(field, old)))
        if "up" in fields:
            step = "bringing %s up" % name
            ipr.link("set", index=index, state="up")
        if "addresses" in fields:
            step = "setting the addresses of %s to %s" % (name, ", ".join(wanted["addresses"]) or "none")
            original = current["addresses"]
            # Journalled before it runs: a refusal half-way (one address added, the next refused)
            # is undone too.
            journal.record(step, lambda: set_addresses(ipr, index, original))
            set_addresses(ipr, index, wanted["addresses"])
    except NetlinkError as exc:
        raise journal.fail(step, exc) from None


def manage(module) -> dict:
    params = module.params
    netns = v.netns_name("netns", params["netns"]) if params["netns"] is not None else None
    wanted = validate(params)
    name = wanted["name"]

    with links.open_session(netns) as ipr:
        link, current = read(ipr, name)

        if params["state"] == "absent":
            if current is not None and not module.check_mode:
                try:
                    ipr.link("del", index=link["index"])
                except NetlinkError as exc:
                    raise Journal().fail("deleting %s" % name, exc) from None
            current = _reported(current, wanted)
            return {"changed": current is not None, "bridge": {}, "diff": {"before": current or {}, "after": {}}}

        fields = plan(current, wanted)
        if fields and not module.check_mode:
            apply(ipr, name, link, current, wanted, fields)
            after = read(ipr, name)[1]
        else:
            base = current or dict(DEFAULTS, name=name, ports=[], addresses=[])
            after = dict(base, up=True, **{f: wanted[f] for f in ORDER + ("addresses",) if wanted[f] is not None})

    current, after = _reported(current, wanted), _reported(after, wanted)
    return {"changed": bool(fields), "bridge": after, "diff": {"before": current or {}, "after": after}}


def _reported(state: dict | None, wanted: dict) -> dict | None:
    """The state as the task reports it: the MAC only where the task manages it (an unmanaged new
    bridge's MAC is the kernel's random pick, which check mode cannot predict)."""
    if state is None or wanted["mac"] is not None:
        return state
    return {key: value for key, value in state.items() if key != "mac"}


# AnsibleModule's keyword arguments: the module and overlay_plan validate with the same spec.
SPEC = dict(
    argument_spec=dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        mtu=dict(type="int"),
        stp=dict(type="bool"),
        vlan_filtering=dict(type="bool"),
        ageing_time=dict(type="int"),
        addresses=dict(type="list", elements="str"),
        mac=dict(type="str"),
        netns=dict(type="str"),
    ),
    supports_check_mode=True,
)
