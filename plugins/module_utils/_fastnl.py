# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pipelined neighbour/fdb table access for large meshes: the collection's one lean netlink path.

Used by the table modules (_tables), the vxlan device rebuild (_vxlan_link) and the lab's
lab_host module; everything else (and the DOVE agent) uses pyroute2. One set of constants (the
kernel's; a unit test checks they equal pyroute2's, which cannot be imported here unguarded: the
modules must load without pyroute2 to report it missing), one acknowledgement strategy (only the
last request of a window asks for an ACK) and one "already gone" rule (already_gone(): a delete
refused with _netlink.ABSENT_ERRNOS).

Why not plain pyroute2 calls: IPRoute.fdb()/neigh() cost about 300 us per entry on this code's
reference machine (a full request/response round trip through pyroute2's generic message
objects), i.e. 3 s for a 10,000-entry full mesh, 15x slower than `bridge -batch`. The messages
themselves are tiny fixed layouts (struct ndmsg + a few attributes), so here they are packed
with `struct`, sent in windows of many requests per sendmsg(), and the kernel's error answers
are matched back to entries by sequence number (only a window's last request asks for an ACK). The socket still comes from pyroute2
(`pyroute2.netns.create_socket`, which opens it inside the target namespace without creating
the namespace).
"""

from __future__ import annotations

import errno
import socket
import struct

from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import ABSENT_ERRNOS, netns_path

# After _netlink, which puts the collection's own pyroute2 first on the path.
try:
    from pyroute2 import netns as pyroute2_netns
except ImportError:  # pragma: no cover - modules report missing_required_lib first
    pyroute2_netns = None

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

RTM_NEWNEIGH = 28
RTM_DELNEIGH = 29
RTM_GETNEIGH = 30

NLMSG_ERROR = 2
NLMSG_DONE = 3

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_DUMP_INTR = 0x10
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1

AF_BRIDGE = 7

NDA_DST = 1
NDA_LLADDR = 2
NDA_PORT = 6
NDA_VNI = 7
NDA_IFINDEX = 8
NDA_MASTER = 9

NTF_SELF = 0x02
NTF_MASTER = 0x04
NTF_EXT_LEARNED = 0x10

NUD_INCOMPLETE = 0x01
NUD_REACHABLE = 0x02
NUD_STALE = 0x04
NUD_DELAY = 0x08
NUD_PROBE = 0x10
NUD_FAILED = 0x20
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80

NUD_NAMES = {
    "permanent": NUD_PERMANENT,
    "noarp": NUD_NOARP,
    "reachable": NUD_REACHABLE,
    "stale": NUD_STALE,
}

_NLMSGHDR = struct.Struct("=IHHII")
_NDMSG = struct.Struct("=BxxxiHBB")
_RTA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_BE16 = struct.Struct("!H")
_HDR_LEN = _NLMSGHDR.size + _NDMSG.size

# Requests per sendmsg(): a window (at most ~90 bytes a request) fits the default 208 KiB send
# buffer, and its answers (at most one error per request, a few hundred bytes with the kernel's
# extended-ACK text) fit the 8 MiB receive buffer, so nothing is dropped with ENOBUFS.
WINDOW = 1024
DUMP_ATTEMPTS = 3


def _attr(kind: int, payload: bytes) -> bytes:
    length = _RTA.size + len(payload)
    return _RTA.pack(length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def _ip_bytes(ip: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _mac_text(raw: bytes) -> str:
    return raw.hex(":")


def _ip_text(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)


class Request:
    """One neighbour-table request; `tag` is whatever the caller wants back with the result."""

    __slots__ = ("msg_type", "flags", "family", "ifindex", "state", "ntf", "attrs", "tag")

    def __init__(self, msg_type, flags, family, ifindex, state, ntf, attrs, tag=None):
        self.msg_type = msg_type
        self.flags = flags
        self.family = family
        self.ifindex = ifindex
        self.state = state
        self.ntf = ntf
        self.attrs = attrs
        self.tag = tag

    def pack(self, seq: int, ack: bool = True) -> bytes:
        flags = self.flags | NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
        return (_NLMSGHDR.pack(_HDR_LEN + len(self.attrs), self.msg_type, flags, seq, 0)
                + _NDMSG.pack(self.family, self.ifindex, self.state, self.ntf, 0) + self.attrs)


def fdb_request(op: str, ifindex: int, mac: str, dst: str, vni=None, port=None, via=None, tag=None) -> Request:
    """An NTF_SELF permanent fdb entry on a vxlan device (AF_BRIDGE, or it lands in the ARP table).

    op: "append" (the flood list: several all-zero entries), "replace" (one VTEP per unicast MAC,
    a moved MAC is repointed in place), "delete".
    """
    attrs = _attr(NDA_LLADDR, _mac_bytes(mac)) + _attr(NDA_DST, _ip_bytes(dst))
    if port:
        attrs += _attr(NDA_PORT, _BE16.pack(port))
    if vni:
        attrs += _attr(NDA_VNI, _U32.pack(vni))
    if via:
        attrs += _attr(NDA_IFINDEX, _U32.pack(via))
    if op == "delete":
        return Request(RTM_DELNEIGH, 0, AF_BRIDGE, ifindex, NUD_PERMANENT, NTF_SELF, attrs, tag)
    flags = NLM_F_CREATE | (NLM_F_APPEND if op == "append" else NLM_F_REPLACE)
    return Request(RTM_NEWNEIGH, flags, AF_BRIDGE, ifindex, NUD_PERMANENT | NUD_NOARP, NTF_SELF, attrs, tag)


def neigh_request(op: str, ifindex: int, ip: str, lladdr: str | None = None, state: int = NUD_PERMANENT, tag=None) -> Request:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    attrs = _attr(NDA_DST, _ip_bytes(ip))
    if op == "delete":
        return Request(RTM_DELNEIGH, 0, family, ifindex, 0, 0, attrs, tag)
    attrs += _attr(NDA_LLADDR, _mac_bytes(lladdr))
    return Request(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, family, ifindex, state, 0, attrs, tag)


def already_gone(request: Request, code: int) -> bool:
    """A delete the kernel refused because the entry is not there: success for an idempotent change."""
    return request.msg_type == RTM_DELNEIGH and code in ABSENT_ERRNOS


class NeighSocket:
    """A raw NETLINK_ROUTE socket for dumping and bulk-changing neighbour/fdb tables.

    netns: open it inside that namespace (never created); fileno: adopt a NETLINK_ROUTE socket
    opened elsewhere (the lab's, made inside a lab host's namespace); closing closes it.
    """

    def __init__(self, netns: str | None = None, fileno: int | None = None):
        if fileno is not None:
            self.sock = socket.socket(fileno=fileno)
        elif netns:
            self.sock = pyroute2_netns.create_socket(
                netns_path(netns), socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE, flags=0
            )
        else:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        for option in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
            try:
                self.sock.setsockopt(SOL_NETLINK, option, 1)
            except OSError:
                pass  # older kernels: full ACKs, no extended messages; still correct
        for option in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, option, 8 * 1024 * 1024)
                break
            except OSError:
                continue
        self.seq = 1

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _messages(self):
        """Yield (type, flags, seq, payload) for every message in the next datagram."""
        data = self.sock.recv(1 << 20)
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, msg_type, flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
            if length < _NLMSGHDR.size:
                break
            yield msg_type, flags, seq, data[offset + _NLMSGHDR.size: offset + length]
            offset += (length + 3) & ~3

    def dump(self, family: int) -> list[dict]:
        """Every neighbour entry of `family` (AF_BRIDGE for fdb) as plain dicts.

        A dump the kernel flags NLM_F_DUMP_INTR (the table changed while it was being read,
        e.g. the kernel learned an entry) may be inconsistent; it is read again.
        """
        for _attempt in range(DUMP_ATTEMPTS - 1):
            entries, interrupted = self._dump_once(family)
            if not interrupted:
                return entries
        return self._dump_once(family)[0]

    def _dump_once(self, family: int) -> tuple[list[dict], bool]:
        self.seq += 1
        seq = self.seq
        body = _NDMSG.pack(family, 0, 0, 0, 0)
        self.sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
        entries = []
        interrupted = False
        while True:
            for msg_type, flags, msg_seq, payload in self._messages():
                if msg_seq != seq:
                    continue
                interrupted = interrupted or bool(flags & NLM_F_DUMP_INTR)
                if msg_type == NLMSG_DONE:
                    return entries, interrupted
                if msg_type == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise OSError(code, "neighbour dump failed: %s" % errno.errorcode.get(code, code))
                    continue
                entries.append(_parse_neigh(payload))

    def apply(self, requests: list[Request]) -> list[tuple[Request, int, str]]:
        """Send every request, pipelined; return the failures as (request, errno, kernel message).

        The kernel answers a request without NLM_F_ACK only when it fails, so only the last
        request of each window asks for an ACK: rtnetlink handles a sendmsg()'s messages in
        order before it returns, so that ACK arriving means every earlier answer (the errors) is
        already queued. One recv() per window instead of one per entry.
        """
        failures = []
        for start in range(0, len(requests), WINDOW):
            window = requests[start:start + WINDOW]
            first_seq = self.seq + 1
            last_seq = first_seq + len(window) - 1
            chunks = [request.pack(first_seq + offset, ack=False) for offset, request in enumerate(window[:-1])]
            chunks.append(window[-1].pack(last_seq, ack=True))
            self.seq = last_seq
            self.sock.sendall(b"".join(chunks))
            barrier = False
            while not barrier:
                for msg_type, flags, msg_seq, payload in self._messages():
                    if msg_type != NLMSG_ERROR or not first_seq <= msg_seq <= last_seq:
                        continue
                    barrier = barrier or msg_seq == last_seq
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        failures.append((window[msg_seq - first_seq], code, _extack_message(payload, flags)))
        return failures


def _parse_neigh(payload: bytes) -> dict:
    family, ifindex, state, ntf, ndm_type = _NDMSG.unpack_from(payload, 0)
    entry = {"family": family, "ifindex": ifindex, "state": state, "flags": ntf,
             "mac": None, "dst": None, "port": None, "vni": None, "via": None, "master": None}
    offset = _NDMSG.size
    end = len(payload)
    while offset + _RTA.size <= end:
        length, kind = _RTA.unpack_from(payload, offset)
        if length < _RTA.size:
            break
        value = payload[offset + _RTA.size: offset + length]
        kind &= 0x3FFF
        if kind == NDA_LLADDR and len(value) == 6:
            entry["mac"] = _mac_text(value)
        elif kind == NDA_DST and len(value) in (4, 16):
            entry["dst"] = _ip_text(value)
        elif kind == NDA_PORT:
            entry["port"] = _BE16.unpack(value[:2])[0]
        elif kind == NDA_VNI:
            entry["vni"] = _U32.unpack(value[:4])[0]
        elif kind == NDA_IFINDEX:
            entry["via"] = _U32.unpack(value[:4])[0]
        elif kind == NDA_MASTER:
            entry["master"] = _U32.unpack(value[:4])[0]
        offset += (length + 3) & ~3
    return entry


def _extack_message(payload: bytes, flags: int) -> str:
    """The kernel's extended-ACK text (NLMSGERR_ATTR_MSG), if it sent one."""
    if not flags & NLM_F_ACK_TLVS:
        return ""
    # struct nlmsgerr: int error + the request's nlmsghdr (capped: header only).
    offset = 4 + _NLMSGHDR.size
    while offset + _RTA.size <= len(payload):
        length, kind = _RTA.unpack_from(payload, offset)
        if length < _RTA.size:
            break
        if kind == NLMSGERR_ATTR_MSG:
            return payload[offset + _RTA.size: offset + length].split(b"\0", 1)[0].decode("utf-8", "replace")
        offset += (length + 3) & ~3
    return ""
