"""Plain-function tests of fdb/neighbour planning (no kernel): what a module would change."""

from __future__ import annotations

import socket

import pytest

from ansible_collections.overlay.vxlan.plugins.module_utils import _fastnl as nl
from ansible_collections.overlay.vxlan.plugins.module_utils._tables import (
    Change,
    FdbEntry,
    NeighEntry,
    apply_plan,
    plan_fdb,
    plan_neigh,
)

Z = "00:00:00:00:00:00"
M1 = "02:00:64:00:00:02"
M2 = "02:00:64:00:00:03"
VNI, PORT = 100, 4789


def fdb(mac, dst, vni=VNI, port=PORT, via=None):
    return FdbEntry(mac, dst, vni, port, via)


def ops(changes):
    return [(c.op, c.entry, c.old) for c in changes]


# ---------------------------------------------------------------------------------------------
# plan_fdb
# ---------------------------------------------------------------------------------------------


def test_present_adds_only_what_is_missing():
    current = [fdb(Z, "192.168.1.3"), fdb(M1, "192.168.1.3")]
    desired = [fdb(Z, "192.168.1.3"), fdb(M1, "192.168.1.3"), fdb(M2, "192.168.1.4")]
    assert ops(plan_fdb(desired, current, "present")) == [("add", fdb(M2, "192.168.1.4"), None)]


def test_present_on_identical_table_is_empty():
    table = [fdb(Z, "192.168.1.3"), fdb(Z, "192.168.1.4"), fdb(M1, "192.168.1.3")]
    assert plan_fdb(table, list(reversed(table)), "present") == []
    assert plan_fdb(table, table, "exact") == []


def test_flood_list_entries_coexist_and_are_appended_not_replaced():
    current = [fdb(Z, "192.168.1.3")]
    desired = [fdb(Z, "192.168.1.3"), fdb(Z, "192.168.1.4"), fdb(Z, "192.168.1.5")]
    assert ops(plan_fdb(desired, current, "present")) == [
        ("add", fdb(Z, "192.168.1.4"), None),
        ("add", fdb(Z, "192.168.1.5"), None),
    ]
    # A different flood destination is never a "move" of the all-zero MAC.
    assert ops(plan_fdb([fdb(Z, "192.168.1.9")], current, "present")) == [("add", fdb(Z, "192.168.1.9"), None)]


def test_moved_mac_is_a_replace_of_the_old_vtep():
    current = [fdb(M1, "192.168.1.3")]
    desired = [fdb(M1, "192.168.1.4")]
    expected = [("replace", fdb(M1, "192.168.1.4"), fdb(M1, "192.168.1.3"))]
    assert ops(plan_fdb(desired, current, "present")) == expected
    # exact must not also delete the replaced entry (the replace already removed it).
    assert ops(plan_fdb(desired, current, "exact")) == expected


@pytest.mark.parametrize("moved", [
    fdb(M1, "192.168.1.3", vni=200),
    fdb(M1, "192.168.1.3", port=8472),
    fdb(M1, "192.168.1.3", via="eth1"),
])
def test_identity_is_mac_dst_vni_port_via(moved):
    current = [fdb(M1, "192.168.1.3")]
    assert ops(plan_fdb([moved], current, "present")) == [("replace", moved, fdb(M1, "192.168.1.3"))]


def test_absent_deletes_only_listed_entries_that_exist():
    current = [fdb(Z, "192.168.1.3"), fdb(Z, "192.168.1.4"), fdb(M1, "192.168.1.3")]
    desired = [fdb(Z, "192.168.1.4"), fdb(M1, "192.168.1.9"), fdb(M2, "192.168.1.3")]
    assert ops(plan_fdb(desired, current, "absent")) == [("delete", fdb(Z, "192.168.1.4"), None)]
    assert plan_fdb([fdb(M2, "192.168.1.3")], current, "absent") == []


