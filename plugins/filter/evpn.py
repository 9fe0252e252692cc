# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who a host talks BGP with in vxlan_mode=evpn, computed from the inventory.

One derivation for two users: role evpn writes these peers into frr.conf, and role allowlist
accepts TCP 179 only from them (nftables). Were they computed twice, a change to one would let
the filter drop a session bgpd is configured for, or accept one it is not.

A VTEP peers with every route reflector; a route reflector with every VTEP (its clients) and the
other route reflectors. A host never peers with itself.
"""

from __future__ import annotations

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # plain unit tests without Ansible
    AnsibleFilterError = ValueError  # type: ignore[misc,assignment]


def peer_hosts(groups, host: str, rr_group: str, vtep_group: str, route_reflector: bool) -> list[str]:
    """The inventory names of `host`'s BGP peers, sorted."""
    reflectors = list(groups.get(rr_group) or [])
    peers = set(reflectors)
    if route_reflector:
        peers.update(groups.get(vtep_group) or [])
    peers.discard(host)
    return sorted(peers)


def peer_addresses(hostvars, names: list[str]) -> list[str]:
    """Each peer's vxlan_underlay_ip (the address bgpd peers with), as strings sorted as text:
    frr.conf lists its neighbours in this order, so it must not change from run to run."""
    addresses = []
    for name in names:
        address = hostvars[name].get("vxlan_underlay_ip") if name in hostvars else None
        if not address:
            raise AnsibleFilterError("evpn: BGP peer %s has no vxlan_underlay_ip" % name)
        addresses.append(str(address))
    return sorted(addresses)


def evpn_peer_hosts(groups, host, rr_group, vtep_group, route_reflector=False):
    return peer_hosts(groups, str(host), str(rr_group), str(vtep_group), bool(route_reflector))


def evpn_peers(hostvars, groups, host, rr_group, vtep_group, route_reflector=False):
    return peer_addresses(hostvars, evpn_peer_hosts(groups, host, rr_group, vtep_group, route_reflector))


class FilterModule:
    def filters(self):
        return {"evpn_peer_hosts": evpn_peer_hosts, "evpn_peers": evpn_peers}
