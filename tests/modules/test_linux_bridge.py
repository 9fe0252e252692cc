"""overlay.vxlan.linux_bridge against a real kernel, inside throwaway namespaces."""

from __future__ import annotations

import pytest
from _settled import assert_unchanged, stale_netns_file, state_dump
from helpers import ip_json, ns_exec, run_module

MODULE = "linux_bridge"


def bridge(ns, name="br1"):
    """The bridge as `ip -d link` reads it back, or None."""
    links = [link for link in ip_json(ns.name, "-d", "link", "show") if link["ifname"] == name]
    if not links:
        return None
    link = links[0]
    data = link["linkinfo"]["info_data"]
    ports = sorted(p["ifname"] for p in ip_json(ns.name, "link", "show") if p.get("master") == name)
    return {
        "kind": link["linkinfo"]["info_kind"],
        "mtu": link["mtu"],
        "stp_state": data["stp_state"],
        "ageing_time": data["ageing_time"],  # centiseconds, as ip prints it
        "vlan_filtering": data["vlan_filtering"],
        "up": "UP" in link["flags"],
        "ports": ports,
    }


def run(ns, check=False, **args):
    return run_module(MODULE, dict(args, netns=ns.name), check=check)


def vlan_filtering_supported(ns) -> bool:
    """CONFIG_BRIDGE_VLAN_FILTERING: without it the kernel refuses the attribute (EOPNOTSUPP)."""
    probe = ns_exec(ns.name, "ip", "link", "add", "vfprobe", "type", "bridge", "vlan_filtering", "1", check=False)
    if probe.returncode == 0:
        ns_exec(ns.name, "ip", "link", "del", "vfprobe")
    return probe.returncode == 0


def add_port(ns, name, bridge_name="br1", mtu=None):
    ns_exec(ns.name, "ip", "link", "add", name, "type", "veth", "peer", "name", name + "p")
    if mtu:
        ns_exec(ns.name, "ip", "link", "set", name, "mtu", str(mtu))
    ns_exec(ns.name, "ip", "link", "set", name, "master", bridge_name)


def test_create_check_apply_then_idempotent(ns):
    args = {"name": "br1", "mtu": 1450, "stp": True, "ageing_time": 120}
    before = state_dump(ns.name)

    check = run(ns, check=True, **args)
    assert check["changed"] is True, check
    assert check["diff"]["before"] == {}
    assert check["diff"]["after"] == {"name": "br1", "mtu": 1450, "stp": True, "vlan_filtering": False,
                                      "ageing_time": 120, "ports": [], "up": True, "addresses": []}
    assert_unchanged(before, state_dump(ns.name))

    applied = run(ns, **args)
    assert applied["changed"] is True, applied
    assert bridge(ns) == {"kind": "bridge", "mtu": 1450, "stp_state": 1, "ageing_time": 12000,
                          "vlan_filtering": 0, "up": True, "ports": []}
    # What check mode predicted is what the kernel now holds.
    assert applied["bridge"] == check["diff"]["after"]

    again_check = run(ns, check=True, **args)
    assert again_check["changed"] is False, again_check
    again = run(ns, **args)
    assert again["changed"] is False, again
    assert again["diff"]["before"] == again["diff"]["after"] == applied["bridge"]


def test_bare_bridge_gets_kernel_defaults_and_is_up(ns):
    result = run(ns, name="br1")
    assert result["changed"] is True
    assert bridge(ns) == {"kind": "bridge", "mtu": 1500, "stp_state": 0, "ageing_time": 30000,
                          "vlan_filtering": 0, "up": True, "ports": []}
    assert result["bridge"]["ageing_time"] == 300
    assert run(ns, name="br1")["changed"] is False


