"""plugins/filter/evpn.py: who a host talks BGP with (frr.conf's neighbours, and the hosts the
VTEP allow-list accepts on TCP 179)."""

from __future__ import annotations

import pytest

from ansible_collections.overlay.vxlan.plugins.filter.evpn import AnsibleFilterError, evpn_peer_hosts, evpn_peers

GROUPS = {"overlay": ["h1", "h2", "h3"], "controller": ["ctl", "ctl2"], "outsider": ["rogue"]}
HOSTVARS = {"h1": {"vxlan_underlay_ip": "192.168.1.2"}, "h2": {"vxlan_underlay_ip": "192.168.1.3"},
            "h3": {"vxlan_underlay_ip": "2001:db8:1::4"}, "ctl": {"vxlan_underlay_ip": "192.168.1.10"},
            "ctl2": {"vxlan_underlay_ip": "192.168.1.11"}, "rogue": {"vxlan_underlay_ip": "192.168.1.66"}}


def test_a_vtep_peers_with_the_route_reflectors_only():
    assert evpn_peer_hosts(GROUPS, "h1", "controller", "overlay", False) == ["ctl", "ctl2"]
    assert evpn_peers(HOSTVARS, GROUPS, "h1", "controller", "overlay", False) == ["192.168.1.10", "192.168.1.11"]


def test_a_route_reflector_peers_with_every_vtep_and_the_other_reflectors():
    assert evpn_peer_hosts(GROUPS, "ctl", "controller", "overlay", True) == ["ctl2", "h1", "h2", "h3"]
    # Sorted as text (frr.conf's order), IPv6 among IPv4; never the rogue, never itself.
    assert evpn_peers(HOSTVARS, GROUPS, "ctl", "controller", "overlay", True) == [
        "192.168.1.11", "192.168.1.2", "192.168.1.3", "2001:db8:1::4"]


def test_a_host_in_both_groups_is_not_its_own_peer_and_missing_groups_are_empty():
    groups = dict(GROUPS, controller=["ctl", "h1"])
    assert evpn_peer_hosts(groups, "h1", "controller", "overlay", True) == ["ctl", "h2", "h3"]
    assert evpn_peer_hosts(GROUPS, "h1", "nothing", "overlay", False) == []


def test_a_peer_without_an_underlay_address_is_named():
    hostvars = dict(HOSTVARS, ctl2={})
    with pytest.raises(AnsibleFilterError, match="BGP peer ctl2 has no vxlan_underlay_ip"):
        evpn_peers(hostvars, GROUPS, "h1", "controller", "overlay", False)
