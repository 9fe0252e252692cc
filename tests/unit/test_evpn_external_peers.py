"""vxlan_evpn_peers_check / vxlan_evpn_peers: evpn_peers (external BGP neighbours) checked and
normalised; every bad value named with its host, variable and value, a password never shown."""

from __future__ import annotations

import pytest

from ansible_collections.overlay.vxlan.plugins.filter.evpn_peers import normalise_peers, peers_problems

TOR = {"address": "192.168.1.20", "remote_as": "internal", "description": "gobgpd ToR"}


def test_good_peers_have_no_problem_and_normalise():
    peers = [TOR, {"address": "2001:DB8::1", "remote_as": 65100, "password": "s3cret!", "bfd": True, "ttl_security_hops": 1},
             {"interface": "eth1", "remote_as": "external", "bfd": "no"}, {"address": "192.168.1.21", "remote_as": "65000", "bfd": "yes"}]
    assert peers_problems(peers, "h1", 65000) == []
    assert normalise_peers(peers, 65000) == [
        {"neighbor": "192.168.1.20", "interface": False, "remote_as": "internal", "ebgp": False, "password": "",
         "bfd": False, "ttl_security_hops": 0, "description": "gobgpd ToR"},
        {"neighbor": "2001:db8::1", "interface": False, "remote_as": 65100, "ebgp": True, "password": "s3cret!",
         "bfd": True, "ttl_security_hops": 1, "description": ""},
        {"neighbor": "eth1", "interface": True, "remote_as": "external", "ebgp": True, "password": "",
         "bfd": False, "ttl_security_hops": 0, "description": ""},
        {"neighbor": "192.168.1.21", "interface": False, "remote_as": 65000, "ebgp": False, "password": "",
         "bfd": True, "ttl_security_hops": 0, "description": ""},
    ]
    # Per-host ASN (RFC 7938): the same number is eBGP from another AS.
    assert normalise_peers([{"address": "192.168.1.21", "remote_as": 65000}], "65001")[0]["ebgp"] is True
    assert peers_problems([], "h1") == [] and peers_problems(None, "h1") == []


@pytest.mark.parametrize(("peer", "message"), [
    ({"address": "192.168.1.20", "remote_as": "6500O"}, "host h1: evpn_peers[0].remote_as='6500O': must be an AS number 1..4294967295"),
    ({"address": "192.168.1.20", "remote_as": 0}, "evpn_peers[0].remote_as=0: must be"),
    ({"address": "192.168.1.20", "remote_as": 4294967296}, "evpn_peers[0].remote_as=4294967296: must be"),
    ({"address": "192.168.1.20", "remote_as": True}, "evpn_peers[0].remote_as=True: must be"),
    ({"address": "192.168.1.20", "remote_as": "Internal"}, "evpn_peers[0].remote_as='Internal': must be"),
    ({"address": "192.168.1.20"}, "evpn_peers[0]: has no remote_as"),
    ({"address": "192.168.1.300", "remote_as": 1}, "evpn_peers[0].address='192.168.1.300': must be a unicast"),
    ({"address": "239.1.1.1", "remote_as": 1}, "evpn_peers[0].address='239.1.1.1': must be a unicast"),
    ({"address": "fe80::1", "remote_as": 1}, "evpn_peers[0].address='fe80::1': must be a unicast"),
    ({"address": "127.0.0.1", "remote_as": 1}, "evpn_peers[0].address='127.0.0.1'"),
    ({"address": "0.0.0.0", "remote_as": 1}, "evpn_peers[0].address='0.0.0.0'"),
    ({"interface": "eth0 1", "remote_as": 1}, "evpn_peers[0].interface='eth0 1': must be an interface name"),
    ({"interface": "a-very-long-name0", "remote_as": 1}, "evpn_peers[0].interface='a-very-long-name0'"),
    ({"address": "192.168.1.20", "interface": "eth0", "remote_as": 1}, "give one of them"),
    ({"remote_as": 1}, "evpn_peers[0]: has neither address nor interface"),
    ({"address": "", "remote_as": 1}, "evpn_peers[0]: has neither address nor interface"),
    ({"address": "192.168.1.20", "remote_as": 1, "bfd": "maybe"}, "evpn_peers[0].bfd='maybe': must be a boolean"),
    ({"address": "192.168.1.20", "remote_as": 1, "ttl_security_hops": 255}, "evpn_peers[0].ttl_security_hops=255: must be 0..254"),
    ({"address": "192.168.1.20", "remote_as": 1, "ttl_security_hops": -1}, "ttl_security_hops=-1"),
    ({"address": "192.168.1.20", "remote_as": 1, "description": " x"}, "evpn_peers[0].description=' x': must be"),
    ({"address": "192.168.1.20", "remote_as": 1, "description": "a\nb"}, "evpn_peers[0].description='a\nb'"),
    ({"address": "192.168.1.20", "remote_as": 1, "remote-as": 2}, "evpn_peers[0]: unknown key(s) remote-as"),
    ({"address": "192.168.1.2", "remote_as": 1}, "evpn_peers[0].address='192.168.1.2': is this host's peering address"),
    ("192.168.1.20", "host h1: evpn_peers[0]='192.168.1.20': must be a dict"),
])
def test_each_bad_value_is_named(peer, message):
    problems = peers_problems([peer], "h1", 65000, {"192.168.1.2": "this host's peering address", "2001:DB8::2": "x"})
    assert len(problems) == 1 and message in problems[0], problems


def test_a_password_is_never_shown():
    for password in ("has blank", "quote'd", "x" * 81, 'back\\slash'):
        problems = peers_problems([{"address": "192.168.1.20", "remote_as": 1, "password": password}], "h1")
        assert len(problems) == 1 and "evpn_peers[0].password (%d characters)" % len(password) in problems[0]
        assert password not in problems[0]
    assert "not a string" in peers_problems([{"address": "192.168.1.20", "remote_as": 1, "password": 12345}], "h1")[0]


def test_duplicates_and_every_problem_at_once():
    peers = [{"address": "2001:db8::1", "remote_as": 1}, {"address": "2001:DB8:0::1", "remote_as": 1},
             {"interface": "eth1", "remote_as": "external"}, {"interface": "eth1", "remote_as": "x"}]
    problems = peers_problems(peers, "h2")
    assert problems == [
        "host h2: evpn_peers[1]: address='2001:DB8:0::1': the same neighbour as evpn_peers[0]",
        "host h2: evpn_peers[3]: interface='eth1': the same neighbour as evpn_peers[2]",
        "host h2: evpn_peers[3].remote_as='x': must be an AS number 1..4294967295, internal or external",
    ]
    assert peers_problems({"address": "192.168.1.20"}, "h1")[0].startswith("host h1: evpn_peers={'address'")
    assert peers_problems([], "h1", "650x0") == ["host h1: evpn_asn='650x0': must be an AS number 1..4294967295"]