def test_change_in_place_with_check_mode_first(ns):
    run(ns, name="br1", mtu=1500, stp=False, ageing_time=300)
    add_port(ns, "tap1")
    index = ip_json(ns.name, "link", "show", "br1")[0]["ifindex"]
    before = state_dump(ns.name)

    args = {"name": "br1", "mtu": 9000, "stp": True, "ageing_time": 30}
    check = run(ns, check=True, **args)
    assert check["changed"] is True
    assert check["diff"]["before"]["mtu"] == 1500 and check["diff"]["before"]["stp"] is False
    assert check["diff"]["after"] == {"name": "br1", "mtu": 9000, "stp": True, "vlan_filtering": False,
                                      "ageing_time": 30, "ports": ["tap1"], "up": True, "addresses": []}
    assert_unchanged(before, state_dump(ns.name))

    result = run(ns, **args)
    assert result["changed"] is True
    got = bridge(ns)
    assert (got["mtu"], got["stp_state"], got["ageing_time"], got["ports"]) == (9000, 1, 3000, ["tap1"])
    assert ip_json(ns.name, "link", "show", "br1")[0]["ifindex"] == index, "changed in place, not recreated"
    assert result["bridge"] == check["diff"]["after"]
    assert run(ns, **args)["changed"] is False


def test_explicit_mtu_sticks_when_a_smaller_port_joins(ns):
    run(ns, name="br1", mtu=9000)
    add_port(ns, "tap1", mtu=1500)
    assert bridge(ns)["mtu"] == 9000
    assert run(ns, name="br1", mtu=9000)["changed"] is False


def test_options_left_out_are_not_managed(ns):
    run(ns, name="br1", stp=True, ageing_time=10)
    result = run(ns, name="br1")
    assert result["changed"] is False
    assert (result["bridge"]["stp"], result["bridge"]["ageing_time"]) == (True, 10)


def test_down_bridge_is_brought_up(ns):
    run(ns, name="br1")
    ns_exec(ns.name, "ip", "link", "set", "br1", "down")
    check = run(ns, check=True, name="br1")
    assert check["changed"] is True and check["diff"]["before"]["up"] is False and check["diff"]["after"]["up"] is True
    assert bridge(ns)["up"] is False
    assert run(ns, name="br1")["changed"] is True
    assert bridge(ns)["up"] is True


def test_ports_are_reported(vxlan):
    result = run(vxlan, name="br1")
    assert result["bridge"]["ports"] == ["vxlan0"]


def test_absent_releases_ports_and_is_idempotent(ns):
    run(ns, name="br1")
    add_port(ns, "tap1")
    before = state_dump(ns.name)

    check = run(ns, check=True, name="br1", state="absent")
    assert check["changed"] is True
    assert check["diff"]["before"]["ports"] == ["tap1"] and check["diff"]["after"] == {}
    assert_unchanged(before, state_dump(ns.name))

    result = run(ns, name="br1", state="absent")
    assert result["changed"] is True and result["bridge"] == {}
    assert bridge(ns) is None
    tap1 = ip_json(ns.name, "link", "show", "tap1")[0]
    assert "master" not in tap1, "the port is released, not deleted"
    assert run(ns, name="br1", state="absent")["changed"] is False


def test_vlan_filtering(ns):
    if vlan_filtering_supported(ns):
        result = run(ns, name="br1", vlan_filtering=True)
        assert result["changed"] is True and bridge(ns)["vlan_filtering"] == 1
        assert run(ns, name="br1", vlan_filtering=True)["changed"] is False
        run(ns, name="br1", vlan_filtering=False)
        assert bridge(ns)["vlan_filtering"] == 0
        return
    # This kernel lacks CONFIG_BRIDGE_VLAN_FILTERING: a clean refusal, nothing left behind.
    before = state_dump(ns.name)
    result = run(ns, name="br1", vlan_filtering=True)
    assert result.get("failed") is True and result["changed"] is False
    assert "vlan_filtering" in result["msg"] and "Operation not supported" in result["msg"], result["msg"]
    assert "Traceback" not in result["_stderr"] and "exception" not in result
    assert_unchanged(before, state_dump(ns.name))
    # Asking for the kernel's default (off) works: nothing is sent for it.
    assert run(ns, name="br1", vlan_filtering=False)["changed"] is True
    assert run(ns, name="br1", vlan_filtering=False)["changed"] is False


