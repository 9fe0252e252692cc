"""The compact `rows` form of bridge_fdb and ip_neigh against a real kernel, in throwaway
namespaces: check, apply, idempotence, the same table as the `entries` form, the summary
result (and the whole table on request), and bad rows refused naming their index and value.
"""

from __future__ import annotations

import pytest
from _assertions import assert_refused, stable_dump
from helpers import run_module
from test_bridge_fdb import DIFF_AFTER as FDB_DIFF
from test_bridge_fdb import ENTRIES as FDB_ENTRIES
from test_bridge_fdb import KERNEL as FDB_KERNEL
from test_bridge_fdb import fdb
from test_ip_neigh import DIFF_AFTER as NEIGH_DIFF
from test_ip_neigh import KERNEL as NEIGH_KERNEL
from test_ip_neigh import neigh

Z = "00:00:00:00:00:00"
MAC_A = "36:ae:ed:9d:22:aa"
# The entries of test_bridge_fdb's ENTRIES, as rows: both spellings, every optional word.
FDB_ROWS = [
    "%s 192.168.1.3" % Z,
    "00-00-00-00-00-00 dst 192.168.1.4",
    "36:AE:ED:9D:22:AA 192.168.1.3",
    "4e11.7836.dae7 192.168.1.4 vni 200 port 8472 via eth0",
]
NEIGH_ROWS = ["100.0.0.3 36:AE:ED:9D:22:AA", "100.0.0.4 lladdr 4e-11-78-36-da-e7", "FD01::3 36aeed9d22aa"]


def fdb_args(ns, rows, state="present", **extra):
    return dict({"netns": ns.name, "dev": "vxlan0", "rows": rows, "state": state}, **extra)


def neigh_args(ns, rows, state="present", **extra):
    return dict({"netns": ns.name, "dev": "vxlan0", "rows": rows, "state": state}, **extra)


@pytest.mark.parametrize("as_text", [False, True], ids=["list", "one-string"])
def test_fdb_rows_check_apply_idempotent(vxlan, as_text):
    ns = vxlan.name
    rows = "# the static mesh\n" + "\n".join(FDB_ROWS) + "\n\n" if as_text else FDB_ROWS
    before = stable_dump(ns)
    checked = run_module("bridge_fdb", fdb_args(vxlan, rows, "exact"), check=True)
    assert checked["changed"] is True and checked["diff"]["after"] == FDB_DIFF
    assert checked["counts"] == {"entries": 4, "added": 4, "removed": 0}
    assert "entries" not in checked  # summary by default
    assert fdb(ns) == [] and stable_dump(ns) == before

    applied = run_module("bridge_fdb", fdb_args(vxlan, rows, "exact"))
    assert applied["changed"] is True and applied["diff"] == checked["diff"]
    assert fdb(ns) == FDB_KERNEL

    again = run_module("bridge_fdb", fdb_args(vxlan, rows, "exact", return_entries=True))
    assert again["changed"] is False and again["added"] == again["removed"] == []
    assert again["counts"] == {"entries": 4, "added": 0, "removed": 0} and len(again["entries"]) == 4
    # The dict form of the same entries is the same table: nothing to do.
    assert run_module("bridge_fdb", {"netns": ns, "dev": "vxlan0", "entries": FDB_ENTRIES, "state": "exact"})["changed"] is False
    # The module's own `added` words fed back as rows are the same table too.
    assert run_module("bridge_fdb", fdb_args(vxlan, applied["added"], "exact"))["changed"] is False
    assert fdb(ns) == FDB_KERNEL


def test_fdb_rows_diff_of_a_change(vxlan):
    ns = vxlan.name
    run_module("bridge_fdb", fdb_args(vxlan, FDB_ROWS, "exact"))
    moved = FDB_ROWS[:2] + ["36:ae:ed:9d:22:aa 192.168.1.9"]
    result = run_module("bridge_fdb", fdb_args(vxlan, moved, "exact"))
    assert result["added"] == ["36:ae:ed:9d:22:aa dst 192.168.1.9"]
    assert sorted(result["removed"]) == ["36:ae:ed:9d:22:aa dst 192.168.1.3", "4e:11:78:36:da:e7 dst 192.168.1.4 vni 200 port 8472 via eth0"]
    assert result["counts"] == {"entries": 3, "added": 1, "removed": 2}
    assert "36:ae:ed:9d:22:aa dst 192.168.1.3\n" in result["diff"]["before"]
    assert "36:ae:ed:9d:22:aa dst 192.168.1.9\n" in result["diff"]["after"]
    assert (MAC_A, "192.168.1.9", None, None, None, "permanent") in fdb(ns)


