"""Plain-function tests of the shared input validation (no kernel, no Ansible)."""

from __future__ import annotations

import ipaddress

import pytest

from ansible_collections.overlay.vxlan.plugins.module_utils import _validate as v

# ---------------------------------------------------------------------------------------------
# MAC addresses
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "02:aa:bb:cc:dd:ee",
    "02:AA:BB:CC:DD:EE",
    "02:Aa:bB:cc:DD:ee",
    "02-aa-bb-cc-dd-ee",
    "02AA.BBCC.DDEE",
    "02aabbccddee",
    "  02:aa:bb:cc:dd:ee\n",
])
def test_mac_forms_are_normalised_to_lower_case_colons(text):
    assert v.mac("mac", text) == "02:aa:bb:cc:dd:ee"


@pytest.mark.parametrize("text", [
    "02:aa:bb:cc:dd",            # five octets
    "02:aa:bb:cc:dd:ee:ff",      # seven
    "02:aa:bb:cc:dd:eg",         # not hex
    "2:a:b:c:d:e",               # single-digit octets
    "02aabbccdd",                # too short without separators
    "02:aa:bb:cc:dd:ee:",        # trailing separator
    "02aa.bbcc.dd",
    "0x02aabbccddee",
    "02 aa bb cc dd ee",
])
def test_malformed_mac_is_refused_with_field_and_value(text):
    with pytest.raises(v.InputError) as err:
        v.mac("entries[3].mac", text)
    assert err.value.field == "entries[3].mac"
    assert err.value.value == text
    assert err.value.msg.startswith("entries[3].mac=%r: " % text)
    assert "not a MAC address" in err.value.msg


@pytest.mark.parametrize("text", ["01:00:5e:00:00:01", "33:33:00:00:00:01", "ff:ff:ff:ff:ff:ff", "03:00:00:00:00:00", "FF-FF-FF-FF-FF-FF"])
def test_multicast_and_broadcast_mac_refused_where_unicast_needed(text):
    with pytest.raises(v.InputError, match=r"lladdr=.*multicast/broadcast MAC"):
        v.mac("lladdr", text, unicast=True)
    # Accepted when the caller allows group addresses.
    assert v.mac("lladdr", text, unicast=False) == text.lower().replace("-", ":")


@pytest.mark.parametrize("text", ["00:00:00:00:00:00", "00-00-00-00-00-00", "000000000000", "0000.0000.0000"])
def test_all_zero_mac_only_as_flood_entry(text):
    with pytest.raises(v.InputError, match="all-zero MAC is only valid as a flood-list entry"):
        v.mac("mac", text)
    assert v.mac("mac", text, allow_zero=True) == v.ZERO_MAC


@pytest.mark.parametrize("value, reason", [(None, "is required"), ("", "is empty"), ("   ", "is empty"), (12345, "not a MAC address")])
def test_mac_missing_empty_or_not_text(value, reason):
    with pytest.raises(v.InputError, match=reason):
        v.mac("mac", value)


# ---------------------------------------------------------------------------------------------
# IP addresses
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, normalised", [
    ("192.168.1.2", "192.168.1.2"),
    (" 192.168.1.2 ", "192.168.1.2"),
    ("FD00::0002", "fd00::2"),
    ("fd00:0:0:0:0:0:0:2", "fd00::2"),
    ("2001:DB8::1", "2001:db8::1"),
    # inet_ntop form, which is what netlink read-backs produce, so the second run is quiet.
    ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
])
def test_unicast_ip_normalises(text, normalised):
    assert v.unicast_ip("dst", text) == normalised


@pytest.mark.parametrize("text", [
    "1.2.3", "1.2.3.4.5", "256.1.1.1", "010.1.1.1", "1.2.3.4/24", "fd00::1::2", "fe80::1%eth0", "host.example", "1.2.3.-4", "gggg::1",
])
def test_bad_ip_is_refused(text):
    with pytest.raises(v.InputError) as err:
        v.unicast_ip("entries[0].dst", text)
    assert err.value.msg == "entries[0].dst=%r: is not an IPv4 or IPv6 address" % text


@pytest.mark.parametrize("text", ["239.1.1.1", "224.0.0.1", "ff02::1", "ff05::1:3", "0.0.0.0", "::", "255.255.255.255"])
def test_non_unicast_ip_is_refused(text):
    with pytest.raises(v.InputError, match=r"^dst='%s': must be a unicast address$" % text.replace(".", r"\.")):
        v.unicast_ip("dst", text)


