# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Links as modules see them: exact-name lookups, bridges, veth pairs and their namespaces,
vxlan attributes, and the unit conversions in between.

Builds on _netlink (sessions, link lookups) and _validate (field checks). Reading functions turn
pyroute2 messages into the plain dicts that modules compare and return, so a value read from
the kernel and a value the user asked for are always in the same form.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from contextlib import contextmanager

from ansible_collections.overlay.vxlan.plugins.module_utils import _validate as v
from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import (
    InputError,
    addresses_of,
    get_link,
    link_info_data,
    link_is_up,
    link_kind,
    list_netns,
    netns_path,
    session,
)

# After _netlink, which puts the collection's own pyroute2 first on the path.
try:
    from pyroute2 import netns as pyroute2_netns
except ImportError:  # pragma: no cover - modules report missing_required_lib first
    pyroute2_netns = None

MTU_MIN = 68  # ETH_MIN_MTU
MTU_MAX = 65535  # ETH_MAX_MTU
IPV6_MIN_MTU = 1280  # the kernel disables IPv6 on a device below this
USER_HZ = 100  # IFLA_BR_AGEING_TIME is in clock_t (centiseconds)
AGEING_TIME_MAX = 1000000  # seconds; the kernel's u32 of centiseconds allows ~497 days
NSID_NOT_ASSIGNED = -1


# ---------------------------------------------------------------------------------------------
# Input checks that only links need
# ---------------------------------------------------------------------------------------------

def ifname(field: str, value) -> str:
    """_validate.ifname, and no '%': the kernel takes `tap%d` as a template and creates `tap0`, so
    the interface would not have the name asked for (and the next run would create another)."""
    text = v.ifname(field, value)
    if "%" in text:
        raise InputError(field, value, "contains '%'; the kernel would take it as a name template (tap%d -> tap0)")
    return text


def mtu(field: str, value) -> int:
    return v.int_range(field, value, MTU_MIN, MTU_MAX)


def plain_netns_name(field: str, value) -> str:
    """A namespace name under /run/netns (no path): for namespaces a module creates or removes."""
    text = v.netns_name(field, value)
    if text.startswith("/"):
        raise InputError(field, value, "must be a name under %s, not a path" % "/run/netns")
    return text


def peer_addresses(field: str, values) -> list[str]:
    """The CIDR list for an interface, normalised and sorted; link-local IPv6 refused (the
    kernel manages those, and they are ignored when the interface's addresses are compared)."""
    result = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(values):
        item = "%s[%d]" % (field, index)
        cidr = v.interface_cidr(item, raw)
        iface = ipaddress.ip_interface(cidr)
        if iface.version == 6 and iface.ip.is_link_local:
            raise InputError(item, raw, "is an IPv6 link-local address; the kernel assigns those itself")
        if iface.version == 6 and iface.ip.is_loopback:
            raise InputError(item, raw, "is the IPv6 loopback address; only lo can have it")
        # inet_ntop's spelling, which is what the kernel's addresses read back as.
        key = socket.inet_ntop(socket.AF_INET6 if iface.version == 6 else socket.AF_INET, iface.ip.packed)
        if key in seen:
            raise InputError(item, raw, "repeats the address of %s[%d]; an address can be on an interface once" % (field, seen[key]))
        seen[key] = index
        result.append("%s/%d" % (key, iface.network.prefixlen))
    return sort_cidrs(result)


def sort_cidrs(cidrs) -> list[str]:
    """IPv4 before IPv6, numerically: the order every returned address list uses."""
    return sorted(cidrs, key=lambda c: (ipaddress.ip_interface(c).version, ipaddress.ip_interface(c)))


def ageing_to_kernel(seconds: int) -> int:
    return seconds * USER_HZ


def ageing_from_kernel(centiseconds: int | None):
    """Seconds as an int, or a float when the kernel holds a fraction (set by someone else)."""
    if centiseconds is None:
        return None
    whole, rest = divmod(centiseconds, USER_HZ)
    return whole if not rest else centiseconds / USER_HZ