def test_exact_deletes_the_rest_first_but_never_protected_entries():
    group_default = fdb(Z, "239.1.1.1", via="eth0")
    current = [group_default, fdb(Z, "192.168.1.3"), fdb(Z, "192.168.1.4"), fdb(M1, "192.168.1.3"), fdb(M2, "192.168.1.4")]
    desired = [fdb(Z, "192.168.1.3"), fdb(M1, "192.168.1.4"), fdb(Z, "192.168.1.5")]
    changes = plan_fdb(desired, current, "exact", frozenset({group_default}))
    assert ops(changes) == [
        ("delete", fdb(Z, "192.168.1.4"), None),
        ("delete", fdb(M2, "192.168.1.4"), None),
        ("replace", fdb(M1, "192.168.1.4"), fdb(M1, "192.168.1.3")),
        ("add", fdb(Z, "192.168.1.5"), None),
    ]
    after = apply_plan(current, changes)
    assert after == sorted([group_default, fdb(Z, "192.168.1.3"), fdb(M1, "192.168.1.4"), fdb(Z, "192.168.1.5")])


def test_exact_with_nothing_desired_keeps_only_protected():
    group_default = fdb(Z, "239.1.1.1")
    current = [group_default, fdb(M1, "192.168.1.3")]
    changes = plan_fdb([], current, "exact", frozenset({group_default}))
    assert ops(changes) == [("delete", fdb(M1, "192.168.1.3"), None)]
    assert apply_plan(current, changes) == [group_default]


def test_protected_entry_is_deleted_only_when_asked_by_name():
    group_default = fdb(Z, "239.1.1.1")
    assert ops(plan_fdb([group_default], [group_default], "absent", frozenset({group_default}))) == [("delete", group_default, None)]


def test_stale_remotes_of_a_mac_each_replaced_once():
    # A unicast MAC listed once with a new VTEP: one replace, and exact deletes nothing else.
    current = [fdb(M1, "192.168.1.3"), fdb(M2, "192.168.1.3")]
    desired = [fdb(M1, "192.168.1.5"), fdb(M2, "192.168.1.5")]
    changes = plan_fdb(desired, current, "exact")
    assert [c.op for c in changes] == ["replace", "replace"]
    assert apply_plan(current, changes) == sorted(desired)


# ---------------------------------------------------------------------------------------------
# plan_neigh
# ---------------------------------------------------------------------------------------------

N3 = NeighEntry("100.0.0.3", M1)
N4 = NeighEntry("100.0.0.4", M2)
N6 = NeighEntry("fd01::3", M1)


def test_neigh_present_adds_and_replaces_changed_lladdr():
    current = [N3]
    desired = [NeighEntry("100.0.0.3", M2), N4]
    assert ops(plan_neigh(desired, current, "present")) == [
        ("replace", NeighEntry("100.0.0.3", M2), N3),
        ("add", N4, None),
    ]
    assert plan_neigh([N3, N4], [N4, N3], "present") == []


def test_neigh_absent_with_and_without_lladdr():
    current = [N3, N4]
    # No lladdr: remove whatever the IP maps to.
    assert ops(plan_neigh([NeighEntry("100.0.0.3", None)], current, "absent")) == [("delete", N3, None)]
    # With lladdr: remove only if it still has that MAC.
    assert plan_neigh([NeighEntry("100.0.0.3", M2)], current, "absent") == []
    assert ops(plan_neigh([NeighEntry("100.0.0.4", M2)], current, "absent")) == [("delete", N4, None)]
    assert plan_neigh([NeighEntry("100.0.0.9", None)], current, "absent") == []


def test_neigh_exact_purges_other_ips_first_and_mixes_families():
    current = [N3, N4, NeighEntry("fd01::4", M2)]
    desired = [N3, N6]
    changes = plan_neigh(desired, current, "exact")
    assert ops(changes) == [
        ("delete", N4, None),
        ("delete", NeighEntry("fd01::4", M2), None),
        ("add", N6, None),
    ]
    assert apply_plan(current, changes) == sorted(desired)


