# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fdb and neighbour tables: read once, diff in memory, apply in one pipelined session.

The planning functions are plain (no kernel) so they are unit-tested directly. A plan is a list
of Change records; `execute` sends them and, if the kernel refuses any, undoes the ones that
succeeded so the device's table is exactly as it was before the task.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import NamedTuple

from ansible_collections.overlay.vxlan.plugins.module_utils import _fastnl as nl
from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import KernelError
from ansible_collections.overlay.vxlan.plugins.module_utils._validate import ZERO_MAC


class FdbEntry(NamedTuple):
    """Identity of a vxlan fdb entry. vni/port are always filled in with the device's defaults
    (the kernel omits them from dumps when they equal the device's), via is an interface name."""

    mac: str
    dst: str
    vni: int
    port: int
    via: str | None = None

    def text(self, dev_vni: int, dev_port: int) -> str:
        words = [self.mac, "dst", self.dst]
        if self.vni != dev_vni:
            words += ["vni", str(self.vni)]
        if self.port != dev_port:
            words += ["port", str(self.port)]
        if self.via:
            words += ["via", self.via]
        return " ".join(words)

    def as_dict(self) -> dict:
        return {"mac": self.mac, "dst": self.dst, "vni": self.vni, "port": self.port, "via": self.via}


class NeighEntry(NamedTuple):
    ip: str
    lladdr: str

    def text(self) -> str:
        return "%s lladdr %s" % (self.ip, self.lladdr)

    def as_dict(self) -> dict:
        return {"ip": self.ip, "lladdr": self.lladdr}


class Change(NamedTuple):
    """op: add | replace | delete. `old` is what a replace overwrote (needed to undo it)."""

    op: str
    entry: object
    old: object = None


# ---------------------------------------------------------------------------------------------
# Planning (pure)
# ---------------------------------------------------------------------------------------------

def plan_fdb(desired: list[FdbEntry], current: list[FdbEntry], state: str, protected=frozenset()) -> list[Change]:
    """Changes that take the device's permanent self entries `current` to what `state` asks.

    - present: add what is missing. A unicast MAC has one VTEP, so a desired (mac, dst2) over a
      current (mac, dst1) is a replace (a moved VM), never a second remote.
    - absent: delete the desired entries that exist.
    - exact: present + delete every other current entry except `protected` ones (the default
      entry that `group`/`remote` created belongs to the device, not to us).
    The all-zero MAC is the flood list: several entries that differ only by dst coexist.
    """
    current_set = set(current)
    desired_set = set(desired)
    changes: list[Change] = []
    if state == "absent":
        return [Change("delete", entry) for entry in desired if entry in current_set]

    by_mac: dict[str, list[FdbEntry]] = {}
    for entry in current:
        if entry.mac != ZERO_MAC:
            by_mac.setdefault(entry.mac, []).append(entry)

    replaced: set[FdbEntry] = set()
    for entry in desired:
        if entry in current_set:
            continue
        if entry.mac == ZERO_MAC:
            changes.append(Change("add", entry))
            continue
        stale = [old for old in by_mac.get(entry.mac, ()) if old not in desired_set]
        if stale:
            # The kernel's NLM_F_REPLACE rewrites the MAC's first remote in place.
            changes.append(Change("replace", entry, stale[0]))
            replaced.add(stale[0])
        else:
            changes.append(Change("add", entry))
    if state == "exact":
        deletes = [
            Change("delete", entry)
            for entry in current
            if entry not in desired_set and entry not in replaced and entry not in protected
        ]
        changes = deletes + changes
    return changes


def plan_neigh(desired: list[NeighEntry], current: list[NeighEntry], state: str) -> list[Change]:
    """Neighbour entries are keyed by IP on a device: a new lladdr for a known IP is a replace."""
    current_by_ip = {entry.ip: entry for entry in current}
    desired_ips = {entry.ip for entry in desired}
    if state == "absent":
        return [Change("delete", current_by_ip[e.ip]) for e in desired if e.ip in current_by_ip
                and (e.lladdr is None or current_by_ip[e.ip].lladdr == e.lladdr)]
    changes = []
    for entry in desired:
        old = current_by_ip.get(entry.ip)
        if old is None:
            changes.append(Change("add", entry))
        elif old.lladdr != entry.lladdr:
            changes.append(Change("replace", entry, old))
    if state == "exact":
        changes = [Change("delete", e) for e in current if e.ip not in desired_ips] + changes
    return changes


