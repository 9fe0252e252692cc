"""overlay.vxlan.bridge_fdb against a real kernel, inside throwaway namespaces.

Every assertion about the result is paired with what `bridge -j fdb show dev vxlan0` reads back.
"""

from __future__ import annotations

import time

import pytest
from _assertions import MISSING_NETNS, assert_check_assumes_created, assert_missing_pyroute2_reported, assert_refused, stable_dump
from helpers import Namespace, bridge_json, ns_exec, run_module

from ansible_collections.overlay.vxlan.plugins.module_utils import _fastnl as nl
from ansible_collections.overlay.vxlan.plugins.module_utils import _tables as tables
from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import KernelError

Z = "00:00:00:00:00:00"
MAC_A = "36:ae:ed:9d:22:aa"
MAC_B = "4e:11:78:36:da:e7"

ENTRIES = [
    {"mac": Z, "dst": "192.168.1.3"},
    {"mac": "00-00-00-00-00-00", "dst": "192.168.1.4"},
    {"mac": "36:AE:ED:9D:22:AA", "dst": "192.168.1.3"},
    {"mac": "4e11.7836.dae7", "dst": "192.168.1.4", "vni": 200, "port": 8472, "via": "eth0"},
]
# (mac, dst, vni, port, via, state) as bridge(8) prints them: vni/port only when they differ
# from the device's.
KERNEL = sorted([
    (Z, "192.168.1.3", None, None, None, "permanent"),
    (Z, "192.168.1.4", None, None, None, "permanent"),
    (MAC_A, "192.168.1.3", None, None, None, "permanent"),
    (MAC_B, "192.168.1.4", 200, 8472, "eth0", "permanent"),
])
DIFF_AFTER = (
    "00:00:00:00:00:00 dst 192.168.1.3\n"
    "00:00:00:00:00:00 dst 192.168.1.4\n"
    "36:ae:ed:9d:22:aa dst 192.168.1.3\n"
    "4e:11:78:36:da:e7 dst 192.168.1.4 vni 200 port 8472 via eth0\n"
)


def fdb(ns: str, dev: str = "vxlan0") -> list[tuple]:
    """The device's own (self) entries, permanent and learned."""
    return sorted(
        (e["mac"], e.get("dst"), e.get("vni"), e.get("port"), e.get("viaIf"), e.get("state", ""))
        for e in bridge_json(ns, "fdb", "show", "dev", dev)
        if "self" in e.get("flags", [])
    )


def args(ns, entries, state="present", dev="vxlan0", **extra):
    return dict({"netns": ns.name, "dev": dev, "entries": entries, "state": state}, **extra)


