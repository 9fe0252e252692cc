"""The full-mesh computation behind the vxlan role, as a plain function."""

from __future__ import annotations

import pytest

from ansible_collections.overlay.vxlan.plugins.filter.mesh import AnsibleFilterError, compute_mesh, vm_mac

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


@pytest.mark.parametrize("mutate, message", [
    (lambda h: h["h2"]["vxlan_endpoints"][0].update(address="100.0.0.2/24"), "address 100.0.0.2 is used twice"),
    (lambda h: h["h2"]["vxlan_endpoints"][0].update(mac="02:00:64:00:00:02"), "MAC 02:00:64:00:00:02 is used twice"),
    (lambda h: h["h2"]["vxlan_endpoints"][0].update(network="green"), "unknown network 'green'"),
    (lambda h: h["h2"].pop("vxlan_underlay_ip"), "h2 has no vxlan_underlay_ip"),
])
def test_inventory_mistakes_are_named(mutate, message):
    hosts = source_hosts()
    mutate(hosts)
    with pytest.raises(AnsibleFilterError, match=message):
        compute_mesh(hosts, NETWORKS, "h1")
