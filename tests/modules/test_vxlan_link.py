"""overlay.vxlan.vxlan_link against a real kernel, inside throwaway namespaces.

Every assertion about the result is paired with what `ip -d -j link show` reads back.
"""

from __future__ import annotations

import json
import socket

import pytest
from _assertions import MISSING_NETNS, assert_check_assumes_created, assert_missing_pyroute2_reported, assert_refused, assert_unchanged, stable_dump
from helpers import bridge_json, ip_json, ns_exec, run_module
from pyroute2 import netns as pyroute2_netns

BASE = {"name": "vxlan0", "vni": 100, "dstport": 4789, "local": "192.168.1.2", "dev": "eth0", "master": "br1", "learning": False, "proxy": True}


def kernel(ns: str, name: str = "vxlan0") -> dict | None:
    """The device as ip(8) reads it back, in the module's vocabulary; None when absent."""
    shown = ns_exec(ns, "ip", "-d", "-j", "link", "show", "dev", name, check=False)
    if shown.returncode:
        return None
    link = json.loads(shown.stdout)[0]
    data = link["linkinfo"]["info_data"]
    port = link["linkinfo"].get("info_slave_data", {}) if link["linkinfo"].get("info_slave_kind") == "bridge" else {}
    return {
        "port_learning": port.get("learning"), "neigh_suppress": port.get("neigh_suppress"),
        "ifindex": link["ifindex"], "vni": data["id"], "dstport": data["port"], "local": data.get("local", data.get("local6")),
        "group": data.get("group", data.get("group6")), "remote": data.get("remote", data.get("remote6")), "dev": data.get("link"),
        "learning": data["learning"], "proxy": data.get("proxy", False), "l2miss": data.get("l2miss", False),
        "l3miss": data.get("l3miss", False), "ttl": data.get("ttl", 0), "tos": data.get("tos", "inherit"),
        "ageing": data["ageing"], "mtu": link["mtu"], "master": link.get("master"), "up": "UP" in link["flags"],
        "address": link["address"],
    }


def args(ns, **params):
    return dict({"netns": ns.name}, **params)


@pytest.fixture
def bridged(underlay):
    """`underlay` plus an empty bridge br1 (up); no vxlan device yet."""
    ns_exec(underlay.name, "ip", "link", "add", "br1", "type", "bridge")
    ns_exec(underlay.name, "ip", "link", "set", "br1", "up")
    return underlay


@pytest.fixture
def hold_udp_port():
    """Bind a UDP port inside a namespace, as another program would: a vxlan device on that
    port then cannot come up (EADDRINUSE). Sockets are closed at the end."""
    held = []

    def hold(ns: str, port: int, family=socket.AF_INET):
        sock = pyroute2_netns.create_socket("/run/netns/" + ns, family, socket.SOCK_DGRAM, 0, flags=0)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
        held.append(sock)

    yield hold
    for sock in held:
        sock.close()


# ---------------------------------------------------------------------------------------------
# check -> apply -> idempotent check -> idempotent apply
# ---------------------------------------------------------------------------------------------


def test_four_steps_create(bridged):
    ns = bridged.name
    before = stable_dump(ns)

    checked = run_module("vxlan_link", args(bridged, **BASE), check=True)
    assert (checked["changed"], checked["recreated"]) == (True, False)
    assert checked["diff"]["before"] == {}
    assert kernel(ns) is None
    assert_unchanged(ns, before)

    applied = run_module("vxlan_link", args(bridged, **BASE))
    assert (applied["changed"], applied["recreated"]) == (True, False)
    got = kernel(ns)
    assert got["vni"] == 100 and got["dstport"] == 4789 and got["local"] == "192.168.1.2" and got["dev"] == "eth0"
    assert (got["learning"], got["proxy"], got["l2miss"], got["l3miss"]) == (False, True, False, False)
    assert (got["master"], got["up"], got["mtu"], got["group"], got["remote"]) == ("br1", True, 1450, None, None)
    # Check mode predicted exactly what the real run produced, and the result is the read-back.
    assert checked["diff"]["after"] == applied["diff"]["after"] == applied["link"]
    assert applied["link"] == {"name": "vxlan0", "vni": 100, "dstport": 4789, "local": "192.168.1.2", "group": None, "remote": None,
                               "dev": "eth0", "learning": False, "proxy": True, "l2miss": False, "l3miss": False, "ttl": 0, "tos": 0,
                               "ageing": 300, "mtu": 1450, "master": "br1", "port_learning": True, "neigh_suppress": False,
                               "up": True}

    again = run_module("vxlan_link", args(bridged, **BASE), check=True)
    assert (again["changed"], again["recreated"]) == (False, False)
    assert again["diff"]["before"] == again["diff"]["after"] == applied["link"]

    final = run_module("vxlan_link", args(bridged, **BASE))
    assert (final["changed"], final["recreated"]) == (False, False)
    assert kernel(ns) == got


