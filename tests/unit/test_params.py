"""The roles' module parameters per mode (plugins/filter/params.py), checked against each
module's own option spec, so a role can never hand a module an option it does not have."""

from __future__ import annotations

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from test_mesh import NETWORKS, source_hosts

from ansible_collections.overlay.vxlan.plugins.filter.mesh import compute_mesh
from ansible_collections.overlay.vxlan.plugins.filter.params import AnsibleFilterError, endpoint_params, overlay_params
from ansible_collections.overlay.vxlan.plugins.module_utils._vm_mac import bridge_mac
from ansible_collections.overlay.vxlan.plugins.modules.overlay_plan import RESOURCES as SPECS


def mesh_of(host="h1"):
    return compute_mesh(source_hosts(), NETWORKS, host)


def without_svi(host="h1"):
    """A share whose networks have no bridge_addresses (the key left out)."""
    return [{key: value for key, value in net.items() if key != "bridge_addresses"} for net in mesh_of(host)]


def devices(neigh: list) -> list:
    """The ip_neigh tasks of the vxlan devices (the bridges' own tables left out)."""
    return [t for t in neigh if t["dev"] != "br1"]


def assert_valid(params: dict) -> None:
    for module, items in params.items():
        spec = {k: v for k, v in SPECS[module].SPEC.items() if k != "supports_check_mode"}
        for item in items:
            assert ArgumentSpecValidator(**spec).validate(item).error_messages == [], (module, item)


def test_endpoint_params_are_the_source_section_2():
    params = endpoint_params(mesh_of(), "1450")
    assert params["linux_bridge"] == [{"name": "br1", "mtu": 1450, "addresses": []}]
    assert params["netns_veth"] == [{"namespace": "ns1", "name": "tap1", "peer": "tap2", "master": "br1",
                                     "addresses": ["100.0.0.2/24"], "mac": "02:00:64:00:00:02", "mtu": 1450}]
    assert_valid(params)


def test_endpoint_params_give_the_bridge_its_svi_only_when_asked():
    mesh = [dict(net, bridge_addresses=["100.0.0.254/24"]) for net in mesh_of()]
    assert endpoint_params(mesh, 1450, True)["linux_bridge"] == [{"name": "br1", "mtu": 1450, "addresses": ["100.0.0.254/24"]}]
    # Other modes (or evpn_svi false): exactly none, so a switch away from evpn removes them.
    assert endpoint_params(mesh, 1450)["linux_bridge"] == [{"name": "br1", "mtu": 1450, "addresses": []}]
    # A share without bridge_addresses: none either.
    assert endpoint_params(without_svi(), 1450, True)["linux_bridge"][0]["addresses"] == []
    assert_valid(endpoint_params(mesh, 1450, True))


def test_evpn_pins_each_bridge_mac_per_host_and_bridge():
    """pin_mac (vxlan_mode=evpn): a fixed, locally administered unicast MAC per host and bridge,
    never a VM's (02:...), the same on every run; without it the bridge's MAC is not managed."""
    pinned = endpoint_params(mesh_of("h1"), 1450, True, True, True)["linux_bridge"][0]["mac"]
    assert pinned == endpoint_params(mesh_of("h1"), 1450, True, True, True)["linux_bridge"][0]["mac"]
    assert pinned != endpoint_params(mesh_of("h2"), 1450, True, True, True)["linux_bridge"][0]["mac"]
    assert pinned == bridge_mac("192.168.1.2", "br1") != bridge_mac("192.168.1.2", "br2")
    first = int(pinned.split(":")[0], 16)
    assert first & 0x02 and not first & 0x01 and pinned.startswith("06:"), pinned
    assert "mac" not in endpoint_params(mesh_of("h1"), 1450, True, True)["linux_bridge"][0]
    assert_valid(endpoint_params(mesh_of("h1"), 1450, True, True, True))


def test_evpn_without_svi_removes_the_bridge_address_after_its_neighbour_entries():
    """zebra withdraws a local MAC+IP route only while the bridge still has its address: in evpn
    mode without evpn_svi the endpoint step leaves the address alone and the vxlan step removes
    it after the bridge's neighbour entries; with evpn_svi, and in every other mode, no such step."""
    mesh = [dict(net, bridge_addresses=["100.0.0.254/24"]) for net in mesh_of()]
    assert endpoint_params(mesh, 1450, False, True)["linux_bridge"] == [{"name": "br1", "mtu": 1450}]
    assert endpoint_params(mesh, 1450, True, True)["linux_bridge"][0]["addresses"] == ["100.0.0.254/24"]
    no_svi = overlay_params(mesh, "evpn", "eth0", 1450, None, True, False)
    assert no_svi["linux_bridge"] == [{"name": "br1", "addresses": []}]
    assert [n["rows"] for n in no_svi["ip_neigh"] if n["dev"] == "br1"] == [""]
    assert_valid({"linux_bridge": no_svi["linux_bridge"]})
    assert overlay_params(mesh, "evpn", "eth0", 1450, None, True, True)["linux_bridge"] == []
    for mode in ("static", "flood", "multicast", "dove"):
        assert overlay_params(mesh, mode, "eth0", 1450)["linux_bridge"] == []


