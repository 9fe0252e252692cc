# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The netns_veth module's work: its options (SPEC), checks, kernel read, plan and apply.

It lives here, not in the module, so that overlay_plan can ask the very same code, in check
mode, whether a task has anything to do (one comparison, never a second copy of it).
"""

from __future__ import annotations

import ipaddress
from contextlib import ExitStack

from ansible_collections.overlay.vxlan.plugins.module_utils import _links as links
from ansible_collections.overlay.vxlan.plugins.module_utils import _validate as v
from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import (
    ABSENT_ERRNOS,
    InputError,
    Journal,
    NetlinkError,
    addresses_of,
    created_earlier,
    link_is_up,
    link_kind,
    link_name,
    netns_exists,
    netns_path,
)

PUBLIC = ("name", "peer", "namespace", "master", "mtu", "peer_mtu", "mac", "addresses", "up")
VETH_DEFAULT_MTU = 1500


def validate(params: dict) -> dict:
    """Every parameter checked and normalised; nothing about the kernel is known yet."""
    wanted = {
        "netns": v.netns_name("netns", params["netns"]) if params["netns"] is not None else None,
        "namespace": links.plain_netns_name("namespace", params["namespace"]),
        "name": links.ifname("name", params["name"]),
        "peer": links.ifname("peer", params["peer"]) if params["peer"] is not None else None,
        "master": links.ifname("master", params["master"]) if params["master"] is not None else None,
        "addresses": links.peer_addresses("addresses", params["addresses"]) if params["addresses"] is not None else None,
        "mac": v.mac("mac", params["mac"], unicast=True) if params["mac"] is not None else None,
        "mtu": links.mtu("mtu", params["mtu"]) if params["mtu"] is not None else None,
        "state": params["state"],
        "namespace_state": params["namespace_state"],
    }
    if wanted["peer"] == "lo":
        raise InputError("peer", params["peer"], "is the namespace's loopback device")
    if wanted["state"] == "present" and wanted["namespace_state"] == "absent":
        raise InputError("namespace_state", "absent", "only goes with state=absent (the pair needs its namespace)")
    if wanted["netns"] and netns_path(wanted["netns"]) == netns_path(wanted["namespace"]):
        raise InputError("namespace", params["namespace"], "is also netns, where the host end lives; the peer must go to another namespace")
    _check_ipv6_mtu(wanted["mtu"], wanted["addresses"] or [])
    return wanted


def _check_ipv6_mtu(mtu, addresses) -> None:
    six = [a for a in addresses if ipaddress.ip_interface(a).version == 6]
    if mtu is not None and mtu < links.IPV6_MIN_MTU and six:
        raise InputError("mtu", mtu, "is below %d, the minimum for IPv6 (%s)" % (links.IPV6_MIN_MTU, ", ".join(six)))


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------

def _whereabouts(ipr, peer_index, peer_nsid) -> str:
    """Where the host end's peer really is, for the error message."""
    if peer_nsid is None:
        return "%s in the same namespace" % (link_name(ipr, peer_index) or "ifindex %s" % peer_index)
    where = links.namespaces_by_nsid(ipr).get(peer_nsid)
    if where is None:
        return "ifindex %s in an unnamed namespace (nsid %d)" % (peer_index, peer_nsid)
    try:
        with links.open_session(where, "namespace") as other:
            peer = link_name(other, peer_index)
    except (InputError, OSError, NetlinkError):
        peer = None
    return "%s in namespace %s" % (peer or "ifindex %s" % peer_index, where)


def read_host(ipr, wanted: dict, ns_exists: bool) -> dict | None:
    """The host end, checked to be a veth whose peer lives in the wanted namespace."""
    name, namespace = wanted["name"], wanted["namespace"]
    host = links.find_kind(ipr, "name", name, "veth")
    if host is None:
        return None
    peer_index, peer_nsid = links.veth_peer(host)
    ns_nsid = links.nsid_of(ipr, namespace) if ns_exists else None
    if peer_nsid is None or ns_nsid is None or peer_nsid != ns_nsid:
        raise InputError("name", name, "exists, but its veth peer is %s, not in namespace %s; refusing to change or recreate it "
                         "(remove the pair first)" % (_whereabouts(ipr, peer_index, peer_nsid), namespace))
    return {
        "index": host["index"],
        "peer_index": peer_index,
        "mtu": host.get_attr("IFLA_MTU"),
        "master_index": host.get_attr("IFLA_MASTER") or 0,
        "master": link_name(ipr, host.get_attr("IFLA_MASTER")),
        "up": link_is_up(host),
    }


