"""The full-mesh computation behind the vxlan role, as a plain function, and the proof that the
vxlan_mesh filter and the run's endpoint map (vxlan_host_share) are one builder."""

from __future__ import annotations

import pytest

from ansible_collections.overlay.vxlan.plugins.filter.mesh import AnsibleFilterError, compute_mesh, vm_mac, vxlan_mesh
from ansible_collections.overlay.vxlan.plugins.filter.overlay_check import vxlan_host_share, vxlan_overlay_check

NETWORKS = [{"name": "blue", "vni": 100, "bridge": "br1", "vxlan_dev": "vxlan0", "dstport": 4789, "group": "239.1.1.1"}]


def source_hosts():
    """The source document's three hosts."""
    return {
        "h%d" % n: {
            "vxlan_underlay_ip": "192.168.1.%d" % (n + 1),
            "vxlan_endpoints": [{"network": "blue", "namespace": "ns1", "host_if": "tap1", "vm_if": "tap2", "address": "100.0.0.%d/24" % (n + 1)}],
        }
        for n in (1, 2, 3)
    }


def test_vm_mac_is_derived_from_the_address():
    assert vm_mac("100.0.0.2/24") == "02:00:64:00:00:02"
    assert vm_mac("100.0.0.3") == "02:00:64:00:00:03"
    six = vm_mac("fd00::2/64", "blue")
    assert six.startswith("02:") and six == vm_mac("fd00::2/64", "blue") != vm_mac("fd00::2/64", "red")


def test_h3_sees_the_other_two_hosts():
    (blue,) = compute_mesh(source_hosts(), NETWORKS, "h3")
    assert blue["local"] == "192.168.1.4"
    assert blue["flood"] == [{"mac": "00:00:00:00:00:00", "dst": "192.168.1.2"}, {"mac": "00:00:00:00:00:00", "dst": "192.168.1.3"}]
    assert blue["fdb"] == [{"mac": "02:00:64:00:00:02", "dst": "192.168.1.2"}, {"mac": "02:00:64:00:00:03", "dst": "192.168.1.3"}]
    assert blue["neigh"] == [{"ip": "100.0.0.2", "lladdr": "02:00:64:00:00:02"}, {"ip": "100.0.0.3", "lladdr": "02:00:64:00:00:03"}]
    assert [e["ip"] for e in blue["endpoints"]] == ["100.0.0.4"]