def test_refused_change_is_rolled_back(ns):
    """A kernel refusal half-way undoes what this run had already changed on the bridge."""
    if vlan_filtering_supported(ns):
        pytest.skip("needs a kernel that refuses vlan_filtering to provoke a refusal mid-way")
    run(ns, name="br1", mtu=1500, stp=False, ageing_time=300)
    before = state_dump(ns.name)
    result = run(ns, name="br1", mtu=1400, stp=True, ageing_time=20, vlan_filtering=True)
    assert result.get("failed") is True and result["changed"] is False
    assert "rolled back 3 earlier change(s)" in result["msg"], result["msg"]
    assert "ROLLBACK INCOMPLETE" not in result["msg"]
    assert_unchanged(before, state_dump(ns.name))
    got = bridge(ns)
    assert (got["mtu"], got["stp_state"], got["ageing_time"]) == (1500, 0, 30000)


def addresses(ns, name="br1"):
    """The bridge's addresses as `ip addr` reads them back (IPv6 link-local left out)."""
    return sorted("%s/%d" % (a["local"], a["prefixlen"]) for a in ip_json(ns.name, "addr", "show", "dev", name)[0]["addr_info"]
                  if not a["local"].startswith("fe80:"))


def test_addresses_exact_set_check_apply_idempotent(ns):
    """The bridge's own addresses (EVPN's SVI): check mode changes nothing, apply sets exactly
    the set, the second run is quiet, [] removes them, left out they are not managed."""
    run(ns, name="br1", mtu=1450)
    add_port(ns, "tap1")
    before = state_dump(ns.name)
    args = {"name": "br1", "mtu": 1450, "addresses": ["100.0.0.254/24", "2001:db8:100::fe/64"]}

    check = run(ns, check=True, **args)
    assert check["changed"] is True and check["diff"]["before"]["addresses"] == []
    assert check["diff"]["after"]["addresses"] == ["100.0.0.254/24", "2001:db8:100::fe/64"]
    assert_unchanged(before, state_dump(ns.name))

    applied = run(ns, **args)
    assert applied["changed"] is True, applied
    assert addresses(ns) == ["100.0.0.254/24", "2001:db8:100::fe/64"]
    assert applied["bridge"] == check["diff"]["after"]
    assert run(ns, check=True, **args)["changed"] is False
    assert run(ns, **args)["changed"] is False

    # Left out: not managed; one more by hand is kept.
    ns_exec(ns.name, "ip", "addr", "add", "10.9.9.9/32", "dev", "br1")
    assert run(ns, name="br1")["changed"] is False
    assert "10.9.9.9/32" in addresses(ns)
    # Given: exactly that set (the hand-made one goes, one of ours is replaced).
    changed = run(ns, name="br1", addresses=["100.0.0.253/24"])
    assert changed["changed"] is True and changed["diff"]["before"]["addresses"] == ["10.9.9.9/32", "100.0.0.254/24", "2001:db8:100::fe/64"]
    assert addresses(ns) == ["100.0.0.253/24"]
    # []: none left, and quiet the second time.
    assert run(ns, name="br1", addresses=[])["changed"] is True
    assert addresses(ns) == []
    assert run(ns, name="br1", addresses=[])["changed"] is False


def test_new_bridge_with_an_address(ns):
    result = run(ns, name="br1", addresses=["100.0.0.254/24"])
    assert result["changed"] is True and result["bridge"]["addresses"] == ["100.0.0.254/24"]
    assert addresses(ns) == ["100.0.0.254/24"] and bridge(ns)["up"] is True
    assert run(ns, name="br1", addresses=["100.0.0.254/24"])["changed"] is False


def test_refused_address_is_rolled_back(ns):
    """The kernel refuses an IPv6 address on a bridge whose IPv6 is disabled: the IPv4 address
    added before it in the same run is taken away again."""
    run(ns, name="br1", addresses=["100.0.0.254/24"])
    ns_exec(ns.name, "sysctl", "-q", "-w", "net.ipv6.conf.br1.disable_ipv6=1")
    before = state_dump(ns.name)
    result = run(ns, name="br1", addresses=["100.0.0.253/24", "2001:db8:100::fe/64"])
    assert result.get("failed") is True and result["changed"] is False, result
    assert "setting the addresses of br1" in result["msg"], result["msg"]
    assert "ROLLBACK INCOMPLETE" not in result["msg"]
    assert_unchanged(before, state_dump(ns.name))
    assert addresses(ns) == ["100.0.0.254/24"]


