"""overlay.vxlan.overlay_info against a real kernel: the source's host in a throwaway namespace
(br1, vxlan0 on eth0, the VM tap1 <-> tap2 in its own namespace), read back and compared with
what `ip` and `bridge` say."""

from __future__ import annotations

import pytest
from _settled import assert_unchanged, stale_netns_file, state_dump
from helpers import ip_json, ns_exec, run_module, unique
from pyroute2 import netns

MODULE = "overlay_info"
VM_MAC = "02:00:64:00:00:02"
PEER_MAC = "36:ae:ed:9d:22:aa"


@pytest.fixture
def host(vxlan):
    """The `vxlan` fixture plus the source's VM (made by netns_veth), a flood-list entry and a
    static ARP entry on vxlan0 (the source's modes 2 and 3). Yields (host namespace, VM namespace)."""
    vm = unique("ovxt-vm")
    try:
        made = run_module("netns_veth", {"netns": vxlan.name, "namespace": vm, "name": "tap1", "peer": "tap2", "master": "br1",
                                         "addresses": ["100.0.0.2/24"], "mac": VM_MAC})
        assert made["changed"] is True, made
        ns_exec(vxlan.name, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vxlan0", "dst", "192.168.1.3")
        ns_exec(vxlan.name, "ip", "neigh", "add", "100.0.0.3", "lladdr", PEER_MAC, "dev", "vxlan0", "nud", "permanent")
        yield vxlan, vm
    finally:
        if vm in netns.listnetns():
            netns.remove(vm)


def info(ns: str, check: bool = False, **args) -> dict:
    result = run_module(MODULE, dict(args, netns=ns), check=check)
    assert not result.get("failed"), result
    return result


def ip_link(ns: str, name: str) -> dict:
    return ip_json(ns, "-d", "link", "show", "dev", name)[0]


def test_reads_the_sources_host(host):
    ns, vm = host
    before, vm_before = state_dump(ns.name), state_dump(vm)
    result = info(ns.name)
    assert result["changed"] is False and "diff" not in result

    assert result["bridges"] == {"br1": {"name": "br1", "mtu": ip_link(ns.name, "br1")["mtu"], "stp": False, "vlan_filtering": False,
                                         "ageing_time": 300, "ports": ["tap1", "vxlan0"], "up": True}}

    kernel = ip_link(ns.name, "vxlan0")
    assert kernel["linkinfo"]["info_data"]["id"] == 100
    assert result["vxlan"] == {"vxlan0": {
        "name": "vxlan0", "vni": 100, "dstport": 4789, "local": "192.168.1.2", "group": None, "remote": None, "dev": "eth0",
        "learning": False, "proxy": True, "l2miss": False, "l3miss": False, "ttl": 0, "tos": 0,
        "ageing": kernel["linkinfo"]["info_data"]["ageing"], "udp_csum": kernel["linkinfo"]["info_data"]["udp_csum"],
        "udp6zerocsumtx": False, "udp6zerocsumrx": False,
        "mtu": kernel["mtu"], "master": "br1", "up": True,
        "port_learning": kernel["linkinfo"]["info_slave_data"]["learning"],
        "neigh_suppress": kernel["linkinfo"]["info_slave_data"]["neigh_suppress"],
    }}

    tap1, tap2 = ip_link(ns.name, "tap1"), ip_link(vm, "tap2")
    assert result["veth"]["tap1"] == {"name": "tap1", "peer": "tap2", "peer_ifindex": tap2["ifindex"], "peer_nsid": tap1["link_netnsid"],
                                      "namespace": vm, "master": "br1", "mtu": tap1["mtu"], "mac": tap1["address"], "up": True}
    eth0 = result["veth"]["eth0"]
    assert (eth0["peer"], eth0["namespace"], eth0["peer_nsid"]) == ("eth0-peer", None, None), "a pair inside one namespace"
    assert result["veth"]["eth0-peer"]["peer"] == "eth0"

    assert vm in result["namespaces"] and ns.name in result["namespaces"]
    assert result["namespaces"][vm]["interfaces"]["tap2"] == {"name": "tap2", "kind": "veth", "mac": VM_MAC, "mtu": tap2["mtu"],
                                                             "up": True, "addresses": ["100.0.0.2/24"]}
    assert result["namespaces"][vm]["interfaces"]["lo"]["addresses"] == ["127.0.0.1/8", "::1/128"]
    assert result["namespaces"][ns.name]["interfaces"]["eth0"]["addresses"] == ["192.168.1.2/24"]

    assert result["fdb"] == {"vxlan0": {"entries": [{"mac": "00:00:00:00:00:00", "dst": "192.168.1.3", "vni": 100, "port": 4789, "via": None}],
                                        "learned": 0, "extern_learn": []}}
    assert result["neigh"] == {"vxlan0": {"permanent": [{"ip": "100.0.0.3", "lladdr": PEER_MAC}], "other": []}}

    assert_unchanged((before, vm_before), (state_dump(ns.name), state_dump(vm)))


def test_check_mode_reads_the_same_and_never_changes(host):
    ns, vm = host
    sections = ["bridges", "vxlan", "veth", "fdb", "neigh"]  # not namespaces: other test runs add and remove theirs
    normal = info(ns.name, gather=sections)
    check = info(ns.name, check=True, gather=sections)
    assert check["changed"] is False
    assert {k: check[k] for k in sections} == {k: normal[k] for k in sections}


@pytest.mark.parametrize("gather", [["bridges"], ["vxlan"], ["veth"], ["namespaces"], ["fdb", "neigh"], ["vxlan", "bridges"]])
def test_only_the_sections_asked_for(host, gather):
    ns, _vm = host
    result = info(ns.name, gather=gather)
    sections = {"bridges", "vxlan", "veth", "namespaces", "fdb", "neigh"}
    assert sections & set(result) == set(gather)


def test_tables_of_the_devices_asked_for(host):
    ns, _vm = host
    ns_exec(ns.name, "ip", "neigh", "add", "100.0.0.9", "lladdr", "02:00:64:00:00:09", "dev", "br1", "nud", "permanent")
    result = info(ns.name, gather=["fdb", "neigh"], dev=["br1", "vxlan0"])
    assert set(result["fdb"]) == {"vxlan0"}, "fdb entries are read for vxlan devices"
    assert result["neigh"]["br1"]["permanent"] == [{"ip": "100.0.0.9", "lladdr": "02:00:64:00:00:09"}]
    assert result["neigh"]["vxlan0"]["permanent"] == [{"ip": "100.0.0.3", "lladdr": PEER_MAC}]


def test_learned_entries_are_counted_apart(vxlan):
    ns_exec(vxlan.name, "bridge", "fdb", "add", "02:00:64:00:00:07", "dev", "vxlan0", "dst", "192.168.1.7", "dynamic")
    # extern_learn: exempt from the neighbour table's gc_thresh3, which all namespaces share (a busy
    # machine's table can be full of other runs' entries, and a plain stale entry gets ENOBUFS).
    ns_exec(vxlan.name, "ip", "neigh", "add", "100.0.0.7", "lladdr", "02:00:64:00:00:07", "dev", "vxlan0", "nud", "stale", "extern_learn")
    result = info(vxlan.name, gather=["fdb", "neigh"])
    assert result["fdb"]["vxlan0"] == {"entries": [], "learned": 1, "extern_learn": []}
    assert result["neigh"]["vxlan0"] == {"permanent": [], "other": [{"ip": "100.0.0.7", "lladdr": "02:00:64:00:00:07"}]}


def test_vxlan_destinations_and_ipv6(underlay):
    ns = underlay.name
    ns_exec(ns, "ip", "link", "add", "vxlan1", "type", "vxlan", "id", "101", "dstport", "4789", "group", "239.1.1.1", "dev", "eth0",
            "l2miss", "l3miss", "ttl", "64", "tos", "inherit", "ageing", "120")
    ns_exec(ns, "ip", "link", "add", "vxlan2", "type", "vxlan", "id", "102", "dstport", "4789", "remote", "192.168.1.9", "local", "192.168.1.2")
    ns_exec(ns, "ip", "link", "add", "vxlan6", "type", "vxlan", "id", "106", "dstport", "4789", "local", "fd00::2", "remote", "fd00::9",
            "udp6zerocsumtx", "udp6zerocsumrx")
    result = info(ns, gather=["vxlan"])["vxlan"]
    one = result["vxlan1"]
    assert (one["group"], one["remote"], one["dev"], one["l2miss"], one["l3miss"], one["ttl"], one["tos"], one["ageing"], one["learning"]) == (
        "239.1.1.1", None, "eth0", True, True, 64, 1, 120, True)
    assert (result["vxlan2"]["remote"], result["vxlan2"]["group"], result["vxlan2"]["local"], result["vxlan2"]["up"]) == (
        "192.168.1.9", None, "192.168.1.2", False)
    six = result["vxlan6"]
    assert (six["local"], six["remote"], six["udp6zerocsumtx"], six["udp6zerocsumrx"]) == ("fd00::2", "fd00::9", True, True)


def test_empty_namespace_reads_empty(ns):
    result = info(ns.name, gather=["bridges", "vxlan", "veth", "fdb", "neigh"])
    assert (result["bridges"], result["vxlan"], result["veth"], result["fdb"], result["neigh"]) == ({}, {}, {}, {}, {})


BAD_INPUTS = [
    ({"dev": ["vxlan9"]}, "dev[0]", "vxlan9"),
    ({"dev": ["vxlan0", "vx/0"]}, "dev[1]", "vx/0"),
    ({"dev": ["vxlan-0123456789"]}, "dev[0]", "vxlan-0123456789"),
    ({"dev": ["vxlan 0"]}, "dev[0]", "vxlan 0"),
    ({"dev": [""]}, "dev[0]", "''"),
    ({"dev": ["vxlan0", "vxlan0"]}, "dev[1]", "vxlan0"),
    ({"netns": "ovxt-missing-ns"}, "netns", "ovxt-missing-ns"),
    ({"netns": "a/b"}, "netns", "a/b"),
    ({"gather": ["routes"]}, "gather", "routes"),
]


@pytest.mark.parametrize("args,field,value", BAD_INPUTS, ids=["%s=%r" % (f, v) for _a, f, v in BAD_INPUTS])
def test_bad_input_fails_cleanly(vxlan, args, field, value):
    before = state_dump(vxlan.name)
    result = run_module(MODULE, dict({"netns": vxlan.name}, **args))
    assert result.get("failed") is True, result
    assert result.get("changed", False) is False  # Ansible's own argument checks omit the key
    assert field in result["msg"] and value in result["msg"], result["msg"]
    assert "Traceback" not in result["_stderr"] and "exception" not in result, result
    assert_unchanged(before, state_dump(vxlan.name))
    assert "ovxt-missing-ns" not in netns.listnetns()


def test_namespace_files_that_are_not_namespaces(ns):
    with stale_netns_file() as stale:
        listed = info(ns.name, gather=["namespaces"])["namespaces"]
        assert ns.name in listed and stale not in listed, "a stale file under /run/netns is skipped"
        result = run_module(MODULE, {"netns": stale})
        assert result.get("failed") is True and result["changed"] is False, result
        assert "netns=%r: cannot be entered" % stale in result["msg"], result["msg"]
        assert "Traceback" not in result["_stderr"]


def test_interfaces_are_read_only_when_asked_for(underlay):
    """gather=[interfaces]: every link of the namespace itself, as validate.yml checks the underlay with."""
    assert "interfaces" not in info(underlay.name)
    result = info(underlay.name, check=True, gather=["interfaces"])
    assert set(result) & {"bridges", "vxlan", "veth", "namespaces", "fdb", "neigh", "interfaces"} == {"interfaces"}
    eth0 = result["interfaces"]["eth0"]
    assert eth0 == {"name": "eth0", "kind": "veth", "mac": ip_link(underlay.name, "eth0")["address"], "mtu": 1500, "up": True,
                    "addresses": ["192.168.1.2/24"]}
    assert sorted(result["interfaces"]) == sorted(link["ifname"] for link in ip_json(underlay.name, "link"))