def test_create_without_dev_predicts_kernel_defaults(bridged):
    params = {"name": "vxlan7", "vni": 7, "local": "192.168.1.2"}
    checked = run_module("vxlan_link", args(bridged, **params), check=True)
    applied = run_module("vxlan_link", args(bridged, **params))
    assert checked["diff"]["after"] == applied["link"]
    assert kernel(bridged.name, "vxlan7")["dstport"] == 4789  # explicit, never the kernel's 8472
    assert run_module("vxlan_link", args(bridged, **params))["changed"] is False


def test_unset_knobs_keep_what_the_kernel_has(bridged):
    ns = bridged.name
    run_module("vxlan_link", args(bridged, **dict(BASE, ttl=10, ageing=100)))
    before = kernel(ns)
    sparse = {k: v for k, v in BASE.items() if k not in ("master",)}
    checked = run_module("vxlan_link", args(bridged, **sparse), check=True)
    assert checked["changed"] is False
    assert checked["diff"]["after"]["master"] == "br1" and checked["diff"]["after"]["ttl"] == 10
    assert run_module("vxlan_link", args(bridged, **sparse))["changed"] is False
    assert kernel(ns) == before


# ---------------------------------------------------------------------------------------------
# Recreate vs in place
# ---------------------------------------------------------------------------------------------

GROUP_BASE = {"name": "vxlan0", "vni": 100, "dstport": 4789, "local": "192.168.1.2", "group": "239.1.1.1", "dev": "eth0", "master": "br1"}

RECREATE = [
    ("vni", BASE, {"vni": 200}, {"vni": 200}),
    ("dstport", BASE, {"dstport": 4790}, {"dstport": 4790}),
    ("proxy", BASE, {"proxy": False}, {"proxy": False}),
    ("l2miss", BASE, {"l2miss": True}, {"l2miss": True}),
    ("l3miss", BASE, {"l3miss": True}, {"l3miss": True}),
    ("local", BASE, {"local": "192.168.1.5"}, {"local": "192.168.1.5"}),
    ("remote", BASE, {"remote": "192.168.1.3"}, {"remote": "192.168.1.3"}),
    ("group", GROUP_BASE, {"group": "239.1.1.2"}, {"group": "239.1.1.2"}),
]


@pytest.mark.parametrize("base, change, expected", [c[1:] for c in RECREATE], ids=[c[0] for c in RECREATE])
def test_recreate_keeps_bridge_and_up(bridged, base, change, expected):
    ns = bridged.name
    ns_exec(ns, "ip", "addr", "add", "192.168.1.5/24", "dev", "eth0")
    run_module("vxlan_link", args(bridged, **base))
    old = kernel(ns)
    field = next(iter(change))

    checked = run_module("vxlan_link", args(bridged, **dict(base, **change)), check=True)
    assert (checked["changed"], checked["recreated"]) == (True, True)
    assert field in checked["diff"]["after_header"] and "recreated" in checked["diff"]["after_header"]
    assert checked["diff"]["after"][field] == expected[field]
    assert kernel(ns) == old  # check mode: same device, untouched

    done = run_module("vxlan_link", args(bridged, **dict(base, **change)))
    assert (done["changed"], done["recreated"]) == (True, True)
    new = kernel(ns)
    assert new["ifindex"] != old["ifindex"]  # really a new device
    for key, value in expected.items():
        assert new[key] == value
    assert (new["master"], new["up"]) == ("br1", True)
    assert {k: v for k, v in new.items() if k not in set(expected) | {"ifindex", "address"}} == \
           {k: v for k, v in old.items() if k not in set(expected) | {"ifindex", "address"}}
    assert done["diff"]["after"] == checked["diff"]["after"]

    again = run_module("vxlan_link", args(bridged, **dict(base, **change)))
    assert (again["changed"], again["recreated"]) == (False, False)
    assert kernel(ns) == new