def mac(i: int) -> str:
    return "02:01:%02x:%02x:%02x:%02x" % ((i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255)


# ---------------------------------------------------------------------------------------------
# check -> apply -> idempotent check -> idempotent apply
# ---------------------------------------------------------------------------------------------


def test_four_steps_flood_list_and_unicast_entries(vxlan):
    ns = vxlan.name
    before = stable_dump(ns)

    checked = run_module("bridge_fdb", args(vxlan, ENTRIES), check=True)
    assert checked["changed"] is True and not checked.get("failed")
    assert checked["diff"]["before"] == ""
    assert checked["diff"]["after"] == DIFF_AFTER
    assert sorted(checked["added"]) == sorted(DIFF_AFTER.splitlines())
    assert checked["removed"] == []
    assert fdb(ns) == [] and stable_dump(ns) == before  # check mode wrote nothing

    # The whole table is returned only on request (return_entries) since the compact form came.
    applied = run_module("bridge_fdb", args(vxlan, ENTRIES, return_entries=True))
    assert applied["changed"] is True
    assert applied["diff"] == checked["diff"]
    assert fdb(ns) == KERNEL
    assert {(e["mac"], e["dst"], e["vni"], e["port"], e["via"]) for e in applied["entries"]} == {
        (Z, "192.168.1.3", 100, 4789, None), (Z, "192.168.1.4", 100, 4789, None),
        (MAC_A, "192.168.1.3", 100, 4789, None), (MAC_B, "192.168.1.4", 200, 8472, "eth0"),
    }

    again = run_module("bridge_fdb", args(vxlan, ENTRIES), check=True)
    assert again["changed"] is False
    assert again["diff"]["before"] == again["diff"]["after"] == DIFF_AFTER
    assert again["added"] == again["removed"] == []

    final = run_module("bridge_fdb", args(vxlan, ENTRIES))
    assert final["changed"] is False
    assert fdb(ns) == KERNEL


def test_device_defaults_spelled_out_are_the_same_entry(vxlan):
    run_module("bridge_fdb", args(vxlan, [{"mac": MAC_A, "dst": "192.168.1.3"}]))
    result = run_module("bridge_fdb", args(vxlan, [{"mac": MAC_A.upper(), "dst": "192.168.1.3", "vni": 100, "port": 4789}]))
    assert result["changed"] is False
    assert fdb(vxlan.name) == [(MAC_A, "192.168.1.3", None, None, None, "permanent")]


def test_ipv6_underlay(underlay):
    ns = underlay.name
    ns_exec(ns, "ip", "addr", "add", "fd00::2/64", "dev", "eth0", "nodad")
    ns_exec(ns, "ip", "link", "add", "vxlan6", "type", "vxlan", "id", "100", "dstport", "4789", "local", "fd00::2", "dev", "eth0")
    entries = [{"mac": Z, "dst": "FD00::3"}, {"mac": MAC_A, "dst": "fd00:0::4"}]
    assert run_module("bridge_fdb", args(underlay, entries, dev="vxlan6"))["changed"] is True
    assert fdb(ns, "vxlan6") == sorted([(Z, "fd00::3", None, None, None, "permanent"), (MAC_A, "fd00::4", None, None, None, "permanent")])
    assert run_module("bridge_fdb", args(underlay, entries, dev="vxlan6"))["changed"] is False
    refused = assert_refused(ns, "bridge_fdb", args(underlay, [{"mac": Z, "dst": "192.168.1.3"}], dev="vxlan6"),
                             "entries[0].dst='192.168.1.3'", "IPv4", "fd00::2")
    assert "IPv6" in refused["msg"]


# ---------------------------------------------------------------------------------------------
# change, absent, exact
# ---------------------------------------------------------------------------------------------


def test_moved_mac_is_repointed_in_place(vxlan):
    ns = vxlan.name
    run_module("bridge_fdb", args(vxlan, [{"mac": MAC_A, "dst": "192.168.1.3"}, {"mac": Z, "dst": "192.168.1.3"}]))
    checked = run_module("bridge_fdb", args(vxlan, [{"mac": MAC_A, "dst": "192.168.1.4"}]), check=True)
    assert checked["changed"] is True
    assert (checked["added"], checked["removed"]) == (["36:ae:ed:9d:22:aa dst 192.168.1.4"], ["36:ae:ed:9d:22:aa dst 192.168.1.3"])
    assert "36:ae:ed:9d:22:aa dst 192.168.1.3" in checked["diff"]["before"]
    assert "36:ae:ed:9d:22:aa dst 192.168.1.4" in checked["diff"]["after"]
    assert (MAC_A, "192.168.1.3", None, None, None, "permanent") in fdb(ns)

    moved = run_module("bridge_fdb", args(vxlan, [{"mac": MAC_A, "dst": "192.168.1.4"}]))
    assert moved["changed"] is True
    # One VTEP per unicast MAC; the flood entry (not listed, state present) is untouched.
    assert fdb(ns) == sorted([(MAC_A, "192.168.1.4", None, None, None, "permanent"), (Z, "192.168.1.3", None, None, None, "permanent")])
    assert run_module("bridge_fdb", args(vxlan, [{"mac": MAC_A, "dst": "192.168.1.4"}]))["changed"] is False


def test_absent_removes_listed_entries_and_gone_is_ok(vxlan):
    ns = vxlan.name
    run_module("bridge_fdb", args(vxlan, ENTRIES))
    gone = [{"mac": Z, "dst": "192.168.1.4"}, {"mac": "4E:11:78:36:DA:E7", "dst": "192.168.1.4", "vni": 200, "port": 8472, "via": "eth0"}]

    checked = run_module("bridge_fdb", args(vxlan, gone, "absent"), check=True)
    assert checked["changed"] is True and fdb(ns) == KERNEL
    assert sorted(checked["removed"]) == ["00:00:00:00:00:00 dst 192.168.1.4", "4e:11:78:36:da:e7 dst 192.168.1.4 vni 200 port 8472 via eth0"]

    removed = run_module("bridge_fdb", args(vxlan, gone, "absent"))
    assert removed["changed"] is True
    assert fdb(ns) == sorted([(Z, "192.168.1.3", None, None, None, "permanent"), (MAC_A, "192.168.1.3", None, None, None, "permanent")])

    # Deleting what is already gone: ok, nothing changed, nothing touched.
    before = stable_dump(ns)
    for check in (True, False):
        again = run_module("bridge_fdb", args(vxlan, gone, "absent"), check=check)
        assert again["changed"] is False and not again.get("failed")
    assert stable_dump(ns) == before


def test_exact_on_an_empty_device_and_with_nothing_listed(vxlan):
    ns = vxlan.name
    assert run_module("bridge_fdb", args(vxlan, [], "exact"))["changed"] is False
    run_module("bridge_fdb", args(vxlan, ENTRIES))
    result = run_module("bridge_fdb", args(vxlan, [], "exact"))
    assert result["changed"] is True and len(result["removed"]) == 4
    assert fdb(ns) == []


@pytest.fixture
def learning_pair(ns):
    """`ns` with vxlan0 in multicast mode (group 239.1.1.1 dev u0, learning on) and a peer
    namespace whose VTEP (192.168.1.3) sends it traffic, so vxlan0 has a kernel-learned entry."""
    peer = Namespace()
    try:
        with ns.ipr() as ipr:
            ipr.link("add", ifname="u0", kind="veth", peer="u1")
            u0 = ipr.link_lookup(ifname="u0")[0]
            ipr.link("set", index=ipr.link_lookup(ifname="u1")[0], net_ns_fd=peer.name)
            ipr.addr("add", index=u0, address="192.168.1.2", prefixlen=24)
            ipr.link("set", index=u0, state="up")
            ipr.link("add", ifname="vxlan0", kind="vxlan", vxlan_id=100, vxlan_port=4789, vxlan_group="239.1.1.1",
                     vxlan_local="192.168.1.2", vxlan_link=u0, vxlan_learning=1)
            ipr.link("set", index=ipr.link_lookup(ifname="vxlan0")[0], state="up")
        with peer.ipr() as ipr:
            u1 = ipr.link_lookup(ifname="u1")[0]
            ipr.addr("add", index=u1, address="192.168.1.3", prefixlen=24)
            ipr.link("set", index=u1, state="up")
            ipr.link("add", ifname="vxlanp", kind="vxlan", vxlan_id=100, vxlan_port=4789, vxlan_group="192.168.1.2",
                     vxlan_local="192.168.1.3", vxlan_link=u1)
            vxp = ipr.link_lookup(ifname="vxlanp")[0]
            ipr.addr("add", index=vxp, address="10.9.0.3", prefixlen=24)
            ipr.link("set", index=vxp, state="up")
            peer_mac = ipr.link("get", index=vxp)[0].get_attr("IFLA_ADDRESS")
        for _attempt in range(20):
            ns_exec(peer.name, "ping", "-c", "1", "-W", "0.2", "10.9.0.2", check=False)  # its ARP request is what vxlan0 learns from
            learned = [e for e in fdb(ns.name) if e[0] == peer_mac and e[5] != "permanent"]
            if learned:
                break
            time.sleep(0.2)
        assert learned == [(peer_mac, "192.168.1.3", None, None, None, "")], fdb(ns.name)
        yield ns, peer_mac
    finally:
        peer.remove()


def test_exact_never_touches_learned_entries_nor_the_group_default(learning_pair):
    space, peer_mac = learning_pair
    ns = space.name
    default = (Z, "239.1.1.1", None, None, "u0", "permanent")
    learned = (peer_mac, "192.168.1.3", None, None, None, "")
    assert fdb(ns) == sorted([default, learned])

    ours = [{"mac": MAC_A, "dst": "192.168.1.4"}, {"mac": MAC_B, "dst": "192.168.1.5"}, {"mac": Z, "dst": "192.168.1.6"}]
    added = run_module("bridge_fdb", args(space, ours))
    assert added["changed"] is True and added["learned"] == 1

    keep = [{"mac": MAC_B, "dst": "192.168.1.5"}]
    checked = run_module("bridge_fdb", args(space, keep, "exact"), check=True)
    assert checked["changed"] is True
    assert sorted(checked["removed"]) == ["00:00:00:00:00:00 dst 192.168.1.6", "36:ae:ed:9d:22:aa dst 192.168.1.4"]
    # The device's own default entry is listed in the diff but never removed.
    assert "00:00:00:00:00:00 dst 239.1.1.1 via u0" in checked["diff"]["before"]
    assert "00:00:00:00:00:00 dst 239.1.1.1 via u0" in checked["diff"]["after"]

    exact = run_module("bridge_fdb", args(space, keep, "exact"))
    assert exact["changed"] is True
    assert fdb(ns) == sorted([default, learned, (MAC_B, "192.168.1.5", None, None, None, "permanent")])
    assert run_module("bridge_fdb", args(space, keep, "exact"))["changed"] is False

    # Even with nothing listed, the learned entry and the group's default entry survive.
    assert run_module("bridge_fdb", args(space, [], "exact"))["changed"] is True
    assert fdb(ns) == sorted([default, learned])


def test_exact_only_touches_its_own_device(vxlan):
    ns = vxlan.name
    ns_exec(ns, "ip", "link", "add", "vxlan1", "type", "vxlan", "id", "101", "dstport", "4789", "local", "192.168.1.2", "dev", "eth0")
    other = [{"mac": MAC_A, "dst": "192.168.1.7"}, {"mac": Z, "dst": "192.168.1.7"}]
    run_module("bridge_fdb", args(vxlan, other, dev="vxlan1"))
    run_module("bridge_fdb", args(vxlan, ENTRIES))
    vxlan1_before = fdb(ns, "vxlan1")
    assert run_module("bridge_fdb", args(vxlan, [], "exact"))["changed"] is True
    assert fdb(ns) == []
    assert fdb(ns, "vxlan1") == vxlan1_before and len(vxlan1_before) == 2


def test_large_table_across_pipelining_windows(vxlan):
    """More entries than one sendmsg() window, so several windows and their barriers are exercised."""
    ns = vxlan.name
    count = 2 * nl.WINDOW + 100
    entries = [{"mac": mac(i), "dst": "10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255)} for i in range(1, count + 1)]
    assert run_module("bridge_fdb", args(vxlan, entries, "exact"), diff=False)["changed"] is True
    assert len(fdb(ns)) == count
    again = run_module("bridge_fdb", args(vxlan, entries, "exact"), diff=False)
    assert again["changed"] is False and again["counts"] == {"entries": count, "added": 0, "removed": 0}
    half = entries[: count // 2]
    assert len(run_module("bridge_fdb", args(vxlan, half, "exact"), diff=False)["removed"]) == count - count // 2
    assert len(fdb(ns)) == count // 2


# ---------------------------------------------------------------------------------------------
# Bad input: refused before the kernel is touched
# ---------------------------------------------------------------------------------------------

GOOD = {"mac": MAC_A, "dst": "192.168.1.3"}

BAD_INPUTS = [
    # (id, parameters over the good ones, fragments the message must contain)
    ("mac-malformed", {"entries": [GOOD, {"mac": "02:aa:bb:cc:dd", "dst": "192.168.1.3"}]}, ["entries[1].mac='02:aa:bb:cc:dd'", "not a MAC"]),
    ("mac-not-hex", {"entries": [GOOD, {"mac": "02:aa:bb:cc:dd:zz", "dst": "192.168.1.3"}]}, ["entries[1].mac='02:aa:bb:cc:dd:zz'"]),
    ("mac-multicast", {"entries": [GOOD, {"mac": "01:00:5E:00:00:01", "dst": "192.168.1.3"}]}, ["entries[1].mac='01:00:5E:00:00:01'", "multicast"]),
    ("mac-broadcast", {"entries": [GOOD, {"mac": "ff:ff:ff:ff:ff:ff", "dst": "192.168.1.3"}]}, ["entries[1].mac='ff:ff:ff:ff:ff:ff'"]),
    ("mac-empty", {"entries": [GOOD, {"mac": "", "dst": "192.168.1.3"}]}, ["entries[1].mac=''", "empty"]),
    ("mac-missing", {"entries": [GOOD, {"dst": "192.168.1.3"}]}, ["mac", "entries"]),
    ("dst-malformed", {"entries": [GOOD, {"mac": MAC_B, "dst": "192.168.1"}]}, ["entries[1].dst='192.168.1'", "not an IPv4 or IPv6"]),
    ("dst-empty", {"entries": [GOOD, {"mac": MAC_B, "dst": ""}]}, ["entries[1].dst=''", "empty"]),
    ("dst-multicast", {"entries": [GOOD, {"mac": MAC_B, "dst": "239.1.1.1"}]}, ["entries[1].dst='239.1.1.1'", "unicast"]),
    ("dst-unspecified", {"entries": [GOOD, {"mac": MAC_B, "dst": "0.0.0.0"}]}, ["entries[1].dst='0.0.0.0'", "unicast"]),
    ("dst-zone-index", {"entries": [GOOD, {"mac": MAC_B, "dst": "fe80::1%eth0"}]}, ["entries[1].dst='fe80::1%eth0'"]),
    ("dst-mixed-families", {"entries": [GOOD, {"mac": MAC_B, "dst": "fd00::3"}]}, ["entries[1].dst='fd00::3'", "IPv6 but IPv4"]),
    ("dst-family-vs-underlay", {"entries": [{"mac": MAC_B, "dst": "fd00::3"}]}, ["entries[0].dst='fd00::3'", "underlay (192.168.1.2)"]),
    ("vni-0", {"entries": [GOOD, {"mac": MAC_B, "dst": "192.168.1.3", "vni": 0}]}, ["entries[1].vni=0", "between 1 and 16777215"]),
    ("vni-too-big", {"entries": [GOOD, {"mac": MAC_B, "dst": "192.168.1.3", "vni": 16777216}]}, ["entries[1].vni=16777216"]),
    ("vni-not-int", {"entries": [GOOD, {"mac": MAC_B, "dst": "192.168.1.3", "vni": "ten"}]}, ["vni", "ten"]),
    ("port-0", {"entries": [GOOD, {"mac": MAC_B, "dst": "192.168.1.3", "port": 0}]}, ["entries[1].port=0", "between 1 and 65535"]),
    ("port-too-big", {"entries": [GOOD, {"mac": MAC_B, "dst": "192.168.1.3", "port": 65536}]}, ["entries[1].port=65536"]),
    ("via-missing", {"entries": [GOOD, {"mac": MAC_B, "dst": "192.168.1.3", "via": "eth9"}]}, ["entries[1].via='eth9'", "no such interface"]),
    ("via-slash", {"entries": [GOOD, {"mac": MAC_B, "dst": "192.168.1.3", "via": "eth/0"}]}, ["entries[1].via='eth/0'", "'/'"]),
    ("via-too-long", {"entries": [GOOD, {"mac": MAC_B, "dst": "192.168.1.3", "via": "underlay-device0"}]},
     ["entries[1].via='underlay-device0'", "16 characters"]),
    ("via-empty", {"entries": [GOOD, {"mac": MAC_B, "dst": "192.168.1.3", "via": ""}]}, ["entries[1].via=''", "empty"]),
    ("duplicate", {"entries": [GOOD, {"mac": MAC_B, "dst": "192.168.1.4"}, {"mac": "36-AE-ED-9D-22-AA", "dst": "192.168.1.3"}]},
     ["entries[2]", "36:ae:ed:9d:22:aa", "listed twice"]),
    ("duplicate-flood", {"entries": [{"mac": Z, "dst": "192.168.1.3"}, {"mac": "000000000000", "dst": "192.168.1.3", "vni": 100}]},
     ["entries[1]", "listed twice"]),
    ("unicast-mac-two-vteps", {"entries": [GOOD, {"mac": MAC_A, "dst": "192.168.1.4"}]}, ["entries[1].mac='36:ae:ed:9d:22:aa'", "entries[0]"]),
    ("dev-missing", {"dev": "vxlan9"}, ["dev='vxlan9'", "no such interface"]),
    ("dev-not-vxlan", {"dev": "br1"}, ["dev='br1'", "bridge, not a vxlan"]),
    ("dev-too-long", {"dev": "vxlan-overlay-100"}, ["dev='vxlan-overlay-100'", "17 characters"]),
    ("dev-slash", {"dev": "vx/lan0"}, ["dev='vx/lan0'", "'/'"]),
    ("dev-space", {"dev": "vxlan 0"}, ["dev='vxlan 0'", "' '"]),
    ("dev-empty", {"dev": ""}, ["dev=''", "empty"]),
    ("netns-missing", {"netns": MISSING_NETNS}, ["netns='%s'" % MISSING_NETNS, "does not exist"]),
    ("netns-slash", {"netns": "a/b"}, ["netns='a/b'"]),
    ("state-unknown", {"state": "exactly"}, ["state", "exactly"]),
]


@pytest.mark.parametrize("override, fragments", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_refused_and_changes_nothing(vxlan, override, fragments):
    run_module("bridge_fdb", args(vxlan, [{"mac": Z, "dst": "192.168.1.9"}, {"mac": MAC_B, "dst": "192.168.1.9"}]))
    params = dict(args(vxlan, [GOOD], "exact"), **override)
    assert_refused(vxlan.name, "bridge_fdb", params, *fragments)
    if override.get("dev") == "vxlan9":  # the role creates the device first: its whole table is new
        result = assert_check_assumes_created(vxlan.name, "bridge_fdb", params, "dev", "vxlan9")
        assert result["added"] == ["%s dst 192.168.1.3" % MAC_A.lower()] and result["removed"] == [], result
        return
    assert_refused(vxlan.name, "bridge_fdb", params, *fragments, check=True)


# ---------------------------------------------------------------------------------------------
# A kernel refusal half-way through the batch is undone
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def limited(underlay):
    """vxlan0 whose fdb holds at most 3 MACs (`maxaddress 3`): the kernel answers ENOSPC beyond."""
    ns = underlay.name
    ns_exec(ns, "ip", "link", "add", "vxlan0", "type", "vxlan", "id", "100", "dstport", "4789", "local", "192.168.1.2",
            "dev", "eth0", "nolearning", "maxaddress", "3")
    ns_exec(ns, "ip", "link", "set", "vxlan0", "up")
    return underlay


def test_kernel_refusal_mid_batch_rolls_back_everything(limited):
    ns = limited.name
    # Two MACs in the table: the flood list (one fdb entry however many dsts) and MAC_A.
    assert run_module("bridge_fdb", args(limited, [{"mac": Z, "dst": "192.168.1.3"}, {"mac": MAC_A, "dst": "192.168.1.3"}]))["changed"]
    before, table = stable_dump(ns), fdb(ns)
    # exact: delete MAC_A, append a flood dst (same fdb entry), add MACs 1 and 2 (3 MACs: full),
    # MAC 3 is refused with ENOSPC: the four changes before it must be undone.
    wanted = [{"mac": Z, "dst": "192.168.1.3"}, {"mac": Z, "dst": "192.168.1.4"},
              {"mac": mac(1), "dst": "192.168.1.5"}, {"mac": mac(2), "dst": "192.168.1.5"}, {"mac": mac(3), "dst": "192.168.1.5"}]
    result = run_module("bridge_fdb", args(limited, wanted, "exact"))
    assert result["failed"] is True and result["changed"] is False
    assert "kernel refused fdb entry 02:01:00:00:00:03 dst 192.168.1.5" in result["msg"]
    assert "ENOSPC" in result["msg"]
    assert "rolled back 4 change(s)" in result["msg"]
    assert "ROLLBACK INCOMPLETE" not in result["msg"] and "Traceback" not in result["_stderr"]
    assert fdb(ns) == table
    assert stable_dump(ns) == before


def test_rollback_across_windows(underlay):
    ns = underlay.name
    limit = nl.WINDOW + 200
    ns_exec(ns, "ip", "link", "add", "vxlan0", "type", "vxlan", "id", "100", "dstport", "4789", "local", "192.168.1.2",
            "dev", "eth0", "nolearning", "maxaddress", str(limit))
    keep = [{"mac": mac(i), "dst": "192.168.2.1"} for i in range(1, 11)]
    run_module("bridge_fdb", args(underlay, keep))
    before = stable_dump(ns)
    wanted = [{"mac": mac(i), "dst": "192.168.2.2"} for i in range(1, 2 * nl.WINDOW + 1)]  # 10 replaces, the rest adds
    result = run_module("bridge_fdb", args(underlay, wanted), diff=False)
    assert result["failed"] is True
    refused = 2 * nl.WINDOW - limit
    assert "and %d more" % (refused - 1) in result["msg"]
    assert "rolled back %d change(s)" % (2 * nl.WINDOW - refused) in result["msg"]
    assert stable_dump(ns) == before


def test_execute_does_not_undo_deletes_of_entries_already_gone(limited):
    """Straight through _tables.execute with a real socket: a delete that found nothing (ENOENT,
    success for an idempotent module) must not be "undone" into an entry that never existed."""
    ns = limited.name
    run_module("bridge_fdb", args(limited, [{"mac": MAC_A, "dst": "192.168.1.3"}]))
    table = fdb(ns)
    with limited.ipr() as ipr:
        ifindex = ipr.link_lookup(ifname="vxlan0")[0]

    def request(op, entry):
        op = op if op == "delete" else ("append" if entry.mac == Z else "replace")
        return nl.fdb_request(op, ifindex, entry.mac, entry.dst, tag=entry)

    def undo(change):
        return request("add" if change.op == "delete" else "delete", change.entry)

    ghost = tables.FdbEntry(MAC_B, "192.168.1.7", 100, 4789)
    changes = [tables.Change("delete", ghost)] + [tables.Change("add", tables.FdbEntry(mac(i), "192.168.1.5", 100, 4789)) for i in (1, 2, 3)]
    with nl.NeighSocket(ns) as sock, pytest.raises(KernelError) as err:
        tables.execute(sock, changes, lambda c: request(c.op, c.entry), undo, "fdb entry", describe=lambda e: e.text(100, 4789))
    # MAC_A, mac(1), mac(2) fill the table; mac(3) is refused; only mac(1) and mac(2) are undone.
    assert "02:01:00:00:00:03 dst 192.168.1.5" in err.value.msg and "more" not in err.value.msg
    assert "rolled back 2 change(s)" in err.value.msg
    assert fdb(ns) == table  # no ghost entry for MAC_B, mac(1) undone


def test_missing_pyroute2_gives_missing_required_lib():
    assert_missing_pyroute2_reported("bridge_fdb", {"dev": "vxlan0", "entries": []})