@pytest.mark.parametrize("text, version, wrong", [("fd00::2", 4, 6), ("192.168.1.2", 6, 4)])
def test_ip_family_mismatch(text, version, wrong):
    with pytest.raises(v.InputError) as err:
        v.unicast_ip("remote", text, version=version)
    assert err.value.msg == "remote=%r: is IPv%d but IPv%d is used elsewhere in this task" % (text, wrong, version)
    with pytest.raises(v.InputError, match="used elsewhere"):
        v.multicast_ip("group", "ff05::1" if version == 4 else "239.1.1.1", version=version)
    with pytest.raises(v.InputError, match="used elsewhere"):
        v.ip_address("local", text, version=version)


@pytest.mark.parametrize("text, normalised", [("239.1.1.1", "239.1.1.1"), ("224.0.0.251", "224.0.0.251"), ("FF05::0001", "ff05::1")])
def test_multicast_group(text, normalised):
    assert v.multicast_ip("group", text) == normalised


@pytest.mark.parametrize("text", ["192.168.1.2", "10.0.0.1", "fd00::2", "240.0.0.1", "0.0.0.0"])
def test_unicast_group_is_refused(text):
    with pytest.raises(v.InputError) as err:
        v.multicast_ip("group", text)
    assert err.value.msg == "group=%r: is not a multicast address (224.0.0.0/4 or ff00::/8)" % text


def test_ip_address_returns_an_ipaddress_object():
    assert v.ip_address("local", "192.168.1.2") == ipaddress.IPv4Address("192.168.1.2")
    assert v.ip_address("local", "FD00::2").version == 6
    with pytest.raises(v.InputError, match="is not an IPv4 or IPv6 address"):
        v.ip_address("local", "fe80::1%eth0")


def test_ip_version():
    assert v.ip_version("192.168.1.2") == 4
    assert v.ip_version("fd00::2") == 6


@pytest.mark.parametrize("value, reason", [(None, "is required"), ("", "is empty"), ("\t", "is empty")])
def test_ip_empty_or_missing(value, reason):
    with pytest.raises(v.InputError, match=reason):
        v.unicast_ip("local", value)


@pytest.mark.parametrize("text, normalised", [("100.0.0.2/24", "100.0.0.2/24"), ("FD01::2/64", "fd01::2/64")])
def test_interface_cidr(text, normalised):
    assert v.interface_cidr("addresses[0]", text) == normalised


@pytest.mark.parametrize("text, reason", [
    ("100.0.0.2", "needs a prefix length"),
    ("100.0.0.2/33", "not an address with prefix"),
    ("fe80::1%eth0/64", "zone index"),
    ("239.1.1.1/24", "must be a unicast address"),
    ("", "is empty"),
])
def test_interface_cidr_refusals(text, reason):
    with pytest.raises(v.InputError, match=reason):
        v.interface_cidr("addresses[0]", text)


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vxlan0", "br1", "a", "x" * 15, "eth0.100", "tap-1_a"])
def test_ifname_accepted(name):
    assert v.ifname("name", name) == name


@pytest.mark.parametrize("name, reason", [
    ("x" * 16, "is 16 characters; interface names are at most 15"),
    ("vxlan-overlay-100", "is 17 characters"),
    ("br/1", "cannot contain '/'"),
    ("br 1", "cannot contain"),
    ("br\t1", "cannot contain"),
    ("br:1", "cannot contain"),
    (".", "not a valid interface name"),
    ("..", "not a valid interface name"),
    ("", "is empty"),
    (None, "is required"),
    # The safe-name rule: names reach paths and shell commands.
    ("-br1", "starts with '-'"),
    (".br1", "starts with '.'"),
    ("_br1", "starts with '_'"),
    ("br1;reboot", "contains ';'"),
    ("br$(id)", "contains '$'"),
    ("br`id`", "contains '`'"),
    ("br'1", "contains \"'\""),
    ("br\"1", "contains '\"'"),
    ("br*", "contains '*'"),
    ("br1..x", "contains '..'"),
    ("brü", "contains 'ü'"),
])
def test_ifname_refused(name, reason):
    with pytest.raises(v.InputError) as err:
        v.ifname("master", name)
    assert err.value.field == "master"
    assert err.value.msg.startswith("master=%r: " % name)
    assert reason in err.value.msg


@pytest.mark.parametrize("name, expected", [("lab-h1", "lab-h1"), ("/run/overlay-lab/ovx/h1", "/run/overlay-lab/ovx/h1")])
def test_netns_name_accepted(name, expected):
    assert v.netns_name("netns", name) == expected


@pytest.mark.parametrize("name", ["a/b", "a b", ".", "..", ""])
def test_netns_name_refused(name):
    with pytest.raises(v.InputError, match=r"^netns="):
        v.netns_name("netns", name)