IN_PLACE = [
    ("learning", {"learning": True}, {"learning": True}),
    ("ttl", {"ttl": 10}, {"ttl": 10}),
    ("tos", {"tos": 16}, {"tos": "0x10"}),
    ("ageing", {"ageing": 100}, {"ageing": 100}),
    ("mtu", {"mtu": 1400}, {"mtu": 1400}),
    ("master", {"master": "br2"}, {"master": "br2"}),
    # EVPN's bridge port: ARP/ND suppressed, no learning on the port (zebra installs the entries).
    ("port-flags", {"port_learning": False, "neigh_suppress": True}, {"port_learning": False, "neigh_suppress": True}),
    ("port-flags-new-master", {"master": "br2", "neigh_suppress": True}, {"master": "br2", "neigh_suppress": True}),
    ("several", {"learning": True, "ttl": 64, "ageing": 30, "mtu": 1300}, {"learning": True, "ttl": 64, "ageing": 30, "mtu": 1300}),
]


@pytest.mark.parametrize("change, expected", [c[1:] for c in IN_PLACE], ids=[c[0] for c in IN_PLACE])
def test_in_place_changes_keep_the_device(bridged, change, expected):
    ns = bridged.name
    ns_exec(ns, "ip", "link", "add", "br2", "type", "bridge")
    run_module("vxlan_link", args(bridged, **BASE))
    old = kernel(ns)

    checked = run_module("vxlan_link", args(bridged, **dict(BASE, **change)), check=True)
    assert (checked["changed"], checked["recreated"]) == (True, False)
    assert "after_header" not in checked["diff"]
    assert kernel(ns) == old

    done = run_module("vxlan_link", args(bridged, **dict(BASE, **change)))
    assert (done["changed"], done["recreated"]) == (True, False)
    new = kernel(ns)
    assert new["ifindex"] == old["ifindex"]
    assert {k: new[k] for k in expected} == expected
    assert {k: v for k, v in new.items() if k not in expected} == {k: v for k, v in old.items() if k not in expected}
    assert done["diff"]["after"] == checked["diff"]["after"] == done["link"]
    assert run_module("vxlan_link", args(bridged, **dict(BASE, **change)))["changed"] is False


def test_port_flags_created_with_the_device_and_reset_in_place(bridged):
    ns = bridged.name
    evpn = dict(BASE, proxy=False, port_learning=False, neigh_suppress=True)
    checked = run_module("vxlan_link", args(bridged, **evpn), check=True)
    assert kernel(ns) is None
    applied = run_module("vxlan_link", args(bridged, **evpn))
    got = kernel(ns)
    assert (got["port_learning"], got["neigh_suppress"]) == (False, True)
    assert checked["diff"]["after"] == applied["link"]
    assert run_module("vxlan_link", args(bridged, **evpn))["changed"] is False
    # Back to another mode's port: in place, the same device.
    back = run_module("vxlan_link", args(bridged, **dict(evpn, port_learning=True, neigh_suppress=False)))
    assert (back["changed"], back["recreated"]) == (True, False)
    assert back["diff"]["before"]["neigh_suppress"] is True and back["diff"]["after"]["neigh_suppress"] is False
    assert dict(kernel(ns), port_learning=False, neigh_suppress=True) == got