def link_mac(ns, name="br1"):
    return ip_json(ns.name, "link", "show", "dev", name)[0]["address"]


def add_port_with_mac(ns, name, mac):
    ns_exec(ns.name, "ip", "link", "add", name, "address", mac, "type", "veth", "peer", "name", name + "p")
    ns_exec(ns.name, "ip", "link", "set", name, "master", "br1")


def test_mac_pinned_check_apply_idempotent_and_kept_when_a_port_joins(ns):
    """A pinned MAC (written as an operator might: dashes, upper case) is set and stays when a port
    with a smaller MAC joins; the control bridge, left to the kernel, takes that port's MAC."""
    before = state_dump(ns.name)
    args = {"name": "br1", "mac": "02-00-64-00-00-FE"}
    check = run(ns, check=True, **args)
    assert check["changed"] is True and check["diff"]["after"]["mac"] == "02:00:64:00:00:fe", check
    assert_unchanged(before, state_dump(ns.name))

    applied = run(ns, **args)
    assert applied["changed"] is True and applied["bridge"]["mac"] == "02:00:64:00:00:fe", applied
    assert link_mac(ns) == "02:00:64:00:00:fe"
    assert applied["bridge"] == check["diff"]["after"]
    add_port_with_mac(ns, "tap1", "02:00:00:00:00:01")
    assert link_mac(ns) == "02:00:64:00:00:fe"
    assert run(ns, check=True, **args)["changed"] is False
    again = run(ns, **args)
    assert again["changed"] is False and again["diff"]["before"] == again["diff"]["after"], again

    # The control: a bridge whose MAC nobody set follows its smallest port.
    run(ns, name="br2")
    ns_exec(ns.name, "ip", "link", "add", "tap2", "address", "02:00:00:00:00:02", "type", "veth", "peer", "name", "tap2p")
    ns_exec(ns.name, "ip", "link", "set", "tap2", "master", "br2")
    assert link_mac(ns, "br2") == "02:00:00:00:00:02"
    # Left out, the MAC is neither managed nor reported.
    left_out = run(ns, name="br2")
    assert left_out["changed"] is False and "mac" not in left_out["bridge"], left_out
    # Given later, it is set on the existing bridge and sticks.
    pinned = run(ns, name="br2", mac="02:00:64:00:00:fd")
    assert pinned["changed"] is True and pinned["diff"]["before"]["mac"] == "02:00:00:00:00:02", pinned
    assert link_mac(ns, "br2") == "02:00:64:00:00:fd"
    ns_exec(ns.name, "ip", "link", "set", "tap2", "nomaster")
    assert link_mac(ns, "br2") == "02:00:64:00:00:fd"


def test_refused_change_puts_the_mac_back(ns):
    """A MAC change followed by an address the kernel refuses: the MAC is the old one again."""
    run(ns, name="br1", mac="02:00:64:00:00:fe", addresses=["100.0.0.254/24"])
    ns_exec(ns.name, "sysctl", "-q", "-w", "net.ipv6.conf.br1.disable_ipv6=1")
    before = state_dump(ns.name)
    result = run(ns, name="br1", mac="02:00:64:00:00:fc", addresses=["100.0.0.254/24", "2001:db8:100::fe/64"])
    assert result.get("failed") is True and result["changed"] is False, result
    assert "rolled back" in result["msg"] and "ROLLBACK INCOMPLETE" not in result["msg"], result["msg"]
    assert link_mac(ns) == "02:00:64:00:00:fe"
    assert_unchanged(before, state_dump(ns.name))