def read_namespace(vm, wanted: dict, host: dict | None) -> dict:
    """The VM side: our peer (if the pair exists), lo, and whatever else lives there."""
    namespace, name, peer = wanted["namespace"], wanted["name"], wanted["peer"]
    all_links = vm.link("dump")
    by_index = {link["index"]: link for link in all_links}
    result = {"peer": None, "others": [], "lo_index": None, "lo_up": True}
    for link in all_links:
        if link.get_attr("IFLA_IFNAME") == "lo":
            result["lo_index"], result["lo_up"] = link["index"], link_is_up(link)
    if host is not None:
        link = by_index.get(host["peer_index"])
        if link is None or link_kind(link) != "veth" or link.get_attr("IFLA_LINK") != host["index"]:
            raise InputError("name", name, "exists, but its veth peer (ifindex %s) is not in namespace %s" % (host["peer_index"], namespace))
        actual = link.get_attr("IFLA_IFNAME")
        if peer is not None and actual != peer:
            raise InputError("peer", peer, "%s's peer in namespace %s is %s; refusing to rename it (remove the pair first)" % (name, namespace, actual))
        result["peer"] = {
            "index": link["index"],
            "name": actual,
            "mtu": link.get_attr("IFLA_MTU"),
            "mac": link.get_attr("IFLA_ADDRESS"),
            "up": link_is_up(link),
            "addresses": links.sort_cidrs(addresses_of(vm, link["index"])),
        }
    elif peer is not None:
        existing = links.find_link(vm, "peer", peer)
        if existing is not None:
            raise InputError("peer", peer, "already exists in namespace %s (a %s that is not %s's peer)"
                             % (namespace, link_kind(existing) or "plain device", name))
    ours = result["peer"]["index"] if result["peer"] else None
    result["others"] = sorted(link.get_attr("IFLA_IFNAME") for link in all_links if link["index"] not in (ours, result["lo_index"]))
    return result


def public(host: dict | None, side: dict | None, wanted: dict) -> dict:
    if host is None or side is None or side["peer"] is None:
        return {}
    peer = side["peer"]
    return {
        "name": wanted["name"],
        "peer": peer["name"],
        "namespace": wanted["namespace"],
        "master": host["master"],
        "mtu": host["mtu"],
        "peer_mtu": peer["mtu"],
        "mac": peer["mac"],
        "addresses": peer["addresses"],
        "up": bool(host["up"] and peer["up"] and side["lo_up"]),
    }


def predict(current: dict, wanted: dict) -> dict:
    """The pair as the task leaves it (check mode's answer)."""
    after = dict(current) if current else {
        "name": wanted["name"], "peer": wanted["peer"], "namespace": wanted["namespace"], "master": None,
        "mtu": VETH_DEFAULT_MTU, "peer_mtu": VETH_DEFAULT_MTU, "mac": None, "addresses": [],
    }
    for field in ("master", "mac", "addresses"):
        if wanted[field] is not None:
            after[field] = wanted[field]
    if wanted["mtu"] is not None:
        after["mtu"] = after["peer_mtu"] = wanted["mtu"]
    after["up"] = True
    return {k: after[k] for k in PUBLIC}


# ---------------------------------------------------------------------------------------------
# Changing
# ---------------------------------------------------------------------------------------------

def _addr_args(cidr: str) -> dict:
    iface = ipaddress.ip_interface(cidr)
    return {"address": str(iface.ip), "prefixlen": iface.network.prefixlen}


def set_addresses(vm, index: int, wanted: list[str]) -> None:
    """Make the interface's addresses exactly `wanted`. Removals go first, then the set is read
    again: removing an IPv4 primary address also drops its secondaries."""
    for cidr in sorted(set(addresses_of(vm, index)) - set(wanted)):
        try:
            vm.addr("del", index=index, **_addr_args(cidr))
        except NetlinkError as exc:
            if exc.code not in ABSENT_ERRNOS:
                raise
    for cidr in links.sort_cidrs(set(wanted) - set(addresses_of(vm, index))):
        vm.addr("add", index=index, **_addr_args(cidr))


class Applier:
    """Runs the steps of one task; every change is journalled so a refusal undoes the run."""

    def __init__(self, wanted: dict):
        self.wanted = wanted
        self.journal = Journal()

    def step(self, what: str, action, undo=None, undo_first: bool = False):
        """Run `action`; journal `undo` after it succeeded (or before, for multi-part actions
        whose undo restores a recorded state and is therefore safe after a partial run)."""
        if undo is not None and undo_first:
            self.journal.record(what, undo)
        try:
            result = action()
        except (NetlinkError, OSError) as exc:
            raise self.journal.fail(what, exc) from None
        if undo is not None and not undo_first:
            self.journal.record(what, undo)
        return result