# ---------------------------------------------------------------------------------------------
# Lookups
# ---------------------------------------------------------------------------------------------

def find_link(ipr, field: str, name: str):
    """The link whose own name is `name`, or None.

    The kernel's RTM_GETLINK by name also matches alternative names (`ip link property add ...
    altname`); a module creating or deleting `name` must not act on the device behind an altname.
    """
    return get_link(ipr, name, field)


def find_kind(ipr, field: str, name: str, kind: str, what: str = "exists"):
    """find_link, refusing a device of another kind (never touch what this module does not own)."""
    link = find_link(ipr, field, name)
    if link is not None and link_kind(link) != kind:
        raise InputError(field, name, "%s and is a %s, not a %s; refusing to touch it" % (what, link_kind(link) or "plain device", kind))
    return link


def require_bridge(ipr, field: str, name: str):
    link = find_link(ipr, field, name)
    if link is None:
        raise InputError(field, name, "no such bridge (it is never created implicitly; see overlay.vxlan.linux_bridge)")
    if link_kind(link) != "bridge":
        raise InputError(field, name, "is a %s, not a bridge" % (link_kind(link) or "plain device"))
    return link


def names_by_index(links) -> dict[int, str]:
    return {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}


def ports_of(links, index: int) -> list[str]:
    return sorted(link.get_attr("IFLA_IFNAME") for link in links if link.get_attr("IFLA_MASTER") == index)


# ---------------------------------------------------------------------------------------------
# Namespaces
# ---------------------------------------------------------------------------------------------

@contextmanager
def open_session(netns: str | None, field: str = "netns"):
    """_netlink.session, with a namespace file that cannot be entered (a stale file left under
    /run/netns, a path that is not a namespace) reported as bad input instead of a traceback."""
    context = session(netns, field)
    try:
        ipr = context.__enter__()
    except OSError as exc:
        raise InputError(field, netns, "cannot be entered: %s (not a network namespace?)" % (exc.strerror or exc)) from None
    try:
        yield ipr
    finally:
        context.__exit__(None, None, None)


def create_netns(name: str) -> None:
    """Create a named namespace (pyroute2 does it in a child process; we never unshare)."""
    pyroute2_netns.create(name)


def remove_netns(name: str) -> None:
    pyroute2_netns.remove(name)