def test_existing_non_bridge_is_never_touched(underlay):
    before = state_dump(underlay.name)
    for state in ("present", "absent"):
        result = run(underlay, name="eth0", state=state)
        assert result.get("failed") is True and result["changed"] is False
        assert "name='eth0'" in result["msg"] and "veth, not a bridge" in result["msg"], result["msg"]
        assert_unchanged(before, state_dump(underlay.name))


def test_alternative_name_is_not_mistaken_for_the_bridge(ns):
    run(ns, name="br2")
    ns_exec(ns.name, "ip", "link", "property", "add", "dev", "br2", "altname", "br1")
    before = state_dump(ns.name)
    result = run(ns, name="br1", state="absent")
    assert result.get("failed") is True and "alternative name of br2" in result["msg"], result["msg"]
    assert_unchanged(before, state_dump(ns.name))


BAD_INPUTS = [
    ({"name": "br-0123456789abc"}, "name", "br-0123456789abc"),
    ({"name": "br/1"}, "name", "br/1"),
    ({"name": "br 1"}, "name", "br 1"),
    ({"name": ""}, "name", ""),
    ({"name": "   "}, "name", ""),
    ({"name": "br1", "mtu": 0}, "mtu", "0"),
    ({"name": "br1", "mtu": 67}, "mtu", "67"),
    ({"name": "br1", "mtu": 65536}, "mtu", "65536"),
    ({"name": "br1", "mtu": "big"}, "mtu", "big"),
    ({"name": "br1", "ageing_time": -1}, "ageing_time", "-1"),
    ({"name": "br1", "ageing_time": 1000001}, "ageing_time", "1000001"),
    ({"name": "br1", "netns": "ovxt-missing-ns"}, "netns", "ovxt-missing-ns"),
    ({"name": "br1", "netns": "a/b"}, "netns", "a/b"),
    ({"name": "br1", "netns": ""}, "netns", ""),
    ({"name": "br1", "state": "gone"}, "state", "gone"),
    ({"name": "br1", "addresses": ["100.0.0.300/24"]}, "addresses[0]", "100.0.0.300/24"),
    ({"name": "br1", "addresses": ["100.0.0.254"]}, "addresses[0]", "100.0.0.254"),
    ({"name": "br1", "addresses": ["fe80::1/64"]}, "addresses[0]", "fe80::1/64"),
    ({"name": "br1", "addresses": ["100.0.0.254/24", "100.0.0.254/25"]}, "addresses[1]", "100.0.0.254/25"),
    ({"name": "br1", "mtu": 1200, "addresses": ["2001:db8::1/64"]}, "mtu", "1200"),
    ({"name": "br1", "mac": "01:00:5e:00:00:01"}, "mac", "01:00:5e:00:00:01"),
    ({"name": "br1", "mac": "ff:ff:ff:ff:ff:ff"}, "mac", "ff:ff:ff:ff:ff:ff"),
    ({"name": "br1", "mac": "00:00:00:00:00:00"}, "mac", "00:00:00:00:00:00"),
    ({"name": "br1", "mac": "02:00:64:00:00"}, "mac", "02:00:64:00:00"),
]


@pytest.mark.parametrize("args,field,value", BAD_INPUTS, ids=["%s=%r" % (f, v) for _a, f, v in BAD_INPUTS])
def test_bad_input_fails_cleanly(ns, args, field, value):
    run(ns, name="br9")  # something to leave untouched
    before = state_dump(ns.name)
    result = run_module(MODULE, dict({"netns": ns.name}, **args))
    assert result.get("failed") is True, result
    assert result.get("changed", False) is False  # Ansible's own argument checks omit the key
    assert field in result["msg"] and value in result["msg"], result["msg"]
    assert "Traceback" not in result["_stderr"] and "exception" not in result, result
    assert_unchanged(before, state_dump(ns.name))


def test_netns_file_that_is_not_a_namespace_is_refused():
    with stale_netns_file() as stale:
        result = run_module(MODULE, {"netns": stale, "name": "br1"})
        assert result.get("failed") is True and result["changed"] is False, result
        assert "netns=%r: cannot be entered" % stale in result["msg"], result["msg"]
        assert "Traceback" not in result["_stderr"]