@pytest.mark.parametrize("as_text", [False, True], ids=["list", "one-string"])
def test_neigh_rows_check_apply_idempotent(vxlan, as_text):
    ns = vxlan.name
    rows = "\n".join(NEIGH_ROWS) if as_text else NEIGH_ROWS
    checked = run_module("ip_neigh", neigh_args(vxlan, rows, "exact"), check=True)
    assert checked["changed"] is True and checked["diff"]["after"] == NEIGH_DIFF and "entries" not in checked
    assert checked["counts"] == {"entries": 3, "added": 3, "removed": 0}
    assert neigh(ns) == []
    applied = run_module("ip_neigh", neigh_args(vxlan, rows, "exact"))
    assert applied["changed"] is True and neigh(ns) == NEIGH_KERNEL
    again = run_module("ip_neigh", neigh_args(vxlan, rows, "exact", return_entries=True))
    assert again["changed"] is False and len(again["entries"]) == 3
    # `IP` alone removes with state=absent.
    gone = run_module("ip_neigh", neigh_args(vxlan, ["100.0.0.4"], "absent"))
    assert gone["removed"] == ["100.0.0.4 lladdr 4e:11:78:36:da:e7"] and len(neigh(ns)) == 2


GOOD_FDB = "%s 192.168.1.3" % MAC_A
BAD_FDB = [
    ("mac", [GOOD_FDB, "02:aa:bb:cc:dd 192.168.1.3"], ["rows[1].mac='02:aa:bb:cc:dd'", "not a MAC"]),
    ("dst", [GOOD_FDB, "4e:11:78:36:da:e7 192.168.1"], ["rows[1].dst='192.168.1'", "not an IPv4 or IPv6"]),
    ("one-word", [GOOD_FDB, "4e:11:78:36:da:e7"], ["rows[1]='4e:11:78:36:da:e7'", "MAC DST"]),
    ("unknown-word", [GOOD_FDB, "4e:11:78:36:da:e7 192.168.1.3 vlan 5"], ["rows[1]=", "'vlan'"]),
    ("vni", [GOOD_FDB, "4e:11:78:36:da:e7 192.168.1.3 vni 0"], ["rows[1].vni='0'", "between 1 and 16777215"]),
    ("port", [GOOD_FDB, "4e:11:78:36:da:e7 192.168.1.3 port x"], ["rows[1].port='x'", "integer"]),
    ("via", [GOOD_FDB, "4e:11:78:36:da:e7 192.168.1.3 via eth9"], ["rows[1].via='eth9'", "no such interface"]),
    ("not-a-string", [GOOD_FDB, {"mac": MAC_A}], ["rows[1]=", "must be a string"]),
    ("duplicate", [GOOD_FDB, "36-AE-ED-9D-22-AA dst 192.168.1.3"], ["rows[1]", "listed twice"]),
    ("not-a-list", 5, ["rows=5", "list of strings"]),
    ("text-line", "%s\nzz 192.168.1.3\n" % GOOD_FDB, ["rows[1].mac='zz'"]),
]


@pytest.mark.parametrize("rows, fragments", [case[1:] for case in BAD_FDB], ids=[case[0] for case in BAD_FDB])
def test_fdb_bad_rows_are_refused(vxlan, rows, fragments):
    run_module("bridge_fdb", fdb_args(vxlan, ["%s 192.168.1.9" % Z]))
    assert_refused(vxlan.name, "bridge_fdb", fdb_args(vxlan, rows, "exact"), *fragments)
    assert_refused(vxlan.name, "bridge_fdb", fdb_args(vxlan, rows, "exact"), *fragments, check=True)


BAD_NEIGH = [
    ("ip", ["100.0.0.3 %s" % MAC_A, "100.0.0 %s" % MAC_A], ["rows[1].ip='100.0.0'"]),
    ("lladdr", ["100.0.0.3 %s" % MAC_A, "100.0.0.4 01:00:5e:00:00:01"], ["rows[1].lladdr='01:00:5e:00:00:01'", "multicast"]),
    ("no-lladdr", ["100.0.0.3 %s" % MAC_A, "100.0.0.4"], ["rows[1].lladdr=None", "required unless state=absent"]),
    ("three-words", ["100.0.0.3 %s x" % MAC_A], ["rows[0]='100.0.0.3 %s x'" % MAC_A, "IP LLADDR"]),
    ("duplicate", ["100.0.0.3 %s" % MAC_A, "100.0.0.3 lladdr %s" % MAC_A], ["rows[1]", "listed twice"]),
]


@pytest.mark.parametrize("rows, fragments", [case[1:] for case in BAD_NEIGH], ids=[case[0] for case in BAD_NEIGH])
def test_neigh_bad_rows_are_refused(vxlan, rows, fragments):
    assert_refused(vxlan.name, "ip_neigh", neigh_args(vxlan, rows, "exact"), *fragments)


def test_rows_and_entries_together_are_refused(vxlan):
    params = dict(fdb_args(vxlan, [GOOD_FDB]), entries=[{"mac": MAC_A, "dst": "192.168.1.3"}])
    assert_refused(vxlan.name, "bridge_fdb", params, "mutually exclusive", "entries", "rows")