@contextmanager
def netns_fd(name: str):
    """An open descriptor of a named namespace, for IFLA_NET_NS_FD / NETNSA_FD."""
    fd = os.open(netns_path(name), os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


def same_namespace(netns: str | None, name: str) -> bool:
    """Whether named namespace `name` is the namespace `netns` (None: the one we run in)."""
    here = os.stat(netns_path(netns) if netns else "/proc/self/ns/net")
    there = os.stat(netns_path(name))
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _signed(nsid):
    if nsid is None:
        return None
    return nsid - (1 << 32) if nsid >= 1 << 31 else nsid


def nsid_of(ipr, name: str) -> int | None:
    """The id the session's namespace gives namespace `name`, or None if it has none (yet)."""
    with netns_fd(name) as fd:
        reply = ipr.get_netnsid(fd=fd)
    nsid = _signed(reply.get("nsid")) if reply else None
    return None if nsid is None or nsid == NSID_NOT_ASSIGNED else nsid


def namespaces_by_nsid(ipr) -> dict[int, str]:
    """nsid -> name for every named namespace the session's namespace has an id for."""
    result = {}
    for name in list_netns():
        try:
            nsid = nsid_of(ipr, name)
        except OSError:
            continue  # removed meanwhile, or a stale file that is not a namespace
        if nsid is not None:
            result.setdefault(nsid, name)
    return result


# ---------------------------------------------------------------------------------------------
# Reading links into plain dicts
# ---------------------------------------------------------------------------------------------

def veth_peer(link) -> tuple[int | None, int | None]:
    """(peer ifindex, nsid of the peer's namespace or None when it is in the same namespace)."""
    return link.get_attr("IFLA_LINK"), _signed(link.get_attr("IFLA_LINK_NETNSID"))


def bridge_state(link, links) -> dict:
    data = link_info_data(link)
    return {
        "name": link.get_attr("IFLA_IFNAME"),
        "mtu": link.get_attr("IFLA_MTU"),
        "stp": bool(data.get("IFLA_BR_STP_STATE")),
        "vlan_filtering": bool(data.get("IFLA_BR_VLAN_FILTERING")),
        "ageing_time": ageing_from_kernel(data.get("IFLA_BR_AGEING_TIME")),
        "ports": ports_of(links, link["index"]),
        "up": link_is_up(link),
    }


def _is_multicast(address: str) -> bool:
    return ipaddress.ip_address(address).is_multicast


def vxlan_state(link, names: dict[int, str]) -> dict:
    data = link_info_data(link)
    port = bridge_port_flags(link)
    group = data.get("IFLA_VXLAN_GROUP") or data.get("IFLA_VXLAN_GROUP6")
    multicast = bool(group) and _is_multicast(group)
    return {
        "name": link.get_attr("IFLA_IFNAME"),
        "vni": data.get("IFLA_VXLAN_ID"),
        "dstport": data.get("IFLA_VXLAN_PORT"),
        "local": data.get("IFLA_VXLAN_LOCAL") or data.get("IFLA_VXLAN_LOCAL6"),
        "group": group if multicast else None,
        "remote": group if group and not multicast else None,
        "dev": names.get(data.get("IFLA_VXLAN_LINK")) if data.get("IFLA_VXLAN_LINK") else None,
        "learning": bool(data.get("IFLA_VXLAN_LEARNING")),
        "proxy": bool(data.get("IFLA_VXLAN_PROXY")),
        "l2miss": bool(data.get("IFLA_VXLAN_L2MISS")),
        "l3miss": bool(data.get("IFLA_VXLAN_L3MISS")),
        "ttl": data.get("IFLA_VXLAN_TTL", 0),
        "tos": data.get("IFLA_VXLAN_TOS", 0),
        "ageing": data.get("IFLA_VXLAN_AGEING"),
        "udp_csum": bool(data.get("IFLA_VXLAN_UDP_CSUM")),
        "udp6zerocsumtx": bool(data.get("IFLA_VXLAN_UDP_ZERO_CSUM6_TX")),
        "udp6zerocsumrx": bool(data.get("IFLA_VXLAN_UDP_ZERO_CSUM6_RX")),
        "mtu": link.get_attr("IFLA_MTU"),
        "master": names.get(link.get_attr("IFLA_MASTER")) if link.get_attr("IFLA_MASTER") else None,
        "port_learning": port.get("IFLA_BRPORT_LEARNING"),
        "neigh_suppress": port.get("IFLA_BRPORT_NEIGH_SUPPRESS"),
        "up": link_is_up(link),
    }


def bridge_port_flags(link) -> dict:
    """The bridge-port attributes of a bridge port (IFLA_INFO_SLAVE_DATA) as booleans, {} for a
    device that is no bridge's port."""
    info = link.get_attr("IFLA_LINKINFO")
    if not info or info.get_attr("IFLA_INFO_SLAVE_KIND") != "bridge":
        return {}
    data = info.get_attr("IFLA_INFO_SLAVE_DATA")
    if not data or isinstance(data, (str, bytes)):
        return {}
    return {name: bool(value) for name, value in data["attrs"] if name in ("IFLA_BRPORT_LEARNING", "IFLA_BRPORT_NEIGH_SUPPRESS")}


def interface_state(ipr, link) -> dict:
    """Name, kind, MAC, MTU, up and addresses (IPv6 link-local excluded) of any interface."""
    return {
        "name": link.get_attr("IFLA_IFNAME"),
        "kind": link_kind(link),
        "mac": link.get_attr("IFLA_ADDRESS"),
        "mtu": link.get_attr("IFLA_MTU"),
        "up": link_is_up(link),
        "addresses": sort_cidrs(addresses_of(ipr, link["index"])),
    }
