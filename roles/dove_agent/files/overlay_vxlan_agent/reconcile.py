# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reconciliation (plain functions): what the agent owns in the kernel, and what to change so
it matches the cache."""

from __future__ import annotations

import socket

from pyroute2.netlink.rtnl.ndmsg import NTF_SELF, NUD_PERMANENT

from overlay_vxlan_agent.cache import EndpointCache
from overlay_vxlan_agent.records import ZERO_MAC

AF_BRIDGE = socket.AF_BRIDGE


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