def create_pair(ipr, cfg: dict) -> None:
    """One RTM_NEWLINK: host end here, peer created inside the namespace with its MTU and MAC."""
    peer = {"ifname": cfg["peer"]}
    host = {"ifname": cfg["name"], "kind": "veth", "peer": peer}
    if cfg.get("mtu"):
        host["mtu"] = cfg["mtu"]
        peer["mtu"] = cfg.get("peer_mtu") or cfg["mtu"]
    if cfg.get("mac"):
        peer["address"] = cfg["mac"]
    with links.netns_fd(cfg["namespace"]) as fd:
        peer["net_ns_fd"] = fd
        ipr.link("add", **host)


def converge(ipr, vm, run: Applier, host: dict, side: dict) -> None:
    """Bring an existing (or just created) pair to what was asked."""
    wanted = run.wanted
    name, peer, namespace = wanted["name"], side["peer"]["name"], wanted["namespace"]
    index, peer_index = host["index"], side["peer"]["index"]

    def setter(sock, ifindex, **kwargs):
        return lambda: sock.link("set", index=ifindex, **kwargs)

    if wanted["mtu"] is not None and host["mtu"] != wanted["mtu"]:
        run.step("setting the MTU of %s to %d" % (name, wanted["mtu"]), setter(ipr, index, mtu=wanted["mtu"]), setter(ipr, index, mtu=host["mtu"]))
    if wanted["mtu"] is not None and side["peer"]["mtu"] != wanted["mtu"]:
        run.step("setting the MTU of %s in %s to %d" % (peer, namespace, wanted["mtu"]),
                 setter(vm, peer_index, mtu=wanted["mtu"]), setter(vm, peer_index, mtu=side["peer"]["mtu"]))
    if wanted["mac"] is not None and side["peer"]["mac"] != wanted["mac"]:
        run.step("setting the MAC of %s in %s to %s" % (peer, namespace, wanted["mac"]),
                 setter(vm, peer_index, address=wanted["mac"]), setter(vm, peer_index, address=side["peer"]["mac"]))
    if wanted["master"] is not None and host["master"] != wanted["master"]:
        run.step("attaching %s to %s" % (name, wanted["master"]),
                 setter(ipr, index, master=host["wanted_master_index"]), setter(ipr, index, master=host["master_index"]))
    if wanted["addresses"] is not None and side["peer"]["addresses"] != wanted["addresses"]:
        original = side["peer"]["addresses"]
        run.step("setting the addresses of %s in %s to %s" % (peer, namespace, ", ".join(wanted["addresses"]) or "none"),
                 lambda: set_addresses(vm, peer_index, wanted["addresses"]),
                 lambda: set_addresses(vm, peer_index, original), undo_first=True)
    if not side["lo_up"]:
        run.step("bringing lo up in %s" % namespace, setter(vm, side["lo_index"], state="up"), setter(vm, side["lo_index"], state="down"))
    if not side["peer"]["up"]:
        run.step("bringing %s up in %s" % (peer, namespace), setter(vm, peer_index, state="up"), setter(vm, peer_index, state="down"))
    if not host["up"]:
        run.step("bringing %s up" % name, setter(ipr, index, state="up"), setter(ipr, index, state="down"))


def needs_change(host: dict | None, side: dict | None, wanted: dict) -> bool:
    if host is None:
        return True
    peer = side["peer"]
    return bool(
        (wanted["mtu"] is not None and (host["mtu"] != wanted["mtu"] or peer["mtu"] != wanted["mtu"]))
        or (wanted["mac"] is not None and peer["mac"] != wanted["mac"])
        or (wanted["master"] is not None and host["master"] != wanted["master"])
        or (wanted["addresses"] is not None and peer["addresses"] != wanted["addresses"])
        or not (host["up"] and peer["up"] and side["lo_up"])
    )


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------

def result(changed: bool, after: dict, ns_after: bool, before: dict) -> dict:
    return {
        "changed": changed,
        "veth": after,
        "namespace_exists": ns_after,
        "diff": {"before": before, "after": {"namespace": {"name": before["namespace"]["name"], "exists": ns_after}, "veth": after}},
    }