def test_neigh_exact_empty_removes_everything():
    assert apply_plan([N3, N4], plan_neigh([], [N3, N4], "exact")) == []


# ---------------------------------------------------------------------------------------------
# apply_plan and entry rendering
# ---------------------------------------------------------------------------------------------


def test_apply_plan_is_sorted_and_applies_each_op():
    current = [fdb(M2, "192.168.1.4"), fdb(M1, "192.168.1.3")]
    changes = [
        Change("delete", fdb(M2, "192.168.1.4")),
        Change("replace", fdb(M1, "192.168.1.5"), fdb(M1, "192.168.1.3")),
        Change("add", fdb(Z, "192.168.1.6")),
    ]
    assert apply_plan(current, changes) == [fdb(Z, "192.168.1.6"), fdb(M1, "192.168.1.5")]
    assert apply_plan(current, []) == sorted(current)


def test_fdb_entry_text_omits_device_defaults_like_bridge_fdb():
    assert fdb(Z, "192.168.1.3").text(VNI, PORT) == "00:00:00:00:00:00 dst 192.168.1.3"
    assert fdb(M1, "fd00::3", vni=200, port=8472, via="eth1").text(VNI, PORT) == "02:00:64:00:00:02 dst fd00::3 vni 200 port 8472 via eth1"
    assert fdb(M1, "192.168.1.3").as_dict() == {"mac": M1, "dst": "192.168.1.3", "vni": 100, "port": 4789, "via": None}
    assert N3.text() == "100.0.0.3 lladdr 02:00:64:00:00:02"
    assert N3.as_dict() == {"ip": "100.0.0.3", "lladdr": M1}


# ---------------------------------------------------------------------------------------------
# Message layouts (pure packing/parsing; the kernel tests prove they are accepted)
# ---------------------------------------------------------------------------------------------


def _body(request, seq=7, ack=True):
    raw = request.pack(seq, ack=ack)
    length, msg_type, flags, got_seq, _pid = nl._NLMSGHDR.unpack_from(raw)
    assert length == len(raw) and got_seq == seq
    return msg_type, flags, raw[nl._NLMSGHDR.size:]


def test_fdb_request_round_trips_through_the_dump_parser():
    request = nl.fdb_request("replace", 5, M1, "fd00::3", vni=200, port=8472, via=3)
    msg_type, flags, body = _body(request)
    assert msg_type == nl.RTM_NEWNEIGH
    assert flags == nl.NLM_F_REQUEST | nl.NLM_F_ACK | nl.NLM_F_CREATE | nl.NLM_F_REPLACE
    parsed = nl._parse_neigh(body)
    assert parsed == {"family": nl.AF_BRIDGE, "ifindex": 5, "state": nl.NUD_PERMANENT | nl.NUD_NOARP, "flags": nl.NTF_SELF,
                      "mac": M1, "dst": "fd00::3", "port": 8472, "vni": 200, "via": 3, "master": None}


def test_fdb_append_and_delete_flags():
    _t, flags, _b = _body(nl.fdb_request("append", 5, Z, "192.168.1.3"), ack=False)
    assert flags == nl.NLM_F_REQUEST | nl.NLM_F_CREATE | nl.NLM_F_APPEND
    msg_type, flags, body = _body(nl.fdb_request("delete", 5, Z, "192.168.1.3"))
    assert (msg_type, flags) == (nl.RTM_DELNEIGH, nl.NLM_F_REQUEST | nl.NLM_F_ACK)
    assert nl._parse_neigh(body)["dst"] == "192.168.1.3"


def test_neigh_request_families():
    _t, _f, body = _body(nl.neigh_request("replace", 9, "100.0.0.3", M1))
    parsed = nl._parse_neigh(body)
    assert (parsed["family"], parsed["dst"], parsed["mac"], parsed["state"]) == (socket.AF_INET, "100.0.0.3", M1, nl.NUD_PERMANENT)
    _t, _f, body = _body(nl.neigh_request("delete", 9, "fd01::3"))
    parsed = nl._parse_neigh(body)
    assert (parsed["family"], parsed["dst"], parsed["mac"]) == (socket.AF_INET6, "fd01::3", None)