@pytest.mark.parametrize(
    ("mode", "flags", "fdb", "neigh"),
    [
        ("multicast", {"learning": True, "proxy": False, "l2miss": False, "l3miss": False, "group": "239.1.1.1"}, [], []),
        ("flood", {"learning": True, "proxy": False, "l2miss": False, "l3miss": False},
         [{"mac": "00:00:00:00:00:00", "dst": "192.168.1.3"}, {"mac": "00:00:00:00:00:00", "dst": "192.168.1.4"}], []),
        ("static", {"learning": False, "proxy": True, "l2miss": False, "l3miss": False},
         [{"mac": "02:00:64:00:00:03", "dst": "192.168.1.3"}, {"mac": "02:00:64:00:00:04", "dst": "192.168.1.4"}],
         [{"ip": "100.0.0.3", "lladdr": "02:00:64:00:00:03"}, {"ip": "100.0.0.4", "lladdr": "02:00:64:00:00:04"}]),
        ("dove", {"learning": False, "proxy": True, "l2miss": True, "l3miss": True}, None, None),
        ("evpn", {"learning": False, "proxy": False, "l2miss": False, "l3miss": False}, [], []),
    ],
)
def test_each_mode_asks_what_the_source_does(mode, flags, fdb, neigh):
    params = overlay_params(mesh_of(), mode, "eth0", 1450)
    base = {"name": "vxlan0", "vni": 100, "dstport": 4789, "local": "192.168.1.2", "dev": "eth0", "mtu": 1450, "master": "br1",
            "port_learning": mode != "evpn", "neigh_suppress": mode == "evpn"}
    assert params["vxlan_link"] == [dict(base, **flags)]
    if fdb is None:  # dove: the agent owns the tables
        assert params["bridge_fdb"] == [] and devices(params["ip_neigh"]) == []
    else:
        # Compact rows (one string, an entry per line) since the fleet-scale change.
        assert params["bridge_fdb"] == [{"dev": "vxlan0", "state": "exact", "rows": "".join("%s %s\n" % (e["mac"], e["dst"]) for e in fdb)}]
        assert devices(params["ip_neigh"]) == [{"dev": "vxlan0", "state": "exact", "rows": "".join("%s %s\n" % (e["ip"], e["lladdr"]) for e in neigh)}]
    assert_valid(params)


def test_ttl_is_given_only_when_set():
    assert "ttl" not in overlay_params(mesh_of(), "static", "eth0", 1450, None)["vxlan_link"][0]
    assert "ttl" not in overlay_params(mesh_of(), "static", "eth0", 1450, "")["vxlan_link"][0]
    assert overlay_params(mesh_of(), "static", "eth0", 1450, "16")["vxlan_link"][0]["ttl"] == 16


def test_bad_mode_and_missing_group_are_named():
    with pytest.raises(AnsibleFilterError, match="vxlan_mode=bgp"):
        overlay_params(mesh_of(), "bgp", "eth0", 1450)
    mesh = mesh_of()
    mesh[0]["group"] = None
    with pytest.raises(AnsibleFilterError, match="network blue has no group"):
        overlay_params(mesh, "multicast", "eth0", 1450)
    assert overlay_params(mesh, "flood", "eth0", 1450)["vxlan_link"][0].get("group") is None


def test_evpn_leaves_the_tables_to_a_running_frr():
    """Zebra's flood-list entries look like ours: once FRR runs, no exact table may touch them."""
    before = overlay_params(mesh_of(), "evpn", "eth0", 1450)
    assert [t["rows"] for t in before["bridge_fdb"] + devices(before["ip_neigh"])] == ["", ""]
    running = overlay_params(mesh_of(), "evpn", "eth0", 1450, None, True)
    assert running["bridge_fdb"] == [] and devices(running["ip_neigh"]) == []
    assert running["vxlan_link"] == before["vxlan_link"]
    assert_valid(running)


def test_bridge_neighbours_are_the_local_vms_in_evpn_with_an_svi_and_none_otherwise():
    mesh = [dict(net, bridge_addresses=["100.0.0.254/24"]) for net in mesh_of()]
    evpn = overlay_params(mesh, "evpn", "eth0", 1450, None, True, True)
    # FRR runs: no table task for vxlan0, the bridge's own permanent entry per local VM (last,
    # after the devices: enslaving one can change the bridge's MAC, which flushes its table).
    assert evpn["ip_neigh"] == [{"dev": "br1", "state": "exact", "rows": "100.0.0.2 02:00:64:00:00:02\n"}]
    assert_valid(evpn)
    # Other modes, evpn_svi false, or no bridge address: an empty exact table (nothing left behind).
    for params in (overlay_params(mesh, "static", "eth0", 1450), overlay_params(mesh, "evpn", "eth0", 1450, None, True),
                   overlay_params(without_svi(), "evpn", "eth0", 1450, None, True, True)):
        assert params["ip_neigh"][-1] == {"dev": "br1", "state": "exact", "rows": ""}