def test_every_host_gets_n_minus_one_entries_at_scale():
    hosts = {
        "h%d" % n: {"vxlan_underlay_ip": "10.1.%d.%d" % (n // 200, n % 200 + 1),
                    "vxlan_endpoints": [{"network": "blue", "namespace": "ns1", "host_if": "tap1", "vm_if": "tap2",
                                         "address": "100.%d.%d.1/8" % (n // 200, n % 200)}]}
        for n in range(300)
    }
    for me in ("h0", "h150", "h299"):
        (blue,) = compute_mesh(hosts, NETWORKS, me)
        assert len(blue["fdb"]) == len(blue["neigh"]) == len(blue["flood"]) == 299
        assert all(entry["dst"] != hosts[me]["vxlan_underlay_ip"] for entry in blue["fdb"])


def test_explicit_mac_wins_and_is_normalised():
    hosts = source_hosts()
    hosts["h1"]["vxlan_endpoints"][0]["mac"] = "36:AE:ED:9D:22:AA"
    (blue,) = compute_mesh(hosts, NETWORKS, "h2")
    assert {"ip": "100.0.0.2", "lladdr": "36:ae:ed:9d:22:aa"} in blue["neigh"]


def test_two_networks_do_not_mix():
    networks = NETWORKS + [{"name": "red", "vni": 200, "bridge": "br2", "vxlan_dev": "vxlan1"}]
    hosts = source_hosts()
    hosts["h1"]["vxlan_endpoints"].append({"network": "red", "namespace": "ns2", "host_if": "tap3", "vm_if": "tap4", "address": "100.0.0.2/24"})
    hosts["h2"]["vxlan_endpoints"].append({"network": "red", "namespace": "ns2", "host_if": "tap3", "vm_if": "tap4", "address": "100.0.0.12/24"})
    blue, red = compute_mesh(hosts, networks, "h1")
    assert (blue["vni"], red["vni"]) == (100, 200)
    assert [e["dst"] for e in red["flood"]] == ["192.168.1.3"]  # h3 has no red endpoint
    assert red["neigh"] == [{"ip": "100.0.0.12", "lladdr": "02:00:64:00:00:0c"}]
    assert compute_mesh(hosts, networks, "h3")[0]["name"] == "blue" and len(compute_mesh(hosts, networks, "h3")) == 1


def test_a_removed_host_disappears_from_every_peer():
    hosts = source_hosts()
    del hosts["h2"]
    (blue,) = compute_mesh(hosts, NETWORKS, "h1")
    assert [e["dst"] for e in blue["fdb"]] == ["192.168.1.4"]


# The inventory check's own words (one builder: _overlay_map.build), each naming the host, the
# variable and its value.
@pytest.mark.parametrize("mutate, message", [
    (lambda h: h["h2"]["vxlan_endpoints"][0].update(address="100.0.0.2/24"),
     r"host h2: vxlan_endpoints\[0\].address='100.0.0.2/24': network blue: VM address 100.0.0.2 is also h1's"),
    (lambda h: h["h2"]["vxlan_endpoints"][0].update(mac="02:00:64:00:00:02"),
     r"host h2: vxlan_endpoints\[0\].mac='02:00:64:00:00:02': network blue: VM MAC 02:00:64:00:00:02 is also h1's"),
    (lambda h: h["h2"]["vxlan_endpoints"][0].update(network="green"),
     r"host h2: vxlan_endpoints\[0\].network='green': no such network in vxlan_networks \(it has blue\)"),
    (lambda h: h["h2"].pop("vxlan_underlay_ip"), "host h2: vxlan_underlay_ip=None: is required"),
])
def test_inventory_mistakes_are_named(mutate, message):
    hosts = source_hosts()
    mutate(hosts)
    with pytest.raises(AnsibleFilterError, match=message):
        compute_mesh(hosts, NETWORKS, "h1")


def test_a_host_outside_the_overlay_is_named():
    with pytest.raises(AnsibleFilterError, match="host h9 is not one of the overlay hosts"):
        compute_mesh(source_hosts(), NETWORKS, "h9")


# --- one builder: the filter's share is the run's map's share -------------------------------------

RED_BLUE = [
    {"name": "blue", "vni": 100, "bridge": "br1", "vxlan_dev": "vxlan0", "group": "FF05::1"},
    {"name": "red", "vni": "200", "bridge": "br2", "vxlan_dev": "vxlan1", "dstport": "4790"},
    {"name": "green", "vni": 300, "bridge": "br3", "vxlan_dev": "vxlan2"},  # no endpoint anywhere
]


def ipv6_hostvars() -> dict:
    """An IPv6 underlay written unnormalised, MACs given in upper case and dashes, IPv6 VMs,
    endpoints listed in another order than the networks, a bridge address given: every value
    a separate builder could read differently from the inventory check."""
    def vm(network, n, address, **extra):
        return dict({"network": network, "namespace": "ns%d" % n, "host_if": "tap%d" % n, "vm_if": "vm%d" % n, "address": address}, **extra)
    hosts = {
        "h1": [vm("red", 1, "FD02::0001/64", mac="36-AE-ED-9D-22-AA"), vm("blue", 2, "fd01:0::1/64")],
        "h2": [vm("blue", 1, "FD01::2/64", mac="36:AE:ED:9D:22:BB"), vm("red", 2, "fd02::2/64")],
        "h3": [vm("blue", 1, "fd01::3/64")],
        "h4": [],
    }
    result = {host: {"vxlan_underlay_ip": "FD00:0:0::%d" % n, "vxlan_networks": RED_BLUE, "vxlan_endpoints": endpoints,
                     "vxlan_underlay_mtu": 9000, "vxlan_mode": "static"}
              for n, (host, endpoints) in enumerate(sorted(hosts.items()), start=1)}
    result["h2"]["evpn_svi_addresses"] = {"blue": "FD01::FE/64"}
    return result


def test_the_filter_gives_exactly_the_share_of_the_run_map():
    hostvars = ipv6_hostvars()
    checked = vxlan_overlay_check(hostvars, sorted(hostvars))
    assert checked["problems"] == []
    for host in sorted(hostvars):
        assert vxlan_mesh(hostvars, RED_BLUE, sorted(hostvars), host) == vxlan_host_share(checked["map"], host), host
    # And the values are the check's normalised ones (not the inventory's spelling).
    blue, red = vxlan_mesh(hostvars, RED_BLUE, sorted(hostvars), "h1")
    assert (blue["local"], blue["group"], red["dstport"], red["vni"]) == ("fd00::1", "ff05::1", 4790, 200)
    assert blue["flood"] == [{"mac": "00:00:00:00:00:00", "dst": "fd00::2"}, {"mac": "00:00:00:00:00:00", "dst": "fd00::3"}]
    assert {"ip": "fd01::2", "lladdr": "36:ae:ed:9d:22:bb"} in blue["neigh"]
    assert red["endpoints"][0]["mac"] == "36:ae:ed:9d:22:aa" and red["endpoints"][0]["address"] == "fd02::1/64"
    assert vxlan_mesh(hostvars, RED_BLUE, sorted(hostvars), "h2")[0]["bridge_addresses"] == ["fd01::fe/64"]
    assert vxlan_mesh(hostvars, RED_BLUE, sorted(hostvars), "h4") == []


def test_the_filter_reads_its_networks_argument_not_the_hosts_vxlan_networks():
    hostvars = ipv6_hostvars()
    for entry in hostvars.values():
        entry["vxlan_networks"] = "{{ undefined }}"  # never read: the argument stands for it
    assert [net["name"] for net in vxlan_mesh(hostvars, RED_BLUE[1::-1], sorted(hostvars), "h1")] == ["red", "blue"]