@pytest.mark.parametrize("name, reason", [
    ("-n", "starts with '-'"),
    (".ns1", "starts with '.'"),
    ("ns1;reboot", "contains ';'"),
    ("ns$(id)", "contains '$'"),
    ("ns1 x", "contains ' '"),
    ("ns1\nx", "contains '\\n'"),
    ("ns1..x", "contains '..'"),
    ("../ns1", "starts with '.'"),
    ("x" * 65, "is 65 characters"),
])
def test_netns_name_refuses_what_is_unsafe_in_a_path_or_a_shell(name, reason):
    for check in (v.netns_name, v.namespace_name):
        with pytest.raises(v.InputError) as err:
            check("namespace", name)
        assert err.value.msg.startswith("namespace=%r: is not a valid namespace name: %s (" % (name, reason)), err.value.msg
        assert "a name may have only letters, digits, '_', '.' and '-', a letter or digit first, no '..'" in err.value.msg


@pytest.mark.parametrize("path, reason", [
    ("/run/netns/../ns1", "its part '..' starts with '.'"),
    ("/run/netns/ns 1", "its part 'ns 1' contains ' '"),
    ("/run/netns/$(id)", "its part '$(id)' starts with '$'"),
    ("/run//netns/ns1", "it has an empty part"),
    ("/run/netns/", "it has an empty part"),
])
def test_netns_path_refused(path, reason):
    with pytest.raises(v.InputError) as err:
        v.netns_name("netns", path)
    assert err.value.msg.startswith("netns=%r: is not a valid namespace path: %s (" % (path, reason)), err.value.msg


def test_a_vm_namespace_is_a_name_not_a_path():
    assert v.namespace_name("namespace", "ns-1.a_b") == "ns-1.a_b"
    assert v.namespace_name("namespace", "x" * 64) == "x" * 64
    with pytest.raises(v.InputError, match=r"^namespace='/run/netns/ns1': is not a valid namespace name: a path"):
        v.namespace_name("namespace", "/run/netns/ns1")


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [(1, 1), (100, 100), (16777215, 16777215), ("4096", 4096)])
def test_vni_range_accepted(value, expected):
    assert v.vni("vni", value) == expected


@pytest.mark.parametrize("value, reason", [
    (0, "must be between 1 and 16777215"),
    (16777216, "must be between 1 and 16777215"),
    (-1, "must be between 1 and 16777215"),
    ("abc", "must be an integer"),
    (True, "must be an integer"),
    (None, "must be an integer"),
    (1.5e9, "must be between 1 and 16777215"),
])
def test_vni_refused(value, reason):
    with pytest.raises(v.InputError) as err:
        v.vni("entries[0].vni", value)
    assert err.value.msg == "entries[0].vni=%r: %s" % (value, reason)


@pytest.mark.parametrize("value", [1, 4789, 8472, 65535])
def test_port_accepted(value):
    assert v.port("dstport", value) == value


@pytest.mark.parametrize("value", [0, 65536, -4789, 100000])
def test_port_refused(value):
    with pytest.raises(v.InputError) as err:
        v.port("dstport", value)
    assert err.value.msg == "dstport=%r: must be between 1 and 65535" % value


def test_int_range_bounds():
    assert v.int_range("ttl", 0, 0, 255) == 0
    assert v.int_range("ttl", 255, 0, 255) == 255
    with pytest.raises(v.InputError, match=r"^ttl=256: must be between 0 and 255$"):
        v.int_range("ttl", 256, 0, 255)


# ---------------------------------------------------------------------------------------------
# Duplicates and the error type
# ---------------------------------------------------------------------------------------------


def test_no_duplicates_names_the_second_occurrence():
    v.no_duplicates("entries", [("a", 1), ("b", 1), ("a", 2)])
    with pytest.raises(v.InputError) as err:
        v.no_duplicates("entries", ["100.0.0.3", "100.0.0.4", "100.0.0.3"])
    assert err.value.field == "entries[2]"
    assert err.value.msg == "entries[2]='100.0.0.3': is listed twice"


def test_input_error_is_an_overlay_error_with_field_and_value():
    err = v.InputError("vni", 0, "must be between 1 and 16777215")
    assert isinstance(err, v.OverlayError)
    assert (err.field, err.value, str(err)) == ("vni", 0, "vni=0: must be between 1 and 16777215")


def test_vxlan_overhead():
    assert v.VXLAN_OVERHEAD == {4: 50, 6: 70}
    assert v.IFNAMSIZ == 15