# ---------------------------------------------------------------------------------------------
# One set of constants and one reading of the messages: the lean path agrees with pyroute2
# ---------------------------------------------------------------------------------------------


def test_lean_path_constants_are_pyroute2s():
    import pyroute2.netlink as pnl
    from pyroute2.netlink import rtnl
    from pyroute2.netlink.rtnl import ndmsg

    for name in ("NLMSG_ERROR", "NLMSG_DONE", "NLM_F_REQUEST", "NLM_F_MULTI", "NLM_F_DUMP_INTR", "NLM_F_ACK", "NLM_F_DUMP",
                 "NLM_F_REPLACE", "NLM_F_EXCL", "NLM_F_CREATE", "NLM_F_APPEND", "NLM_F_ACK_TLVS", "SOL_NETLINK",
                 "NETLINK_EXT_ACK", "NETLINK_ROUTE"):
        assert getattr(nl, name) == getattr(pnl, name), name
    for name in ("RTM_NEWNEIGH", "RTM_DELNEIGH", "RTM_GETNEIGH"):
        assert getattr(nl, name) == getattr(rtnl, name), name
    for name in [n for n in dir(nl) if n.startswith(("NTF_", "NUD_")) and n != "NUD_NAMES"]:
        assert getattr(nl, name) == getattr(ndmsg, name), name
    nda = {name: index for index, (name, _kind) in enumerate(ndmsg.ndmsg.nla_map)}
    for name in [n for n in dir(nl) if n.startswith("NDA_")]:
        assert getattr(nl, name) == nda[name], name
    assert nl.AF_BRIDGE == socket.AF_BRIDGE


@pytest.mark.parametrize("request_", [
    nl.fdb_request("replace", 5, M1, "fd00::3", vni=200, port=8472, via=3),
    nl.fdb_request("append", 5, Z, "192.168.1.3"),
    nl.neigh_request("replace", 9, "::ffff:1.2.3.4", M1),
    nl.neigh_request("delete", 9, "100.0.0.3"),
], ids=["fdb-replace", "fdb-append", "neigh-v6-mapped", "neigh-delete"])
def test_lean_messages_read_the_same_with_pyroute2(request_):
    """What the lean path packs, pyroute2's marshal parses to the same entry as the lean parser
    (and the DOVE agent, which reads with pyroute2, sees the same text)."""
    from pyroute2.netlink.rtnl.marshal import MarshalRtnl

    raw = request_.pack(11)
    [msg] = MarshalRtnl().parse(raw)
    lean = nl._parse_neigh(raw[nl._NLMSGHDR.size:])
    assert msg["header"]["type"] == request_.msg_type and msg["header"]["sequence_number"] == 11
    assert (msg["family"], msg["ifindex"], msg["state"], msg["flags"]) == (lean["family"], lean["ifindex"], lean["state"], lean["flags"])
    assert msg.get_attr("NDA_DST") == lean["dst"]
    assert msg.get_attr("NDA_LLADDR") == lean["mac"]
    assert (msg.get_attr("NDA_PORT"), msg.get_attr("NDA_VNI"), msg.get_attr("NDA_IFINDEX")) == (lean["port"], lean["vni"], lean["via"])


def test_already_gone_is_decided_once():
    delete = nl.fdb_request("delete", 5, M1, "192.168.1.3")
    add = nl.fdb_request("replace", 5, M1, "192.168.1.3")
    assert all(nl.already_gone(delete, code) for code in (2, 3, 19, 99))  # ENOENT ESRCH ENODEV EADDRNOTAVAIL
    assert not nl.already_gone(delete, 1) and not nl.already_gone(add, 2)
