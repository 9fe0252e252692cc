# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""overlay.vxlan DOVE agent: answers l2miss / l3miss of VXLAN devices from a local cache.

One file, deployed by the `overlay.vxlan.dove_agent` role. Needs Python 3.9+ and pyroute2 (for
the table writes); the rest is the standard library.

How it works
  * A raw NETLINK_ROUTE socket subscribed to RTNLGRP_NEIGH (and RTNLGRP_LINK) receives the
    kernel's miss notifications: RTM_GETNEIGH on a served vxlan device, NDA_DST set and no
    NDA_LLADDR = l3miss ("which MAC has this IP?"), NDA_LLADDR set and no NDA_DST = l2miss
    ("which VTEP has this MAC?").
  * Answers come from an in-memory cache of endpoint records (vni, ip, mac, vtep, host) kept
    in sync by the backend: etcd (range + watch over etcd's v3 JSON gateway) or a file the
    inventory renders (reloaded on change). There is never a store round trip per miss.
  * On an l3miss the agent installs the fdb entry (MAC -> VTEP) *and* the permanent neighbour
    entry (IP -> MAC), then announces the answer into the bridge with a gratuitous ARP reply,
    so the VM whose ARP request raised the miss gets its answer at once instead of at its next
    ARP retransmit. On an l2miss it installs the fdb entry.
  * It registers its own host's endpoints in etcd under a lease kept alive while it runs, so a
    dead host's endpoints expire. Watch events replace or remove the entries it installed.
  * On start it adopts the entries already on the served devices (in DOVE mode every permanent
    neighbour entry and every unicast fdb entry with a destination on those devices is the
    agent's) and, after the first full load of the store, removes what the store no longer
    knows and repoints what moved.

Subcommands: run (foreground, for systemd), start / stop / restart (a supervised background
process with a pid file and a log, for hosts without systemd), status (counters as JSON),
check-config, deregister (remove this host's records from etcd).
"""

from __future__ import annotations

import argparse
import base64
import errno
import http.client
import ipaddress
import json
import logging
import os
import queue
import re
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.parse

__version__ = "0.1.0"

LOG = logging.getLogger("overlay-vxlan-agent")

# ---------------------------------------------------------------------------------------------
# netlink constants (linux/rtnetlink.h, linux/neighbour.h)
NETLINK_ROUTE = 0
RTMGRP_LINK = 0x1
RTMGRP_NEIGH = 0x4
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWNEIGH = 28
RTM_DELNEIGH = 29
RTM_GETNEIGH = 30
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
AF_BRIDGE = 7
NDA_DST = 1
NDA_LLADDR = 2
NDA_PORT = 6
NDA_VNI = 7
NDA_IFINDEX = 8
NDA_MASTER = 9
NTF_SELF = 0x02
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
IFLA_IFNAME = 3
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_VXLAN_ID = 1
IFLA_VXLAN_LOCAL = 4
IFLA_VXLAN_LOCAL6 = 17

_NLMSGHDR = struct.Struct("=IHHII")
_NDMSG = struct.Struct("=BxxxiHBB")
_IFINFOMSG = struct.Struct("=BxHiII")
_RTA = struct.Struct("=HH")

VNI_MAX = 16777215
ZERO_MAC = "00:00:00:00:00:00"
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9_.-]{1,253}$")

# ---------------------------------------------------------------------------------------------
# records


class RecordError(ValueError):
    """A store record that must not be installed; the message says why."""


class Endpoint(tuple):
    """One VM endpoint: (vni, ip, mac, vtep, host). Immutable, hashable, comparable."""

    __slots__ = ()
    _fields = ("vni", "ip", "mac", "vtep", "host")

    def __new__(cls, vni, ip, mac, vtep, host=""):
        return tuple.__new__(cls, (vni, ip, mac, vtep, host))

    vni = property(lambda self: self[0])
    ip = property(lambda self: self[1])
    mac = property(lambda self: self[2])
    vtep = property(lambda self: self[3])
    host = property(lambda self: self[4])

    def as_dict(self) -> dict:
        return dict(zip(self._fields, self, strict=True))

    def __repr__(self):
        return "Endpoint(vni=%d, ip=%s, mac=%s, vtep=%s, host=%s)" % self


def normalize_mac(value, field: str = "mac") -> str:
    """Lower-case colon form of a unicast, non-zero MAC; RecordError otherwise."""
    if not isinstance(value, str):
        raise RecordError("%s: not a string: %r" % (field, value))
    text = value.strip().lower().replace("-", ":")
    if not _MAC_RE.match(text):
        raise RecordError("%s: malformed MAC %r" % (field, value))
    if text == ZERO_MAC:
        raise RecordError("%s: all-zero MAC %r" % (field, value))
    if int(text[:2], 16) & 1:
        raise RecordError("%s: multicast/broadcast MAC %r" % (field, value))
    return text


def normalize_ip(value, field: str = "ip") -> str:
    """Compressed text of a unicast IPv4/IPv6 address; RecordError otherwise."""
    if not isinstance(value, str):
        raise RecordError("%s: not a string: %r" % (field, value))
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        raise RecordError("%s: malformed IP address %r" % (field, value)) from None
    if addr.is_multicast or addr.is_unspecified or (addr.version == 4 and int(addr) == 0xFFFFFFFF):
        raise RecordError("%s: not a unicast address %r" % (field, value))
    return str(addr)


def normalize_vni(value, field: str = "vni") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise RecordError("%s: not an integer: %r" % (field, value))
    try:
        vni = int(value)
    except ValueError:
        raise RecordError("%s: not an integer: %r" % (field, value)) from None
    if not 1 <= vni <= VNI_MAX:
        raise RecordError("%s: %d out of range 1..%d" % (field, vni, VNI_MAX))
    return vni


def validate_record(data) -> Endpoint:
    """A store record (dict or JSON text/bytes) -> Endpoint, or RecordError naming the fault."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise RecordError("value is not UTF-8") from None
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise RecordError("value is not JSON (%s)" % exc) from None
    if not isinstance(data, dict):
        raise RecordError("value is not a JSON object")
    missing = [name for name in ("vni", "ip", "mac", "vtep") if name not in data]
    if missing:
        raise RecordError("missing field(s): %s" % ", ".join(missing))
    host = data.get("host", "")
    if host is None:
        host = ""
    if not isinstance(host, str) or (host and not _HOST_RE.match(host)):
        raise RecordError("host: malformed %r" % (host,))
    ip = normalize_ip(data["ip"], "ip")
    vtep = normalize_ip(data["vtep"], "vtep")
    if ipaddress.ip_address(vtep).is_loopback:
        raise RecordError("vtep: loopback address %r" % data["vtep"])
    return Endpoint(normalize_vni(data["vni"]), ip, normalize_mac(data["mac"]), vtep, host)


def record_key(prefix: str, endpoint: Endpoint) -> str:
    """The etcd key of a record: <prefix>/endpoints/<vni>/<ip>/<host>."""
    return "%s/endpoints/%d/%s/%s" % (prefix.rstrip("/"), endpoint.vni, endpoint.ip, endpoint.host)


def record_value(endpoint: Endpoint) -> str:
    return json.dumps(endpoint.as_dict(), sort_keys=True, separators=(",", ":"))


def parse_key(prefix: str, key: str):
    """(vni, ip, host) from an etcd key, or RecordError."""
    base = prefix.rstrip("/") + "/endpoints/"
    if not key.startswith(base):
        raise RecordError("key outside %s" % base)
    parts = key[len(base):].split("/")
    if len(parts) != 3 or not all(parts):
        raise RecordError("key is not <vni>/<ip>/<host>")
    vni = normalize_vni(parts[0], "key vni")
    ip = normalize_ip(parts[1], "key ip")
    if not _HOST_RE.match(parts[2]):
        raise RecordError("key host: malformed %r" % parts[2])
    return vni, ip, parts[2]


def validate_keyed_record(prefix: str, key: str, value) -> Endpoint:
    """An etcd key/value -> Endpoint; the key must agree with the value."""
    vni, ip, host = parse_key(prefix, key)
    endpoint = validate_record(value)
    if (endpoint.vni, endpoint.ip) != (vni, ip):
        raise RecordError("key says vni %d ip %s, value says vni %d ip %s" % (vni, ip, endpoint.vni, endpoint.ip))
    if endpoint.host and endpoint.host != host:
        raise RecordError("key says host %s, value says host %s" % (host, endpoint.host))
    return Endpoint(endpoint.vni, endpoint.ip, endpoint.mac, endpoint.vtep, host)


def parse_endpoint_map(data) -> tuple[dict, list]:
    """The file backend's map ({"endpoints": [...]} or a bare list) -> ({key: (Endpoint, rev)}, errors).

    Later entries win over earlier ones for the same (vni, ip, host); malformed entries are
    reported in `errors` as (position, reason) and left out.
    """
    if isinstance(data, dict):
        items = data.get("endpoints", [])
    else:
        items = data
    if not isinstance(items, list):
        return {}, [("endpoints", "is not a list")]
    records: dict = {}
    errors = []
    for position, item in enumerate(items):
        try:
            endpoint = validate_record(item)
        except RecordError as exc:
            errors.append(("endpoints[%d]" % position, str(exc)))
            continue
        records["%d/%s/%s" % (endpoint.vni, endpoint.ip, endpoint.host)] = (endpoint, position + 1)
    return records, errors


# ---------------------------------------------------------------------------------------------
# cache


class EndpointCache:
    """Every valid record the backend knows, indexed by (vni, ip) and (vni, mac).

    Several records may claim the same IP or MAC during a move (the new host registered, the
    old one not yet gone); the one with the highest revision (etcd mod_revision, or position
    in the file) wins.
    """

    def __init__(self):
        self._records: dict = {}  # source key -> (Endpoint, revision)
        self._by_ip: dict = {}  # (vni, ip) -> {source key}
        self._by_mac: dict = {}  # (vni, mac) -> {source key}

    def __len__(self):
        return len(self._records)

    def __contains__(self, key):
        return key in self._records

    def get(self, key):
        item = self._records.get(key)
        return item[0] if item else None

    def items(self):
        return [(key, item[0]) for key, item in self._records.items()]

    def put(self, key: str, endpoint: Endpoint, revision: int) -> bool:
        old = self._records.get(key)
        if old == (endpoint, revision):
            return False
        if old is not None:
            self._unindex(key, old[0])
        self._records[key] = (endpoint, revision)
        self._by_ip.setdefault((endpoint.vni, endpoint.ip), set()).add(key)
        self._by_mac.setdefault((endpoint.vni, endpoint.mac), set()).add(key)
        return old is None or old[0] != endpoint

    def delete(self, key: str) -> bool:
        old = self._records.pop(key, None)
        if old is None:
            return False
        self._unindex(key, old[0])
        return True

    def replace_all(self, records: dict) -> bool:
        """Make the cache exactly `records` ({key: (Endpoint, revision)}); True if anything changed."""
        changed = False
        for key in [key for key in self._records if key not in records]:
            changed |= self.delete(key)
        for key, (endpoint, revision) in records.items():
            changed |= self.put(key, endpoint, revision)
        return changed

    def _unindex(self, key, endpoint):
        for index, ident in ((self._by_ip, (endpoint.vni, endpoint.ip)), (self._by_mac, (endpoint.vni, endpoint.mac))):
            keys = index.get(ident)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[ident]

    def _best(self, keys):
        if not keys:
            return None
        return max((self._records[key] for key in keys), key=lambda item: (item[1], item[0]))[0]

    def by_ip(self, vni: int, ip: str):
        return self._best(self._by_ip.get((vni, ip)))

    def by_mac(self, vni: int, mac: str):
        return self._best(self._by_mac.get((vni, mac)))


# ---------------------------------------------------------------------------------------------
# netlink parsing (plain functions over bytes; the unit tests feed them kernel-shaped messages)


def iter_netlink(data: bytes):
    """Yield (msg_type, flags, seq, payload) for each message in a netlink datagram."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, msg_type, flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            return
        yield msg_type, flags, seq, data[offset + _NLMSGHDR.size: offset + length]
        offset += (length + 3) & ~3


def iter_attrs(payload: bytes, offset: int):
    while offset + _RTA.size <= len(payload):
        length, kind = _RTA.unpack_from(payload, offset)
        if length < _RTA.size:
            return
        yield kind & 0x3FFF, payload[offset + _RTA.size: offset + length]
        offset += (length + 3) & ~3


def _mac_text(raw: bytes) -> str:
    return ":".join("%02x" % b for b in raw)


def _ip_text(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)


def parse_ndmsg(payload: bytes) -> dict:
    """A struct ndmsg + NDA_* attributes -> dict (family, ifindex, state, flags, mac, dst, ...)."""
    family, ifindex, state, flags, ndm_type = _NDMSG.unpack_from(payload, 0)
    entry = {"family": family, "ifindex": ifindex, "state": state, "flags": flags, "type": ndm_type,
             "mac": None, "dst": None, "port": None, "vni": None, "via": None, "master": None}
    for kind, value in iter_attrs(payload, _NDMSG.size):
        if kind == NDA_LLADDR and len(value) == 6:
            entry["mac"] = _mac_text(value)
        elif kind == NDA_DST and len(value) in (4, 16):
            entry["dst"] = _ip_text(value)
        elif kind == NDA_PORT and len(value) >= 2:
            entry["port"] = struct.unpack("!H", value[:2])[0]
        elif kind == NDA_VNI and len(value) >= 4:
            entry["vni"] = struct.unpack("=I", value[:4])[0]
        elif kind == NDA_IFINDEX and len(value) >= 4:
            entry["via"] = struct.unpack("=I", value[:4])[0]
        elif kind == NDA_MASTER and len(value) >= 4:
            entry["master"] = struct.unpack("=I", value[:4])[0]
    return entry


def parse_ifinfomsg(payload: bytes) -> dict:
    """A struct ifinfomsg + the IFLA_* attributes the agent needs."""
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(payload, 0)
    link = {"index": index, "flags": flags, "name": None, "master": None, "kind": None, "vni": None, "local": None}
    for kind, value in iter_attrs(payload, _IFINFOMSG.size):
        if kind == IFLA_IFNAME:
            link["name"] = value.split(b"\0", 1)[0].decode("utf-8", "replace")
        elif kind == IFLA_MASTER and len(value) >= 4:
            link["master"] = struct.unpack("=I", value[:4])[0]
        elif kind == IFLA_LINKINFO:
            for sub, subval in iter_attrs(value, 0):
                if sub == IFLA_INFO_KIND:
                    link["kind"] = subval.split(b"\0", 1)[0].decode()
                elif sub == IFLA_INFO_DATA:
                    for dkind, dval in iter_attrs(subval, 0):
                        if dkind == IFLA_VXLAN_ID and len(dval) >= 4:
                            link["vni"] = struct.unpack("=I", dval[:4])[0]
                        elif dkind in (IFLA_VXLAN_LOCAL, IFLA_VXLAN_LOCAL6) and len(dval) in (4, 16):
                            link["local"] = _ip_text(dval)
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

    The vxlan driver reports both misses as RTM_GETNEIGH on the vxlan device's ifindex: l3miss
    with NDA_DST (the IP asked for) and no NDA_LLADDR, l2miss with NDA_LLADDR (the MAC asked
    for) and no NDA_DST. The family is not used to tell them apart (the driver fills the
    message like an fdb notification).
    """
    if msg_type != RTM_GETNEIGH or entry.get("ifindex") not in served_ifindexes:
        return None
    dst, mac = entry.get("dst"), entry.get("mac")
    if dst and not mac:
        return Miss("l3", entry["ifindex"], dst)
    if mac and not dst:
        return Miss("l2", entry["ifindex"], mac)
    return None


# ---------------------------------------------------------------------------------------------
# reconcile (plain function)


def plan_reconcile(owned_neigh: dict, owned_fdb: dict, cache: EndpointCache, local_vteps, interest=()) -> list:
    """What to change so the entries the agent owns match the cache.

    owned_neigh: {(vni, ip): mac} permanent neighbour entries the agent owns.
    owned_fdb:   {(vni, mac): vtep} unicast fdb entries the agent owns.
    interest:    (vni, ip) pairs VMs asked for recently; if one is known again it is installed
                 (so a record that disappears and comes back during a move is repointed without
                 waiting for the next miss).
    Returns ordered operations: ("fdb", "replace", vni, mac, vtep), ("neigh", "replace", vni,
    ip, mac), ("neigh", "delete", vni, ip, mac), ("fdb", "delete", vni, mac, vtep). fdb
    replacements come first (so a neighbour entry never points at a MAC without a VTEP),
    neighbour deletions before fdb deletions.
    """
    local_vteps = set(local_vteps)
    fdb_replace, neigh_replace, neigh_delete, fdb_delete = [], [], [], []
    wanted_fdb = {}
    for (vni, ip), mac in sorted(owned_neigh.items()):
        endpoint = cache.by_ip(vni, ip)
        if endpoint is None or endpoint.vtep in local_vteps:
            neigh_delete.append(("neigh", "delete", vni, ip, mac))
            continue
        if endpoint.mac != mac:
            neigh_replace.append(("neigh", "replace", vni, ip, endpoint.mac))
        wanted_fdb[(vni, endpoint.mac)] = endpoint.vtep
    for vni, ip in sorted(set(interest) - set(owned_neigh)):
        endpoint = cache.by_ip(vni, ip)
        if endpoint is None or endpoint.vtep in local_vteps:
            continue
        neigh_replace.append(("neigh", "replace", vni, ip, endpoint.mac))
        wanted_fdb[(vni, endpoint.mac)] = endpoint.vtep
    for (vni, mac), vtep in sorted(owned_fdb.items()):
        endpoint = cache.by_mac(vni, mac)
        if endpoint is None or endpoint.vtep in local_vteps:
            if (vni, mac) not in wanted_fdb:
                fdb_delete.append(("fdb", "delete", vni, mac, vtep))
            continue
        if endpoint.vtep != vtep:
            fdb_replace.append(("fdb", "replace", vni, mac, endpoint.vtep))
        wanted_fdb.pop((vni, mac), None)
    for (vni, mac), vtep in sorted(wanted_fdb.items()):
        if owned_fdb.get((vni, mac)) != vtep:
            fdb_replace.append(("fdb", "replace", vni, mac, vtep))
    return fdb_replace + neigh_replace + neigh_delete + fdb_delete


def adopt_entries(neigh_entries, fdb_entries, ifindex_vni: dict) -> tuple[dict, dict]:
    """Kernel dumps -> (owned_neigh, owned_fdb): what the agent owns on its served devices.

    Owned: permanent neighbour entries with a MAC, and permanent NTF_SELF fdb entries with a
    unicast MAC and a destination. The all-zero flood entries and bridge (master) entries are
    never touched.
    """
    owned_neigh, owned_fdb = {}, {}
    for entry in neigh_entries:
        vni = ifindex_vni.get(entry.get("ifindex"))
        if vni is None or entry.get("family") not in (socket.AF_INET, socket.AF_INET6):
            continue
        if not entry.get("state", 0) & NUD_PERMANENT or not entry.get("dst") or not entry.get("mac"):
            continue
        owned_neigh[(vni, entry["dst"])] = entry["mac"]
    for entry in fdb_entries:
        vni = ifindex_vni.get(entry.get("ifindex"))
        if vni is None or entry.get("family") != AF_BRIDGE or not entry.get("flags", 0) & NTF_SELF:
            continue
        mac = entry.get("mac")
        if not mac or mac == ZERO_MAC or int(mac[:2], 16) & 1 or not entry.get("dst"):
            continue
        if not entry.get("state", 0) & NUD_PERMANENT:
            continue
        owned_fdb[(vni, mac)] = entry["dst"]
    return owned_neigh, owned_fdb


# ---------------------------------------------------------------------------------------------
# gratuitous ARP


def build_garp(mac: str, ip: str) -> bytes:
    """A broadcast gratuitous ARP reply announcing ip is-at mac (sender = target, tha = sha).

    A VM with an INCOMPLETE entry for `ip` accepts it, and sends the packets it queued.
    """
    hw = bytes.fromhex(mac.replace(":", ""))
    proto = socket.inet_aton(ip)
    eth = b"\xff" * 6 + hw + struct.pack("!H", 0x0806)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + hw + proto + hw + proto
    return eth + arp + b"\0" * 18  # pad to the 60-byte Ethernet minimum


# ---------------------------------------------------------------------------------------------
# metrics


def percentile(sorted_values, fraction: float):
    """Nearest-rank percentile of an already sorted list; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, int(-(-fraction * len(sorted_values) // 1)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Metrics:
    """Counters and a ring of recent miss-to-entry latencies (microseconds)."""

    COUNTERS = ("misses_seen", "misses_answered", "misses_unknown", "misses_local", "misses_l2", "misses_l3",
                "announcements_sent", "records_rejected", "entries_installed", "entries_removed",
                "kernel_errors", "store_errors", "events_lost", "resyncs")

    def __init__(self, ring: int = 4096):
        self.counters = dict.fromkeys(self.COUNTERS, 0)
        self.latencies: list = []
        self.ring = ring
        self.started = time.time()
        self.store_state = "unknown"
        self.store_since = time.time()
        self.cache_size = 0
        self.owned = {"neigh": 0, "fdb": 0}
        self.dirty = True

    def inc(self, name: str, amount: int = 1):
        self.counters[name] += amount
        self.dirty = True

    def latency(self, microseconds: float):
        self.latencies.append(round(microseconds, 1))
        if len(self.latencies) > self.ring:
            del self.latencies[: len(self.latencies) - self.ring]
        self.dirty = True

    def set_store(self, state: str):
        if state != self.store_state:
            self.store_state = state
            self.store_since = time.time()
            self.dirty = True

    def snapshot(self) -> dict:
        ordered = sorted(self.latencies)
        return {
            "version": __version__,
            "pid": os.getpid(),
            "started": self.started,
            "updated": time.time(),
            "counters": dict(self.counters),
            "resolve_latency_us": {
                "count": len(ordered),
                "p50": percentile(ordered, 0.50),
                "p99": percentile(ordered, 0.99),
                "max": ordered[-1] if ordered else None,
                "recent": self.latencies[-1000:],
            },
            "store": {"state": self.store_state, "since": self.store_since},
            "cache_size": self.cache_size,
            "owned": dict(self.owned),
        }

    def write(self, path: str):
        if not path:
            return
        data = json.dumps(self.snapshot(), sort_keys=True)
        tmp = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(data)
        os.replace(tmp, path)
        self.dirty = False


# ---------------------------------------------------------------------------------------------
# configuration

DEFAULT_CONFIG = {
    "host": None,
    "vtep": None,
    "backend": "etcd",
    "networks": [],
    "local_endpoints": [],
    "etcd": {
        "endpoints": ["http://127.0.0.1:2379"],
        "prefix": "/overlay-vxlan",
        "lease_ttl": 10,
        "timeout": 3.0,
        "ca_cert": None,
        "cert": None,
        "key": None,
        "api_path": "auto",
    },
    "file": {"path": "/etc/overlay-vxlan/endpoints.json", "poll_interval": 0.2},
    "announce": True,
    "interest_ttl": 300,
    "metrics_file": "/run/overlay-vxlan-agent/metrics.json",
    "metrics_interval": 1.0,
    "log_level": "info",
}


class ConfigError(ValueError):
    pass


def load_config(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except OSError as exc:
        raise ConfigError("cannot read %s: %s" % (path, exc.strerror)) from None
    except ValueError as exc:
        raise ConfigError("%s is not JSON: %s" % (path, exc)) from None
    return validate_config(raw)


def validate_config(raw) -> dict:
    """Merge defaults and check every field; ConfigError names the first bad one."""
    if not isinstance(raw, dict):
        raise ConfigError("configuration is not a JSON object")
    config = json.loads(json.dumps(DEFAULT_CONFIG))
    for key, value in raw.items():
        if key not in config:
            raise ConfigError("unknown option %r" % key)
        if isinstance(config[key], dict):
            if not isinstance(value, dict):
                raise ConfigError("%s: must be an object" % key)
            unknown = set(value) - set(config[key])
            if unknown:
                raise ConfigError("%s: unknown option(s) %s" % (key, ", ".join(sorted(unknown))))
            config[key].update(value)
        else:
            config[key] = value
    if not isinstance(config["host"], str) or not _HOST_RE.match(config["host"] or ""):
        raise ConfigError("host: required, letters/digits/._- only")
    try:
        config["vtep"] = normalize_ip(config["vtep"] or "", "vtep")
    except RecordError as exc:
        raise ConfigError(str(exc)) from None
    if config["backend"] not in ("etcd", "file"):
        raise ConfigError("backend: must be etcd or file, not %r" % config["backend"])
    if not isinstance(config["networks"], list) or not config["networks"]:
        raise ConfigError("networks: at least one network is required")
    seen_vni = set()
    for position, net in enumerate(config["networks"]):
        field = "networks[%d]" % position
        if not isinstance(net, dict) or not net.get("vxlan_dev"):
            raise ConfigError("%s: needs vxlan_dev" % field)
        try:
            net["vni"] = normalize_vni(net.get("vni"), field + ".vni")
        except RecordError as exc:
            raise ConfigError(str(exc)) from None
        if net["vni"] in seen_vni:
            raise ConfigError("%s: vni %d listed twice" % (field, net["vni"]))
        seen_vni.add(net["vni"])
        net.setdefault("name", str(net["vni"]))
        net.setdefault("bridge", None)
    names = {net["name"]: net["vni"] for net in config["networks"]}
    endpoints = []
    for position, ep in enumerate(config["local_endpoints"] or []):
        field = "local_endpoints[%d]" % position
        if not isinstance(ep, dict):
            raise ConfigError("%s: must be an object" % field)
        vni = ep.get("vni")
        if vni is None and ep.get("network") in names:
            vni = names[ep["network"]]
        try:
            vni = normalize_vni(vni, field + ".vni")
            ip = normalize_ip(str(ep.get("ip") or ep.get("address") or "").split("/", maxsplit=1)[0], field + ".ip")
            mac = normalize_mac(ep["mac"], field + ".mac") if ep.get("mac") else None
        except RecordError as exc:
            raise ConfigError(str(exc)) from None
        if vni not in seen_vni:
            raise ConfigError("%s: vni %d is not one of the served networks" % (field, vni))
        if mac is None and not (ep.get("namespace") and ep.get("vm_if")):
            raise ConfigError("%s: needs mac, or namespace and vm_if to read it from" % field)
        endpoints.append({"vni": vni, "ip": ip, "mac": mac, "namespace": ep.get("namespace"), "vm_if": ep.get("vm_if")})
    config["local_endpoints"] = endpoints
    etcd = config["etcd"]
    if isinstance(etcd["endpoints"], str):
        etcd["endpoints"] = [item.strip() for item in etcd["endpoints"].split(",") if item.strip()]
    if config["backend"] == "etcd":
        if not etcd["endpoints"]:
            raise ConfigError("etcd.endpoints: at least one URL is required")
        for url in etcd["endpoints"]:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError("etcd.endpoints: %r is not an http(s) URL" % url)
        if bool(etcd["cert"]) != bool(etcd["key"]):
            raise ConfigError("etcd.cert and etcd.key go together")
        if not isinstance(etcd["lease_ttl"], int) or etcd["lease_ttl"] < 2:
            raise ConfigError("etcd.lease_ttl: an integer >= 2 seconds")
        if not str(etcd["prefix"]).startswith("/"):
            raise ConfigError("etcd.prefix: must start with /")
    elif not config["file"]["path"]:
        raise ConfigError("file.path: required for the file backend")
    if str(config["log_level"]).lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("log_level: debug, info, warning or error")
    return config


# ---------------------------------------------------------------------------------------------
# etcd v3 JSON gateway client (standard library only)


class StoreError(Exception):
    """The store could not be reached or refused a request."""


class LeaseLost(StoreError):
    pass


class WatchCanceled(StoreError):
    pass


def _b64(text) -> str:
    if isinstance(text, str):
        text = text.encode("utf-8")
    return base64.b64encode(text).decode("ascii")


def _unb64(text) -> bytes:
    return base64.b64decode(text or "")


def prefix_range_end(prefix: str) -> bytes:
    """etcd's range_end for "every key starting with prefix"."""
    raw = bytearray(prefix.encode("utf-8"))
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"


def iter_json_stream(buffer: str):
    """Split a buffer of concatenated JSON documents -> (documents, remainder)."""
    decoder = json.JSONDecoder()
    docs = []
    index = 0
    length = len(buffer)
    while True:
        while index < length and buffer[index] in " \r\n\t":
            index += 1
        if index >= length:
            return docs, ""
        try:
            doc, end = decoder.raw_decode(buffer, index)
        except ValueError:
            return docs, buffer[index:]
        docs.append(doc)
        index = end


class EtcdClient:
    """A small client of etcd's v3 JSON gateway: range, put, delete, lease, watch.

    Several endpoints (the members of a cluster) are tried in turn; https endpoints use the CA
    and client certificate given. One instance per thread.
    """

    def __init__(self, endpoints, timeout=3.0, ca_cert=None, cert=None, key=None, api_path="auto"):
        self.endpoints = [urllib.parse.urlsplit(url) for url in endpoints]
        self.timeout = float(timeout)
        self.current = 0
        self._api_path = None if api_path in (None, "", "auto") else "/" + api_path.strip("/") + "/"
        self._conn = None
        self._watch_conn = None
        self._ssl = None
        if any(parts.scheme == "https" for parts in self.endpoints):
            self._ssl = ssl.create_default_context(cafile=ca_cert) if ca_cert else ssl.create_default_context()
            if cert:
                self._ssl.load_cert_chain(cert, key)

    def _new_connection(self, parts, timeout):
        port = parts.port or 2379
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.hostname, port, timeout=timeout, context=self._ssl)
        return http.client.HTTPConnection(parts.hostname, port, timeout=timeout)

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.close_watch()

    def close_watch(self):
        conn = self._watch_conn
        if conn is not None:
            try:
                if conn.sock is not None:
                    conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _discover(self, conn):
        conn.request("GET", "/version")
        resp = conn.getresponse()
        body = resp.read()
        try:
            version = json.loads(body)["etcdserver"]
            major_minor = tuple(int(part) for part in version.split(".")[:2])
        except (ValueError, KeyError, TypeError):
            major_minor = (3, 4)
        if major_minor >= (3, 4):
            return "/v3/"
        return "/v3beta/" if major_minor >= (3, 3) else "/v3alpha/"

    def call(self, path: str, body: dict) -> dict:
        """POST one unary request; tries every endpoint once. StoreError when none answers."""
        payload = json.dumps(body)
        errors = []
        for attempt in range(len(self.endpoints)):
            index = (self.current + attempt) % len(self.endpoints)
            parts = self.endpoints[index]
            try:
                if self._conn is None or index != self.current:
                    if self._conn is not None:
                        self._conn.close()
                    self._conn = self._new_connection(parts, self.timeout)
                    self.current = index
                if self._api_path is None:
                    self._api_path = self._discover(self._conn)
                self._conn.request("POST", self._api_path + path, payload, {"Content-Type": "application/json"})
                resp = self._conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                errors.append("%s: %s" % (parts.netloc, exc))
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                continue
            try:
                result = json.loads(data or b"{}")
            except ValueError:
                result = {"error": data[:200].decode("utf-8", "replace")}
            if resp.status == 200 and "error" not in result:
                return result
            message = result.get("error") or result.get("message") or "HTTP %d" % resp.status
            if "lease not found" in message:
                raise LeaseLost(message)
            if resp.status >= 500 or resp.status == 429:
                errors.append("%s: %s" % (parts.netloc, message))
                self._conn.close()
                self._conn = None
                continue
            raise StoreError("%s: %s" % (parts.netloc, message))
        raise StoreError("no etcd endpoint answered (%s)" % "; ".join(errors))

    # --- KV
    def range_prefix(self, prefix: str):
        """(revision, [(key, value bytes, mod_revision)]) of every key under prefix."""
        result = self.call("kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_range_end(prefix))})
        revision = int(result.get("header", {}).get("revision", 0))
        kvs = [(_unb64(kv["key"]).decode("utf-8", "replace"), _unb64(kv.get("value")), int(kv.get("mod_revision", 0)))
               for kv in result.get("kvs", [])]
        return revision, kvs

    def put(self, key: str, value: str, lease: int = 0):
        body = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        return self.call("kv/put", body)

    def delete(self, key: str):
        return self.call("kv/deleterange", {"key": _b64(key)})

    # --- leases
    def grant(self, ttl: int) -> int:
        result = self.call("lease/grant", {"TTL": int(ttl), "ID": 0})
        if result.get("error"):
            raise StoreError(result["error"])
        return int(result["ID"])

    def keepalive(self, lease: int) -> int:
        """Refresh a lease; its remaining TTL, or LeaseLost if it expired."""
        result = self.call("lease/keepalive", {"ID": str(lease)})
        ttl = int(result.get("result", {}).get("TTL", 0) or 0)
        if ttl <= 0:
            raise LeaseLost("lease %x expired" % lease)
        return ttl

    def revoke(self, lease: int):
        return self.call("lease/revoke", {"ID": str(lease)})

    # --- watch
    def watch(self, prefix: str, start_revision: int, stop: threading.Event):
        """Yield lists of (type, key, value bytes, mod_revision) until the stream ends.

        type is "PUT" or "DELETE". Returns when the server closes the stream or `stop` is set;
        raises StoreError / WatchCanceled (compaction) on failures. The caller resynchronises.
        """
        parts = self.endpoints[self.current]
        conn = self._new_connection(parts, self.timeout)
        self._watch_conn = conn
        try:
            if self._api_path is None:
                self._api_path = self._discover(conn)
            body = {"create_request": {"key": _b64(prefix), "range_end": _b64(prefix_range_end(prefix)),
                                       "start_revision": str(start_revision), "progress_notify": True}}
            conn.request("POST", self._api_path + "watch", json.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise StoreError("watch refused: HTTP %d" % resp.status)
            sock = conn.sock
            sock.settimeout(None)
            _tcp_keepalive(sock)
            buffer = ""
            while not stop.is_set():
                try:
                    chunk = resp.read1(65536)
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    if stop.is_set():
                        return
                    raise StoreError("watch stream broke: %s" % exc) from None
                if not chunk:
                    return
                buffer += chunk.decode("utf-8", "replace")
                docs, buffer = iter_json_stream(buffer)
                for doc in docs:
                    batch = watch_events(doc)
                    if batch:
                        yield batch
        except (OSError, http.client.HTTPException) as exc:
            if stop.is_set():
                return
            raise StoreError("watch failed on %s: %s" % (parts.netloc, exc)) from None
        finally:
            self._watch_conn = None
            conn.close()


def watch_events(doc: dict) -> list:
    """One message of the watch stream -> [(type, key, value, mod_revision)] (may be empty)."""
    if "error" in doc:
        error = doc["error"]
        raise StoreError("watch error: %s" % (error.get("message") if isinstance(error, dict) else error))
    result = doc.get("result", {})
    if result.get("canceled"):
        raise WatchCanceled("watch canceled (compact_revision %s)" % result.get("compact_revision"))
    events = []
    for event in result.get("events", []) or []:
        kv = event.get("kv", {})
        kind = event.get("type", "PUT") or "PUT"
        events.append((kind, _unb64(kv.get("key")).decode("utf-8", "replace"), _unb64(kv.get("value")),
                       int(kv.get("mod_revision", 0))))
    return events


def _tcp_keepalive(sock):
    """Notice a silently dead etcd member within ~10 s."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 4)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 2)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    except (OSError, AttributeError):
        pass


def make_etcd_client(config: dict) -> EtcdClient:
    etcd = config["etcd"]
    return EtcdClient(etcd["endpoints"], etcd["timeout"], etcd["ca_cert"], etcd["cert"], etcd["key"], etcd["api_path"])


# ---------------------------------------------------------------------------------------------
# backends


class QuietRetry:
    """Logs the first failure of a kind at warning, repeats at debug, and recovery at info."""

    def __init__(self, what: str):
        self.what = what
        self.failing = False
        self.failures = 0

    def failed(self, exc):
        self.failures += 1
        if not self.failing:
            LOG.warning("%s: %s; retrying quietly", self.what, exc)
            self.failing = True
        else:
            LOG.debug("%s still failing (%d): %s", self.what, self.failures, exc)

    def ok(self):
        if self.failing:
            LOG.info("%s: recovered after %d failed attempt(s)", self.what, self.failures)
        self.failing = False
        self.failures = 0


class EtcdWatcher(threading.Thread):
    """Loads every record under the prefix, then follows the watch; resyncs after any break."""

    def __init__(self, config, post, stop):
        super().__init__(name="etcd-watch", daemon=True)
        self.config = config
        self.prefix = config["etcd"]["prefix"].rstrip("/") + "/endpoints/"
        self.post = post
        self.stop = stop
        self.client = make_etcd_client(config)
        self.retry = QuietRetry("etcd watch")

    def interrupt(self):
        """Break the current watch stream (another thread noticed the store is gone)."""
        self.client.close_watch()

    def run(self):
        backoff = 0.2
        while not self.stop.is_set():
            try:
                revision, kvs = self.client.range_prefix(self.prefix)
                self.post(("snapshot", kvs))
                self.retry.ok()
                backoff = 0.2
                for batch in self.client.watch(self.prefix, revision + 1, self.stop):
                    self.post(("events", batch))
                if not self.stop.is_set():
                    LOG.debug("etcd watch stream ended; resynchronising")
            except StoreError as exc:
                self.post(("store", "down"))
                self.retry.failed(exc)
                self.client.close()
                self.client.current = (self.client.current + 1) % len(self.client.endpoints)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)


class EtcdRegistrar(threading.Thread):
    """Keeps this host's records in etcd under a lease, and the lease alive."""

    def __init__(self, config, stop, on_failure=None):
        super().__init__(name="etcd-lease", daemon=True)
        self.config = config
        self.prefix = config["etcd"]["prefix"]
        self.ttl = config["etcd"]["lease_ttl"]
        self.stop = stop
        self.client = make_etcd_client(config)
        self.lock = threading.Lock()
        self.kick = threading.Event()
        self.desired: dict = {}  # key -> value
        self.registered: dict = {}  # key -> value, under self.lease
        self.lease = 0
        self.on_failure = on_failure
        self.retry = QuietRetry("etcd registration")

    def set_endpoints(self, endpoints):
        desired = {record_key(self.prefix, ep): record_value(ep) for ep in endpoints}
        with self.lock:
            changed = desired != self.desired
            self.desired = desired
        if changed:
            self.kick.set()

    def reassert(self, key=None):
        """A registered key vanished from the store (seen on the watch): put it again."""
        with self.lock:
            if key is None:
                self.registered = {}
            else:
                self.registered.pop(key, None)
        self.kick.set()

    def run(self):
        interval = max(self.ttl / 3.0, 0.5)
        next_keepalive = 0.0
        while not self.stop.is_set():
            try:
                if not self.lease:
                    self.lease = self.client.grant(self.ttl)
                    with self.lock:
                        self.registered = {}
                    LOG.info("etcd lease %x granted (ttl %ds)", self.lease, self.ttl)
                    next_keepalive = time.monotonic() + interval
                elif time.monotonic() >= next_keepalive:
                    self.client.keepalive(self.lease)
                    next_keepalive = time.monotonic() + interval
                with self.lock:
                    desired = dict(self.desired)
                    registered = dict(self.registered)
                for key in sorted(set(registered) - set(desired)):
                    self.client.delete(key)
                    LOG.info("deregistered %s", key)
                    with self.lock:
                        self.registered.pop(key, None)
                for key, value in sorted(desired.items()):
                    if registered.get(key) != value:
                        self.client.put(key, value, self.lease)
                        LOG.info("registered %s", key)
                        with self.lock:
                            self.registered[key] = value
                self.retry.ok()
                wait = max(0.05, next_keepalive - time.monotonic())
            except LeaseLost as exc:
                LOG.warning("etcd lease lost (%s); registering again", exc)
                self.lease = 0
                wait = 0.05
            except StoreError as exc:
                self.retry.failed(exc)
                self.client.close()
                self.client.current = (self.client.current + 1) % len(self.client.endpoints)
                if self.on_failure is not None:
                    self.on_failure()
                wait = min(interval, 1.0)
            self.kick.wait(wait)
            self.kick.clear()


class FileBackend:
    """Reads the endpoint map the inventory rendered; polled for changes (inode, size, mtime)."""

    def __init__(self, path: str):
        self.path = path
        self.signature = None
        self.retry = QuietRetry("endpoint map %s" % path)

    def poll(self):
        """None if unchanged or unreadable (the last good map stays), else (records, errors)."""
        try:
            info = os.stat(self.path)
        except OSError as exc:
            self.retry.failed(exc.strerror)
            return None
        signature = (info.st_ino, info.st_size, info.st_mtime_ns)
        if signature == self.signature:
            return None
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            self.retry.failed(exc)
            self.signature = signature  # do not re-read a broken file until it changes
            return None
        self.signature = signature
        self.retry.ok()
        return parse_endpoint_map(data)


# ---------------------------------------------------------------------------------------------
# kernel side


class Kernel:
    """Event socket (raw netlink), dumps (raw netlink) and table writes (pyroute2)."""

    def __init__(self, rcvbuf: int = 4 * 1024 * 1024):
        from pyroute2 import IPRoute  # imported here so the plain functions need no pyroute2

        self.events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, NETLINK_ROUTE)
        for option in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
            try:
                self.events.setsockopt(socket.SOL_SOCKET, option, rcvbuf)
                break
            except OSError:
                continue
        self.events.bind((0, RTMGRP_NEIGH | RTMGRP_LINK))
        self.ipr = IPRoute()
        self.ipr.link("get", index=1)  # warm pyroute2 up now, not on the first miss
        self.seq = 0

    def close(self):
        self.events.close()
        self.ipr.close()

    def _dump(self, msg_type: int, body: bytes) -> list:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        try:
            sock.bind((0, 0))
            self.seq += 1
            sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP, self.seq, 0) + body)
            out = []
            while True:
                data = sock.recv(1 << 20)
                for kind, _flags, seq, payload in iter_netlink(data):
                    if seq != self.seq:
                        continue
                    if kind == NLMSG_DONE:
                        return out
                    if kind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", payload)[0]
                        if code:
                            raise OSError(code, os.strerror(code))
                        continue
                    out.append(payload)
        finally:
            sock.close()

    def links(self) -> list:
        return [parse_ifinfomsg(p) for p in self._dump(RTM_GETLINK, _IFINFOMSG.pack(0, 0, 0, 0, 0))]

    def neighbours(self, family: int) -> list:
        return [parse_ndmsg(p) for p in self._dump(RTM_GETNEIGH, _NDMSG.pack(family, 0, 0, 0, 0))]

    def recv_events(self):
        """Every pending notification: (msg_type, payload); raises OSError(ENOBUFS) on overrun."""
        out = []
        while True:
            try:
                data = self.events.recv(1 << 20)
            except BlockingIOError:
                return out
            for kind, _flags, _seq, payload in iter_netlink(data):
                out.append((kind, payload))

    def neigh_replace(self, ifindex: int, ip: str, mac: str):
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        self.ipr.neigh("replace", family=family, ifindex=ifindex, dst=ip, lladdr=mac, state=NUD_PERMANENT)

    def neigh_delete(self, ifindex: int, ip: str):
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        self.ipr.neigh("del", family=family, ifindex=ifindex, dst=ip)

    def fdb_replace(self, ifindex: int, mac: str, vtep: str):
        self.ipr.fdb("replace", ifindex=ifindex, lladdr=mac, dst=vtep, state=NUD_PERMANENT | NUD_NOARP, flags=NTF_SELF)

    def fdb_delete(self, ifindex: int, mac: str, vtep: str):
        self.ipr.fdb("del", ifindex=ifindex, lladdr=mac, dst=vtep, flags=NTF_SELF)


def read_namespace_mac(namespace: str, ifname: str) -> str | None:
    """The MAC of `ifname` inside network namespace `namespace` (never creates the namespace)."""
    from pyroute2 import IPRoute, NetlinkError

    path = namespace if namespace.startswith("/") else os.path.join("/run/netns", namespace)
    if not os.path.exists(path):
        return None
    try:
        with IPRoute(netns=path, flags=0) as ipr:
            links = ipr.link("get", ifname=ifname)
            return links[0].get_attr("IFLA_ADDRESS") if links else None
    except (NetlinkError, OSError):
        return None


# ---------------------------------------------------------------------------------------------
# the agent


class Agent:
    def __init__(self, config: dict, config_path: str | None = None):
        self.config = config
        self.config_path = config_path
        self.prefix = config["etcd"]["prefix"].rstrip("/")
        self.metrics = Metrics()
        self.cache = EndpointCache()
        self.owned_neigh: dict = {}
        self.owned_fdb: dict = {}
        self.interest: dict = {}  # (vni, ip) -> monotonic time last asked
        self.devices: dict = {}  # ifindex -> network dict (+ "ifindex", "bridge_index")
        self.vni_index: dict = {}  # vni -> ifindex
        self.local_vteps = {config["vtep"]}
        self.rejected: dict = {}  # source key -> reason already logged
        self.queue: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.reload = False
        self.synced = False
        self.kernel = None
        self.packet = None
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.watcher = None
        self.registrar = None
        self.file_backend = None
        self.local_macs: dict = {}
        self.next_local_scan = 0.0
        self.next_device_scan = 0.0

    # --- plumbing
    def post(self, item):
        self.queue.put(item)
        try:
            os.write(self.wake_w, b"x")
        except BlockingIOError:
            pass

    def _on_signal(self, signum, _frame):
        if signum == signal.SIGHUP:
            self.reload = True
            self.post(("reload",))
        else:
            self.stop.set()
            self.post(("stop",))

    # --- devices
    def refresh_devices(self) -> bool:
        """Map the configured vxlan devices to ifindexes; True if the mapping changed."""
        links = self.kernel.links()
        by_name = {link["name"]: link for link in links}
        devices, vni_index = {}, {}
        for net in self.config["networks"]:
            link = by_name.get(net["vxlan_dev"])
            if link is None or link["kind"] != "vxlan":
                continue
            if link["local"]:
                self.local_vteps.add(link["local"])
            bridge_index = link["master"]
            if net.get("bridge") and net["bridge"] in by_name:
                bridge_index = by_name[net["bridge"]]["index"]
            devices[link["index"]] = dict(net, ifindex=link["index"], bridge_index=bridge_index)
            vni_index[net["vni"]] = link["index"]
        changed = devices != self.devices
        if changed:
            missing = [net["vxlan_dev"] for net in self.config["networks"] if net["vni"] not in vni_index]
            if missing:
                LOG.warning("vxlan device(s) not present yet: %s", ", ".join(missing))
            LOG.info("serving %s", ", ".join("%s (vni %d, ifindex %d)" % (d["vxlan_dev"], d["vni"], i)
                                             for i, d in sorted(devices.items())) or "no device")
        self.devices, self.vni_index = devices, vni_index
        return changed

    def adopt(self):
        """Take ownership of the entries already on the served devices (previous run's)."""
        ifindex_vni = {index: dev["vni"] for index, dev in self.devices.items()}
        neigh = self.kernel.neighbours(socket.AF_INET) + self.kernel.neighbours(socket.AF_INET6)
        fdb = self.kernel.neighbours(AF_BRIDGE)
        self.owned_neigh, self.owned_fdb = adopt_entries(neigh, fdb, ifindex_vni)
        now = time.monotonic()
        for key in self.owned_neigh:
            self.interest.setdefault(key, now)
        self._count_owned()
        LOG.info("adopted %d neighbour and %d fdb entries from the kernel", len(self.owned_neigh), len(self.owned_fdb))

    def _count_owned(self):
        self.metrics.owned = {"neigh": len(self.owned_neigh), "fdb": len(self.owned_fdb)}
        self.metrics.cache_size = len(self.cache)
        self.metrics.dirty = True

    # --- store updates
    def _accept(self, key, value, revision):
        try:
            endpoint = validate_keyed_record(self.prefix, key, value)
        except RecordError as exc:
            if self.rejected.get(key) != (str(exc), revision):
                self.rejected[key] = (str(exc), revision)
                self.metrics.inc("records_rejected")
                LOG.warning("rejected store record %s: %s", key, exc)
            return None
        self.rejected.pop(key, None)
        return endpoint

    def handle_item(self, item) -> bool:
        """Apply one backend message to the cache; True if the cache changed."""
        kind = item[0]
        if kind == "snapshot":
            records = {}
            for key, value, revision in item[1]:
                endpoint = self._accept(key, value, revision)
                if endpoint is not None:
                    records[key] = (endpoint, revision)
            changed = self.cache.replace_all(records)
            if not self.synced or changed:
                self.metrics.inc("resyncs")
            first = not self.synced
            self.synced = True
            self.metrics.set_store("connected")
            self._check_own_records()
            if first:
                LOG.info("store loaded: %d record(s)", len(self.cache))
            return changed or first
        if kind == "events":
            changed = False
            for event, key, value, revision in item[1]:
                if event == "DELETE":
                    changed |= self.cache.delete(key)
                    self.rejected.pop(key, None)
                    self._own_key_deleted(key)
                else:
                    endpoint = self._accept(key, value, revision)
                    if endpoint is None:
                        changed |= self.cache.delete(key)
                    else:
                        changed |= self.cache.put(key, endpoint, revision)
            self.metrics.set_store("connected")
            return changed
        if kind == "store":
            self.metrics.set_store(item[1])
        return False

    def _own_key_deleted(self, key):
        if self.registrar is not None and key in self.registrar.desired:
            LOG.info("own record %s vanished from the store; registering it again", key)
            self.registrar.reassert(key)

    def _check_own_records(self):
        if self.registrar is None:
            return
        with self.registrar.lock:
            desired = list(self.registrar.desired)
        missing = [key for key in desired if key not in self.cache and key not in self.rejected]
        for key in missing:
            self.registrar.reassert(key)

    def poll_file(self) -> bool:
        result = self.file_backend.poll()
        if result is None:
            return False
        records, errors = result
        for where, reason in errors:
            LOG.warning("rejected endpoint map entry %s: %s", where, reason)
        self.metrics.inc("records_rejected", len(errors))
        changed = self.cache.replace_all(records)
        first = not self.synced
        self.synced = True
        self.metrics.set_store("loaded")
        self.metrics.inc("resyncs")
        if first:
            LOG.info("endpoint map loaded: %d record(s)", len(self.cache))
        return changed or first

    # --- local endpoints
    def scan_local(self):
        """The endpoints this host registers (MACs read from the VM namespaces when not given)."""
        endpoints = []
        for ep in self.config["local_endpoints"]:
            mac = ep["mac"]
            if mac is None:
                mac = read_namespace_mac(ep["namespace"], ep["vm_if"])
                if mac is None:
                    LOG.debug("local endpoint %s: %s in %s not found yet", ep["ip"], ep["vm_if"], ep["namespace"])
                    continue
            endpoints.append(Endpoint(ep["vni"], ep["ip"], mac.lower(), self.config["vtep"], self.config["host"]))
        return endpoints

    # --- kernel changes
    def _ifindex(self, vni):
        return self.vni_index.get(vni)

    def apply(self, ops) -> int:
        done = 0
        for op in ops:
            table, action, vni, key, value = op
            ifindex = self._ifindex(vni)
            if ifindex is None:
                continue
            try:
                if table == "fdb" and action == "replace":
                    self.kernel.fdb_replace(ifindex, key, value)
                    self.owned_fdb[(vni, key)] = value
                elif table == "neigh" and action == "replace":
                    self.kernel.neigh_replace(ifindex, key, value)
                    self.owned_neigh[(vni, key)] = value
                elif table == "neigh":
                    self._ignore_absent(self.kernel.neigh_delete, ifindex, key)
                    self.owned_neigh.pop((vni, key), None)
                else:
                    self._ignore_absent(self.kernel.fdb_delete, ifindex, key, value)
                    self.owned_fdb.pop((vni, key), None)
            except Exception as exc:  # noqa: BLE001 - pyroute2 raises NetlinkError or OSError; keep serving
                self.metrics.inc("kernel_errors")
                LOG.error("kernel refused %s %s vni %d %s %s: %s", action, table, vni, key, value, exc)
                continue
            done += 1
            self.metrics.inc("entries_installed" if action == "replace" else "entries_removed")
            LOG.info("%s %s vni %d %s -> %s", "set" if action == "replace" else "removed", table, vni, key, value)
        self._count_owned()
        return done

    @staticmethod
    def _ignore_absent(func, *args):
        try:
            func(*args)
        except Exception as exc:  # noqa: BLE001 - NetlinkError; "already gone" is success
            if getattr(exc, "code", None) not in (errno.ENOENT, errno.ENODEV, errno.EADDRNOTAVAIL, errno.ESRCH):
                raise

    def reconcile(self):
        if not self.synced:
            return
        now = time.monotonic()
        ttl = self.config["interest_ttl"]
        for key in [key for key, seen in self.interest.items() if now - seen > ttl and key not in self.owned_neigh]:
            del self.interest[key]
        ops = plan_reconcile(self.owned_neigh, self.owned_fdb, self.cache, self.local_vteps,
                             [key for key in self.interest if key[0] in self.vni_index])
        ops = [op for op in ops if op[2] in self.vni_index]
        if ops:
            self.apply(ops)

    # --- misses
    def handle_miss(self, miss: Miss, received: float):
        self.metrics.inc("misses_seen")
        device = self.devices[miss.ifindex]
        vni = device["vni"]
        if miss.kind == "l3":
            self.metrics.inc("misses_l3")
            endpoint = self.cache.by_ip(vni, miss.key)
        else:
            self.metrics.inc("misses_l2")
            endpoint = self.cache.by_mac(vni, miss.key)
        if endpoint is None:
            self.metrics.inc("misses_unknown")
            LOG.debug("%s miss vni %d %s: unknown", miss.kind, vni, miss.key)
            return
        if endpoint.vtep in self.local_vteps:
            self.metrics.inc("misses_local")
            LOG.debug("%s miss vni %d %s: local endpoint, not installed", miss.kind, vni, miss.key)
            return
        try:
            self.kernel.fdb_replace(miss.ifindex, endpoint.mac, endpoint.vtep)
            self.owned_fdb[(vni, endpoint.mac)] = endpoint.vtep
            if miss.kind == "l3":
                self.kernel.neigh_replace(miss.ifindex, endpoint.ip, endpoint.mac)
                self.owned_neigh[(vni, endpoint.ip)] = endpoint.mac
                self.interest[(vni, endpoint.ip)] = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - NetlinkError/OSError: count, log, keep serving
            self.metrics.inc("kernel_errors")
            LOG.error("kernel refused the answer to %s miss vni %d %s: %s", miss.kind, vni, miss.key, exc)
            return
        elapsed = (time.monotonic() - received) * 1e6
        self.metrics.inc("misses_answered")
        self.metrics.latency(elapsed)
        self._count_owned()
        if miss.kind == "l3" and self.config["announce"]:
            self.announce(device, endpoint)
        LOG.debug("%s miss vni %d %s answered: %s at %s in %.0f us", miss.kind, vni, miss.key,
                  endpoint.mac, endpoint.vtep, elapsed)

    def announce(self, device, endpoint):
        """Tell the VMs on the bridge at once (they queued their packet waiting for ARP)."""
        if ":" in endpoint.ip or not device.get("bridge_index"):
            return
        try:
            if self.packet is None:
                self.packet = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            self.packet.sendto(build_garp(endpoint.mac, endpoint.ip), (self._ifname(device["bridge_index"]), 0))
            self.metrics.inc("announcements_sent")
        except OSError as exc:
            LOG.debug("announcement of %s failed: %s", endpoint.ip, exc)
            if self.packet is not None:
                self.packet.close()
                self.packet = None

    def _ifname(self, index):
        return socket.if_indextoname(index)

    def process_events(self):
        try:
            events = self.kernel.recv_events()
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                self.metrics.inc("events_lost")
                LOG.warning("netlink event queue overran; some misses were lost (VMs retransmit)")
                return
            raise
        received = time.monotonic()
        for msg_type, payload in events:
            if msg_type in (RTM_NEWLINK, RTM_DELLINK):
                self.next_device_scan = 0.0
                continue
            if msg_type != RTM_GETNEIGH:
                continue
            miss = classify_miss(msg_type, parse_ndmsg(payload), self.devices)
            if miss is not None:
                self.handle_miss(miss, received)

    # --- main loop
    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        self.kernel = Kernel()
        self.refresh_devices()
        self.adopt()
        backend = self.config["backend"]
        if backend == "etcd":
            self.watcher = EtcdWatcher(self.config, self.post, self.stop)
            self.registrar = EtcdRegistrar(self.config, self.stop, on_failure=self.watcher.interrupt)
            self.registrar.set_endpoints(self.scan_local())
            self.watcher.start()
            self.registrar.start()
        else:
            self.file_backend = FileBackend(self.config["file"]["path"])
        LOG.info("agent %s started: host %s, vtep %s, backend %s", __version__, self.config["host"],
                 self.config["vtep"], backend)
        poll = self.config["file"]["poll_interval"] if backend == "file" else 1.0
        next_poll = 0.0
        next_metrics = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            timeout = max(0.0, min(next_poll, next_metrics, self.next_device_scan, self.next_local_scan) - now)
            readable = select.select([self.kernel.events, self.wake_r], [], [], timeout)[0]
            if self.kernel.events in readable:
                self.process_events()
            changed = False
            if self.wake_r in readable:
                try:
                    os.read(self.wake_r, 4096)
                except BlockingIOError:
                    pass
            while True:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item[0] == "reload":
                    self._reload()
                    changed = True
                elif item[0] != "stop":
                    changed |= self.handle_item(item)
            now = time.monotonic()
            if self.file_backend is not None and now >= next_poll:
                changed |= self.poll_file()
                next_poll = now + poll
            elif self.file_backend is None:
                next_poll = now + 3600
            if now >= self.next_device_scan:
                if self.refresh_devices():
                    self.adopt()
                    changed = True
                self.next_device_scan = now + 2.0
            if now >= self.next_local_scan:
                if self.registrar is not None:
                    self.registrar.set_endpoints(self.scan_local())
                self.next_local_scan = now + 5.0
            if changed:
                self.reconcile()
            if now >= next_metrics:
                self._write_metrics()
                next_metrics = now + self.config["metrics_interval"]
        LOG.info("agent stopping (kernel entries stay; the data plane keeps working)")
        self._write_metrics()
        self.kernel.close()
        return 0

    def _write_metrics(self):
        self.metrics.cache_size = len(self.cache)
        try:
            self.metrics.write(self.config["metrics_file"])
        except OSError as exc:
            LOG.debug("metrics file: %s", exc)

    def _reload(self):
        if not self.config_path:
            return
        try:
            fresh = load_config(self.config_path)
        except ConfigError as exc:
            LOG.error("reload refused, keeping the running configuration: %s", exc)
            return
        if (fresh["backend"], fresh["etcd"], fresh["file"], fresh["networks"], fresh["host"], fresh["vtep"]) != (
                self.config["backend"], self.config["etcd"], self.config["file"], self.config["networks"],
                self.config["host"], self.config["vtep"]):
            LOG.warning("reload: only local_endpoints, announce and log_level change without a restart")
        self.config["local_endpoints"] = fresh["local_endpoints"]
        self.config["announce"] = fresh["announce"]
        LOG.setLevel(fresh["log_level"].upper())
        if self.registrar is not None:
            self.registrar.set_endpoints(self.scan_local())
        LOG.info("configuration reloaded: %d local endpoint(s)", len(fresh["local_endpoints"]))


# ---------------------------------------------------------------------------------------------
# supervision (hosts without systemd)


def _read_pid(path: str):
    try:
        with open(path, encoding="ascii") as handle:
            pid = int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    # A pid file can outlive its process (a lab destroyed under it, a crash) and the PID be
    # reused: only a process running this agent counts, or stop would signal a stranger.
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            cmdline = handle.read()
    except OSError:
        return None
    if os.path.basename(__file__).encode() not in cmdline:
        return None
    return pid


def supervise(args) -> int:
    """Run the agent as a child and restart it whenever it exits, until SIGTERM."""
    stopping = threading.Event()
    child = {"proc": None}

    def forward(signum, _frame):
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping.set()
        proc = child["proc"]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    command = [sys.executable, os.path.abspath(__file__), "run", "--config", args.config]
    backoff = 0.5
    while not stopping.is_set():
        started = time.monotonic()
        log = open(args.log, "ab", buffering=0)
        try:
            child["proc"] = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        _write_text(args.pidfile + ".agent", "%d\n" % child["proc"].pid)
        rc = child["proc"].wait()
        if stopping.is_set():
            break
        backoff = 0.5 if time.monotonic() - started > 10 else min(backoff * 2, 10.0)
        with open(args.log, "a", encoding="utf-8") as handle:
            handle.write("%s supervisor: agent exited with %s; restarting in %.1fs\n" % (_stamp(), rc, backoff))
        stopping.wait(backoff)
    for path in (args.pidfile, args.pidfile + ".agent"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return 0


def _stamp():
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _write_text(path, text):
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(text)
    os.replace(tmp, path)


def cmd_start(args) -> int:
    pid = _read_pid(args.pidfile)
    if pid:
        print(json.dumps({"changed": False, "running": True, "pid": pid}))
        return 0
    load_config(args.config)  # refuse to start on a bad configuration, with the reason
    for path in (args.pidfile, args.log):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # first child: new session, fork again, exit
        os.close(ready_r)
        os.setsid()
        if os.fork():
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        _write_text(args.pidfile, "%d\n" % os.getpid())
        os.write(ready_w, b"1")
        os.close(ready_w)
        code = 1
        try:
            code = supervise(args)
        finally:
            os._exit(code)
    os.close(ready_w)
    os.waitpid(pid, 0)
    ok = os.read(ready_r, 1)
    os.close(ready_r)
    if not ok:
        print(json.dumps({"changed": False, "running": False, "error": "supervisor did not start"}))
        return 1
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not os.path.exists(args.pidfile + ".agent"):
        time.sleep(0.05)
    print(json.dumps({"changed": True, "running": True, "pid": _read_pid(args.pidfile)}))
    return 0


def cmd_stop(args) -> int:
    pid = _read_pid(args.pidfile)
    if not pid:
        for path in (args.pidfile, args.pidfile + ".agent"):
            if os.path.exists(path):
                os.unlink(path)
        print(json.dumps({"changed": False, "running": False}))
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _read_pid(args.pidfile) == pid:
        time.sleep(0.05)
    if _read_pid(args.pidfile) == pid:
        os.kill(pid, signal.SIGKILL)
        agent = _read_pid(args.pidfile + ".agent")
        if agent:
            os.kill(agent, signal.SIGKILL)
        for path in (args.pidfile, args.pidfile + ".agent"):
            if os.path.exists(path):
                os.unlink(path)
    print(json.dumps({"changed": True, "running": False}))
    return 0


def cmd_status(args) -> int:
    try:
        config = load_config(args.config)
        metrics_file = config["metrics_file"]
    except ConfigError:
        metrics_file = DEFAULT_CONFIG["metrics_file"]
    deadline = time.monotonic() + (args.wait or 0)
    while True:
        status = {"running": None, "pid": None, "agent_pid": None}
        if args.pidfile:
            status["pid"] = _read_pid(args.pidfile)
            status["agent_pid"] = _read_pid(args.pidfile + ".agent")
            status["running"] = bool(status["pid"] and status["agent_pid"])
        try:
            with open(metrics_file, encoding="utf-8") as handle:
                status["metrics"] = json.load(handle)
            if not args.full:
                status["metrics"]["resolve_latency_us"].pop("recent", None)
        except (OSError, ValueError):
            status["metrics"] = None
        metrics = status["metrics"] or {}
        synced = (status["running"] is not False and metrics.get("counters", {}).get("resyncs", 0) > 0
                  and (status["agent_pid"] is None or metrics.get("pid") == status["agent_pid"]))
        if synced or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    print(json.dumps(status, indent=2, sort_keys=True))
    if args.wait and not synced:
        return 4
    return 0 if status["running"] is not False else 3


def cmd_deregister(args) -> int:
    """Remove this host's records from etcd (teardown); entries in kernels follow by watch."""
    config = load_config(args.config)
    if config["backend"] != "etcd":
        print(json.dumps({"changed": False}))
        return 0
    client = make_etcd_client(config)
    prefix = config["etcd"]["prefix"].rstrip("/") + "/endpoints/"
    try:
        _rev, kvs = client.range_prefix(prefix)
        removed = []
        for key, _value, _revision in kvs:
            if key.rsplit("/", 1)[-1] == config["host"]:
                client.delete(key)
                removed.append(key)
    except StoreError as exc:
        print(json.dumps({"changed": False, "error": str(exc)}))
        return 1
    print(json.dumps({"changed": bool(removed), "removed": removed}))
    return 0


def cmd_run(args) -> int:
    config = load_config(args.config)
    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    LOG.setLevel(config["log_level"].upper())
    if config["metrics_file"]:
        os.makedirs(os.path.dirname(os.path.abspath(config["metrics_file"])), exist_ok=True)
    return Agent(config, args.config).run()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="overlay_vxlan_agent", description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "start", "stop", "restart", "status", "check-config", "deregister"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--config", default="/etc/overlay-vxlan/agent.json")
        cmd.add_argument("--pidfile", default="/run/overlay-vxlan-agent/agent.pid" if name != "status" else None)
        cmd.add_argument("--log", default="/var/log/overlay-vxlan-agent.log")
        if name == "status":
            cmd.add_argument("--full", action="store_true", help="include the recent latency samples")
            cmd.add_argument("--wait", type=float, default=0,
                             help="wait up to this many seconds for a running, synchronised agent (exit 4 if not)")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "start":
            return cmd_start(args)
        if args.command == "stop":
            return cmd_stop(args)
        if args.command == "restart":
            with open(os.devnull, "w", encoding="ascii") as quiet:
                saved, sys.stdout = sys.stdout, quiet
                try:
                    cmd_stop(args)
                finally:
                    sys.stdout = saved
            return cmd_start(args)
        if args.command == "status":
            return cmd_status(args)
        if args.command == "deregister":
            return cmd_deregister(args)
        load_config(args.config)
        print(json.dumps({"valid": True}))
        return 0
    except ConfigError as exc:
        print("overlay_vxlan_agent: configuration error: %s" % exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