def test_a_down_device_is_brought_up_in_place(bridged):
    ns = bridged.name
    run_module("vxlan_link", args(bridged, **BASE))
    ns_exec(ns, "ip", "link", "set", "vxlan0", "down")
    old = kernel(ns)
    result = run_module("vxlan_link", args(bridged, **BASE))
    assert (result["changed"], result["recreated"]) == (True, False)
    assert result["diff"]["before"]["up"] is False and result["diff"]["after"]["up"] is True
    assert kernel(ns) == dict(old, up=True)


# ---------------------------------------------------------------------------------------------
# MTU derived from the underlay
# ---------------------------------------------------------------------------------------------


def test_mtu_default_ipv4_underlay_minus_50(bridged):
    ns = bridged.name
    ns_exec(ns, "ip", "link", "set", "eth0", "mtu", "9000")
    result = run_module("vxlan_link", args(bridged, **BASE))
    assert result["link"]["mtu"] == 8950 == kernel(ns)["mtu"]
    refused = assert_refused(ns, "vxlan_link", args(bridged, **dict(BASE, mtu=8951)), "mtu=8951", "9000 - 50 = 8950")
    assert "eth0" in refused["msg"]


def test_mtu_default_ipv6_underlay_minus_70(bridged):
    ns = bridged.name
    ns_exec(ns, "ip", "addr", "add", "fd00::2/64", "dev", "eth0", "nodad")
    params = {"name": "vxlan6", "vni": 600, "local": "fd00::2", "group": "ff05::100", "dev": "eth0", "master": "br1"}
    checked = run_module("vxlan_link", args(bridged, **params), check=True)
    assert checked["diff"]["after"]["mtu"] == 1430
    result = run_module("vxlan_link", args(bridged, **params))
    got = kernel(ns, "vxlan6")
    assert result["link"]["mtu"] == got["mtu"] == 1430
    assert (got["local"], got["group"], got["master"], got["up"]) == ("fd00::2", "ff05::100", "br1", True)
    assert run_module("vxlan_link", args(bridged, **params))["changed"] is False
    assert_refused(ns, "vxlan_link", args(bridged, **dict(params, mtu=1431)), "mtu=1431", "1500 - 70 = 1430")


# ---------------------------------------------------------------------------------------------
# absent
# ---------------------------------------------------------------------------------------------


def test_absent(bridged):
    ns = bridged.name
    run_module("vxlan_link", args(bridged, **BASE))
    checked = run_module("vxlan_link", args(bridged, name="vxlan0", state="absent"), check=True)
    assert checked["changed"] is True and checked["diff"]["after"] == {} and checked["diff"]["before"]["vni"] == 100
    assert kernel(ns) is not None
    assert run_module("vxlan_link", args(bridged, name="vxlan0", state="absent"))["changed"] is True
    assert kernel(ns) is None
    before = stable_dump(ns)
    for check in (True, False):
        gone = run_module("vxlan_link", args(bridged, name="vxlan0", state="absent"), check=check)
        assert gone["changed"] is False and not gone.get("failed") and gone["link"] == {}
    assert_unchanged(ns, before)


# ---------------------------------------------------------------------------------------------
# Bad input: refused before the kernel is touched
# ---------------------------------------------------------------------------------------------

NEW = {"name": "vxlan1", "vni": 101, "local": "192.168.1.2", "dev": "eth0", "master": "br1"}