def apply_plan(entries: list, changes: list[Change]) -> list:
    """The table after `changes`, for the diff's `after` and the check-mode result."""
    result = set(entries)
    for change in changes:
        if change.op == "delete":
            result.discard(change.entry)
        else:
            if change.old is not None:
                result.discard(change.old)
            result.add(change.entry)
    return sorted(result)


# ---------------------------------------------------------------------------------------------
# Reading the kernel
# ---------------------------------------------------------------------------------------------

def read_fdb(sock: nl.NeighSocket, ifindex: int, dev_vni: int, dev_port: int, names: dict[int, str]):
    """(permanent self entries, count of other self entries e.g. kernel-learned) of a vxlan device."""
    permanent, learned = [], 0
    for raw in sock.dump(nl.AF_BRIDGE):
        if raw["ifindex"] != ifindex or not raw["flags"] & nl.NTF_SELF or raw["dst"] is None:
            continue
        if not raw["state"] & nl.NUD_PERMANENT:
            learned += 1
            continue
        permanent.append(FdbEntry(
            raw["mac"], raw["dst"], raw["vni"] or dev_vni, raw["port"] or dev_port,
            names.get(raw["via"], str(raw["via"])) if raw["via"] else None,
        ))
    return permanent, learned


def read_extern_learned(sock: nl.NeighSocket, ifindex: int, dev_vni: int, dev_port: int, names: dict[int, str]) -> list[FdbEntry]:
    """The `self extern_learn` entries of a vxlan device: what a control plane (FRR's zebra in
    EVPN) installed. Never a module's own (they are counted with the learned ones by read_fdb)."""
    result = []
    for raw in sock.dump(nl.AF_BRIDGE):
        if raw["ifindex"] != ifindex or not raw["flags"] & nl.NTF_SELF or not raw["flags"] & nl.NTF_EXT_LEARNED or raw["dst"] is None:
            continue
        result.append(FdbEntry(
            raw["mac"], raw["dst"], raw["vni"] or dev_vni, raw["port"] or dev_port,
            names.get(raw["via"], str(raw["via"])) if raw["via"] else None,
        ))
    return sorted(result)


def read_neigh(sock: nl.NeighSocket, ifindex: int, nud: int) -> list[NeighEntry]:
    """Entries of the device whose state includes `nud` (e.g. every permanent entry).

    Multicast/broadcast mappings (ff02::16 -> 33:33:00:00:00:16, NOARP) are skipped: the kernel
    derives them by itself and recreates them on use, no task can ask for one (group MACs and
    addresses are refused), so `exact` with nud=noarp must neither see nor purge them.
    """
    result = []
    for raw in sock.dump(socket.AF_UNSPEC):
        if raw["ifindex"] != ifindex or raw["family"] not in (socket.AF_INET, socket.AF_INET6):
            continue
        if raw["dst"] is None or raw["mac"] is None or not raw["state"] & nud:
            continue
        if int(raw["mac"][:2], 16) & 1:
            continue
        result.append(NeighEntry(raw["dst"], raw["mac"]))
    return result


# ---------------------------------------------------------------------------------------------
# Applying, with undo
# ---------------------------------------------------------------------------------------------

def execute(sock: nl.NeighSocket, changes: list[Change], to_request, undo_request, what: str, describe=str) -> None:
    """Send every change in one pipelined batch; if any is refused, undo the rest and raise.

    to_request(change) -> Request; undo_request(change) -> Request that reverts it;
    describe(request.tag) -> how the refused entry is named in the error message.
    """
    requests = [to_request(change) for change in changes]
    failures = sock.apply(requests)
    if not failures:
        return
    # Deleting something already gone is success for an idempotent module, but it changed
    # nothing, so it must not be "undone" (that would create an entry that was never there).
    gone = {id(f[0]) for f in failures if nl.already_gone(f[0], f[1])}
    failures = [f for f in failures if id(f[0]) not in gone]
    if not failures:
        return
    not_done = gone | {id(request) for request, _code, _msg in failures}
    done = [change for change, request in zip(changes, requests, strict=True) if id(request) not in not_done]
    undo_failures = sock.apply([undo_request(change) for change in reversed(done)])
    request, code, kernel_msg = failures[0]
    msg = "kernel refused %s %s: %s (%s)%s" % (
        what, describe(request.tag), kernel_msg or os.strerror(code),
        errno.errorcode.get(code, str(code)),
        "" if len(failures) == 1 else " and %d more" % (len(failures) - 1),
    )
    msg += "; rolled back %d change(s) this run had applied" % len(done)
    if undo_failures:
        msg += "; ROLLBACK INCOMPLETE for %d change(s)" % len(undo_failures)
    raise KernelError(msg)
