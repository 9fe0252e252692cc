# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kernel side, all through pyroute2: miss notifications, dumps and table writes.

* Events: an IPRoute bound to RTNLGRP_NEIGH and RTNLGRP_LINK (`bind()`); the agent reads its
  socket and pyroute2's marshal parses the datagrams. The vxlan driver reports both misses as RTM_GETNEIGH on the vxlan
  device's ifindex: l3miss with NDA_DST (the IP asked for) and no NDA_LLADDR, l2miss with
  NDA_LLADDR (the MAC asked for) and no NDA_DST.
* Dumps and writes: a second IPRoute (links, neighbours, fdb; `neigh/fdb replace|del`).
* Kernel values come out as pyroute2 prints them (inet_ntop addresses, lower-case MACs), the
  same text as the collection's `_validate` and so the records.
* "Already gone" on delete is the collection's `_netlink.ABSENT_ERRNOS`, decided once.
"""

from __future__ import annotations

import os
import socket

from pyroute2 import IPRoute, NetlinkError
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_GETNEIGH, RTM_NEWLINK, RTMGRP_LINK, RTMGRP_NEIGH
from pyroute2.netlink.rtnl.ndmsg import NTF_SELF, NUD_NOARP, NUD_PERMANENT, ndmsg

from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import ABSENT_ERRNOS

AF_BRIDGE = socket.AF_BRIDGE
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
RECV_SIZE = 1 << 17  # one netlink datagram; notifications are one message each, far smaller

__all__ = ["AF_BRIDGE", "NTF_SELF", "NUD_NOARP", "NUD_PERMANENT", "RTM_DELLINK", "RTM_GETNEIGH", "RTM_NEWLINK",
           "Kernel", "Miss", "classify_miss", "link_entry", "neigh_entry", "read_namespace_mac"]


def neigh_entry(msg) -> dict:
    """A pyroute2 ndmsg (neighbour, fdb entry or miss) -> the plain dict the agent works with."""
    get = msg.get_attr
    mac = get("NDA_LLADDR")
    return {"family": msg["family"], "ifindex": msg["ifindex"], "state": msg["state"], "flags": msg["flags"],
            "type": msg["ndm_type"], "mac": mac.lower() if isinstance(mac, str) and len(mac) == 17 else None,
            "dst": get("NDA_DST"), "port": get("NDA_PORT"), "vni": get("NDA_VNI"), "via": get("NDA_IFINDEX"),
            "master": get("NDA_MASTER")}


def link_entry(msg) -> dict:
    """A pyroute2 ifinfmsg -> index, flags, name, master, kind and (vxlan) vni / local address."""
    link = {"index": msg["index"], "flags": msg["flags"], "name": msg.get_attr("IFLA_IFNAME"),
            "master": msg.get_attr("IFLA_MASTER"), "kind": None, "vni": None, "local": None}
    info = msg.get_attr("IFLA_LINKINFO")
    if info is not None:
        link["kind"] = info.get_attr("IFLA_INFO_KIND")
        data = info.get_attr("IFLA_INFO_DATA")
        if link["kind"] == "vxlan" and data is not None:
            link["vni"] = data.get_attr("IFLA_VXLAN_ID")
            link["local"] = data.get_attr("IFLA_VXLAN_LOCAL") or data.get_attr("IFLA_VXLAN_LOCAL6")
    return link


class Miss(tuple):
    """(kind, ifindex, key): kind "l3" with key = IP, or "l2" with key = MAC."""

    __slots__ = ()

    def __new__(cls, kind, ifindex, key):
        return tuple.__new__(cls, (kind, ifindex, key))

    kind = property(lambda self: self[0])
    ifindex = property(lambda self: self[1])
    key = property(lambda self: self[2])


def classify_miss(msg_type: int, entry: dict, served_ifindexes) -> Miss | None:
    """A neighbour notification -> Miss, or None if it is not a miss on a served device.

    The family is not used to tell l2 from l3 (the driver fills the message like an fdb
    notification, family AF_BRIDGE).
    """
    if msg_type != RTM_GETNEIGH or entry.get("ifindex") not in served_ifindexes:
        return None
    dst, mac = entry.get("dst"), entry.get("mac")
    if dst and not mac:
        return Miss("l3", entry["ifindex"], dst)
    if mac and not dst:
        return Miss("l2", entry["ifindex"], mac)
    return None


def _family(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


class Kernel:
    """Notifications (one IPRoute, bound to the groups) and dumps/writes (another)."""

    def __init__(self, rcvbuf: int = 4 * 1024 * 1024):
        self.events = IPRoute(rcvbuf=rcvbuf)
        try:  # beyond net.core.rmem_max when we may (CAP_NET_ADMIN)
            self.events.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:
            pass
        self.events.bind(groups=RTMGRP_NEIGH | RTMGRP_LINK)
        # Decode only what the agent reads: misses (RTM_GETNEIGH) in full. Every other
        # notification (the RTM_NEWNEIGH echo of each entry the agent writes, link changes, of
        # which only the type matters) stays a bare header: about 3x cheaper per message.
        self.events.marshal.msg_map = {RTM_GETNEIGH: ndmsg}
        self.events_fd = self.events.fileno()
        os.set_blocking(self.events_fd, False)  # recv_events() drains until EAGAIN
        self.ipr = IPRoute()
        self.ipr.link("get", index=1)  # warm pyroute2 up now, not on the first miss

    def close(self):
        self.events.close()
        self.ipr.close()

    def fileno(self) -> int:
        """What to select() on for notifications."""
        return self.events_fd

    def recv_events(self) -> list:
        """The pending notifications as (msg_type, message); call when fileno() is readable.
        Raises OSError(ENOBUFS) when the kernel dropped notifications (receive queue overrun).

        The datagrams are read off the bound socket here and decoded by pyroute2's own
        marshal: `get()` would run pyroute2's asyncio loop once per call, which measured
        +0.15 ms on the first ping through a miss (docs/dove.md)."""
        out = []
        while True:
            try:
                data = os.read(self.events_fd, RECV_SIZE)
            except BlockingIOError:
                return out
            out.extend((msg["header"]["type"], msg) for msg in self.events.marshal.parse(data))

    def links(self) -> list:
        return [link_entry(msg) for msg in self.ipr.get_links()]

    def neighbours(self, family: int) -> list:
        return [neigh_entry(msg) for msg in self.ipr.neigh("dump", family=family)]

    def neigh_replace(self, ifindex: int, ip: str, mac: str):
        self.ipr.neigh("replace", family=_family(ip), ifindex=ifindex, dst=ip, lladdr=mac, state=NUD_PERMANENT)

    def neigh_delete(self, ifindex: int, ip: str):
        """Remove a neighbour entry; one already gone is not an error."""
        try:
            self.ipr.neigh("del", family=_family(ip), ifindex=ifindex, dst=ip)
        except NetlinkError as exc:
            if exc.code not in ABSENT_ERRNOS:
                raise

    def fdb_replace(self, ifindex: int, mac: str, vtep: str):
        self.ipr.fdb("replace", ifindex=ifindex, lladdr=mac, dst=vtep, state=NUD_PERMANENT | NUD_NOARP, flags=NTF_SELF)

    def fdb_delete(self, ifindex: int, mac: str, vtep: str):
        """Remove an fdb entry; one already gone is not an error."""
        try:
            self.ipr.fdb("del", ifindex=ifindex, lladdr=mac, dst=vtep, flags=NTF_SELF)
        except NetlinkError as exc:
            if exc.code not in ABSENT_ERRNOS:
                raise


def read_namespace_mac(namespace: str, ifname: str) -> str | None:
    """The MAC of `ifname` inside network namespace `namespace` (never creates the namespace)."""
    path = namespace if namespace.startswith("/") else os.path.join("/run/netns", namespace)
    if not os.path.exists(path):
        return None
    try:
        with IPRoute(netns=path, flags=0) as ipr:
            links = ipr.link("get", ifname=ifname)
            return links[0].get_attr("IFLA_ADDRESS") if links else None
    except (NetlinkError, OSError):
        return None