BAD_INPUTS = [
    ("vni-0", {"vni": 0}, ["vni=0", "between 1 and 16777215"]),
    ("vni-too-big", {"vni": 16777216}, ["vni=16777216", "between 1 and 16777215"]),
    ("vni-missing", {"vni": None}, ["vni"]),
    ("vni-not-int", {"vni": "hundred"}, ["vni", "hundred"]),
    ("vni-in-use", {"vni": 100}, ["vni=100", "already used by vxlan0"]),
    ("dstport-0", {"dstport": 0}, ["dstport=0", "between 1 and 65535"]),
    ("dstport-too-big", {"dstport": 65536}, ["dstport=65536", "between 1 and 65535"]),
    ("group-unicast", {"group": "192.168.1.9"}, ["group='192.168.1.9'", "not a multicast"]),
    ("group-without-dev", {"group": "239.1.1.1", "dev": None}, ["dev=None", "required with group"]),
    ("group-and-remote", {"group": "239.1.1.1", "remote": "192.168.1.3"}, ["mutually exclusive", "group", "remote"]),
    ("remote-multicast", {"remote": "239.1.1.1"}, ["remote='239.1.1.1'", "unicast"]),
    ("remote-malformed", {"remote": "192.168.1"}, ["remote='192.168.1'", "not an IPv4 or IPv6"]),
    ("local-not-on-host", {"local": "192.168.1.99"}, ["local='192.168.1.99'", "not an address of this host"]),
    ("local-empty", {"local": ""}, ["local=''", "empty"]),
    ("local-zone-index", {"local": "fe80::1%eth0"}, ["local='fe80::1%eth0'"]),
    ("mixed-local4-group6", {"group": "ff05::1"}, ["group='ff05::1'", "IPv6 but IPv4"]),
    ("mixed-local4-remote6", {"remote": "fd00::3"}, ["remote='fd00::3'", "IPv6 but IPv4"]),
    ("mixed-local6-remote4", {"local": "fd00::2", "remote": "192.168.1.3"}, ["remote='192.168.1.3'", "IPv4 but IPv6"]),
    ("name-too-long", {"name": "vxlan-overlay-100"}, ["name='vxlan-overlay-100'", "17 characters"]),
    ("name-slash", {"name": "vx/1"}, ["name='vx/1'", "'/'"]),
    ("name-space", {"name": "vx 1"}, ["name='vx 1'"]),
    ("name-empty", {"name": ""}, ["name=''", "empty"]),
    ("name-not-vxlan", {"name": "br1"}, ["name='br1'", "bridge, not a vxlan"]),
    ("master-missing", {"master": "br9"}, ["master='br9'", "no such interface"]),
    ("master-not-bridge", {"master": "eth0"}, ["master='eth0'", "not a bridge"]),
    ("master-too-long", {"master": "bridge-for-vms-1"}, ["master='bridge-for-vms-1'", "16 characters"]),
    ("dev-missing", {"dev": "eth9"}, ["dev='eth9'", "no such interface"]),
    ("dev-slash", {"dev": "eth/0"}, ["dev='eth/0'", "'/'"]),
    ("netns-missing", {"netns": MISSING_NETNS}, ["netns='%s'" % MISSING_NETNS, "does not exist"]),
    ("netns-slash", {"netns": "a/b"}, ["netns='a/b'"]),
    ("mtu-above-underlay", {"mtu": 1451}, ["mtu=1451", "eth0", "1500 - 50 = 1450"]),
    ("mtu-too-small", {"mtu": 67}, ["mtu=67", "between 68 and 65535"]),
    ("ttl-256", {"ttl": 256}, ["ttl=256", "between 0 and 255"]),
    ("tos-negative", {"tos": -1}, ["tos=-1", "between 0 and 255"]),
    ("ageing-negative", {"ageing": -1}, ["ageing=-1"]),
    ("change-existing-bad-mtu", {"name": "vxlan0", "vni": 100, "mtu": 9000}, ["mtu=9000", "1450"]),
    ("state-unknown", {"state": "exact"}, ["state", "exact"]),
    ("port-flag-without-master", {"master": None, "neigh_suppress": True}, ["neigh_suppress=True", "needs master"]),
]