def manage(module) -> dict:
    wanted = validate(module.params)
    namespace = wanted["namespace"]

    with ExitStack() as stack:
        ipr = stack.enter_context(links.open_session(wanted["netns"]))
        ns_exists = netns_exists(namespace)
        if ns_exists and links.same_namespace(wanted["netns"], namespace):
            raise InputError("namespace", namespace, "is the namespace the host end lives in; the peer must go to another namespace")
        vm = stack.enter_context(links.open_session(namespace, "namespace")) if ns_exists else None
        host = read_host(ipr, wanted, ns_exists)
        side = read_namespace(vm, wanted, host) if vm is not None else None
        current = public(host, side, wanted)
        before = {"namespace": {"name": namespace, "exists": ns_exists}, "veth": current}

        if wanted["state"] == "absent":
            return absent(module, ipr, vm, host, side, before)

        if wanted["master"] is not None and not created_earlier(ipr, module, "master", wanted["master"]):
            bridge = links.require_bridge(ipr, "master", wanted["master"])
            if host is not None:
                host["wanted_master_index"] = bridge["index"]
        if wanted["mtu"] is not None and wanted["addresses"] is None and side and side["peer"]:
            _check_ipv6_mtu(wanted["mtu"], side["peer"]["addresses"])

        changed = needs_change(host, side, wanted)
        if not changed or module.check_mode:
            return result(changed, predict(current, wanted) if changed else current, True, before)

        run = Applier(wanted)
        try:
            after = present(stack, ipr, vm, run, host, side, ns_exists)
        except InputError:
            # Only if the kernel changed under our feet between reading and applying.
            run.journal.rollback()
            raise
    return result(True, after, True, before)


def present(stack, ipr, vm, run: Applier, host, side, ns_exists: bool) -> dict:
    wanted = run.wanted
    name, peer, namespace = wanted["name"], wanted["peer"], wanted["namespace"]
    if not ns_exists:
        run.step("creating namespace %s" % namespace, lambda: links.create_netns(namespace), lambda: links.remove_netns(namespace))
        vm = run.step("entering namespace %s" % namespace, lambda: stack.enter_context(links.open_session(namespace, "namespace")))
    if host is None:
        run.step("creating veth %s with peer %s in %s" % (name, peer, namespace), lambda: create_pair(ipr, wanted),
                 lambda: ipr.link("del", ifname=name))
        host = read_host(ipr, wanted, True)
        side = read_namespace(vm, wanted, host)
        if wanted["master"] is not None:
            host["wanted_master_index"] = links.require_bridge(ipr, "master", wanted["master"])["index"]
    converge(ipr, vm, run, host, side)
    host = read_host(ipr, wanted, True)
    return public(host, read_namespace(vm, wanted, host), wanted)


def absent(module, ipr, vm, host, side, before: dict) -> dict:
    """Delete the pair; with namespace_state=absent also the namespace once only lo is left."""
    wanted = module.params
    namespace = before["namespace"]["name"]
    ns_exists = before["namespace"]["exists"]
    remove_ns = False
    if wanted["namespace_state"] == "absent" and ns_exists:
        if side["others"]:
            module.warn("namespace %s still holds %s; it is kept" % (namespace, ", ".join(side["others"])))
        else:
            remove_ns = True
    changed = host is not None or remove_ns
    if changed and not module.check_mode:
        run = Applier(None)
        if host is not None:
            pair = dict(before["veth"], namespace=namespace, mac=side["peer"]["mac"])

            def recreate():
                create_pair(ipr, pair)
                index = links.find_link(ipr, "name", pair["name"])["index"]
                peer_index = links.find_link(vm, "peer", pair["peer"])["index"]
                if host["master_index"]:
                    ipr.link("set", index=index, master=host["master_index"])
                set_addresses(vm, peer_index, pair["addresses"])
                for sock, ifindex, up in ((vm, peer_index, side["peer"]["up"]), (ipr, index, host["up"])):
                    if up:
                        sock.link("set", index=ifindex, state="up")

            run.step("deleting veth %s" % pair["name"], lambda: ipr.link("del", index=host["index"]), recreate)
        if remove_ns:
            run.step("removing namespace %s" % namespace, lambda: links.remove_netns(namespace))
    ns_after = ns_exists and not remove_ns
    return result(changed, {}, ns_after, before)


# AnsibleModule's keyword arguments: the module and overlay_plan validate with the same spec.
SPEC = dict(
    argument_spec=dict(
        namespace=dict(type="str", required=True),
        name=dict(type="str", required=True),
        peer=dict(type="str"),
        master=dict(type="str"),
        addresses=dict(type="list", elements="str"),
        mac=dict(type="str"),
        mtu=dict(type="int"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        namespace_state=dict(type="str", default="present", choices=["present", "absent"]),
        netns=dict(type="str"),
    ),
    required_if=[("state", "present", ("peer",))],
    supports_check_mode=True,
)