@pytest.mark.parametrize("override, fragments", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_refused_and_changes_nothing(vxlan, override, fragments):
    params = {k: v for k, v in dict(NEW, **override).items() if v is not None}
    assert_refused(vxlan.name, "vxlan_link", args(vxlan, **params), *fragments)
    if override.get("master") == "br9":  # the role creates the bridge first: check mode goes on
        result = assert_check_assumes_created(vxlan.name, "vxlan_link", args(vxlan, **params), "master", "br9")
        assert result["diff"]["after"]["master"] == "br9", result["diff"]
        return
    assert_refused(vxlan.name, "vxlan_link", args(vxlan, **params), *fragments, check=True)


# ---------------------------------------------------------------------------------------------
# Kernel refusals after validation: nothing left behind, the old device put back as it was
# ---------------------------------------------------------------------------------------------


def test_create_refused_by_the_kernel_leaves_no_device(bridged, hold_udp_port):
    ns = bridged.name
    hold_udp_port(ns, 4789)
    before = stable_dump(ns)
    result = run_module("vxlan_link", args(bridged, **BASE))
    assert result["failed"] is True and result["changed"] is False
    assert "kernel refused creating vxlan0" in result["msg"] and "EADDRINUSE" in result["msg"]
    assert "rolled back 1 earlier change(s)" in result["msg"] and "INCOMPLETE" not in result["msg"]
    assert "Traceback" not in result["_stderr"]
    assert kernel(ns) is None
    assert_unchanged(ns, before)


def test_recreate_refused_by_the_kernel_puts_the_old_device_back(bridged, hold_udp_port):
    """dstport 4789 -> 4790 while another program holds 4790: the new device cannot come up.
    The old one comes back with its ifindex, MAC, bridge, state and fdb/neighbour entries."""
    ns = bridged.name
    run_module("vxlan_link", args(bridged, **BASE))
    run_module("bridge_fdb", {"netns": ns, "dev": "vxlan0", "entries": [
        {"mac": "00:00:00:00:00:00", "dst": "192.168.1.3"}, {"mac": "00:00:00:00:00:00", "dst": "192.168.1.4"},
        {"mac": "36:ae:ed:9d:22:aa", "dst": "192.168.1.3"}, {"mac": "4e:11:78:36:da:e7", "dst": "192.168.1.4", "vni": 200}]})
    run_module("ip_neigh", {"netns": ns, "dev": "vxlan0", "entries": [
        {"ip": "100.0.0.3", "lladdr": "36:ae:ed:9d:22:aa"}, {"ip": "fd01::4", "lladdr": "4e:11:78:36:da:e7"}]})
    hold_udp_port(ns, 4790)
    before, old = stable_dump(ns), kernel(ns)
    fdb_before = sorted(json.dumps(e, sort_keys=True) for e in bridge_json(ns, "fdb", "show", "dev", "vxlan0"))

    result = run_module("vxlan_link", args(bridged, **dict(BASE, dstport=4790)))
    assert result["failed"] is True and result["changed"] is False
    assert "kernel refused recreating vxlan0" in result["msg"] and "EADDRINUSE" in result["msg"]
    assert "rolled back 2 earlier change(s)" in result["msg"] and "INCOMPLETE" not in result["msg"]
    assert kernel(ns) == old
    assert sorted(json.dumps(e, sort_keys=True) for e in bridge_json(ns, "fdb", "show", "dev", "vxlan0")) == fdb_before
    assert len([e for e in ip_json(ns, "neigh", "show", "dev", "vxlan0") if "PERMANENT" in e["state"]]) == 2
    assert_unchanged(ns, before)


def test_in_place_up_refused_undoes_the_other_changes(bridged, hold_udp_port):
    """A down device whose port is now held: bringing it up fails after its ttl/mtu were changed."""
    ns = bridged.name
    run_module("vxlan_link", args(bridged, **BASE))
    ns_exec(ns, "ip", "link", "set", "vxlan0", "down")
    hold_udp_port(ns, 4789)
    before, old = stable_dump(ns), kernel(ns)
    result = run_module("vxlan_link", args(bridged, **dict(BASE, ttl=20, mtu=1400)))
    assert result["failed"] is True and result["changed"] is False
    assert "kernel refused changing vxlan0" in result["msg"] and "EADDRINUSE" in result["msg"]
    assert "rolled back 2 earlier change(s)" in result["msg"]
    assert kernel(ns) == old
    assert_unchanged(ns, before)


def test_missing_pyroute2_gives_missing_required_lib():
    assert_missing_pyroute2_reported("vxlan_link", {"name": "vxlan0", "vni": 100})
