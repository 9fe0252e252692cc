"""overlay.vxlan.ip_neigh against a real kernel, inside throwaway namespaces.

Every assertion about the result is paired with what `ip -j neigh show dev ...` reads back.
"""

from __future__ import annotations

import time

import pytest
from _assertions import MISSING_NETNS, assert_check_assumes_created, assert_missing_pyroute2_reported, assert_refused, assert_unchanged, stable_dump
from helpers import ip_json, ns_exec, run_module

from ansible_collections.overlay.vxlan.plugins.module_utils import _fastnl as nl

MAC_A = "36:ae:ed:9d:22:aa"
MAC_B = "4e:11:78:36:da:e7"

ENTRIES = [
    {"ip": "100.0.0.3", "lladdr": "36:AE:ED:9D:22:AA"},
    {"ip": "100.0.0.4", "lladdr": "4e-11-78-36-da-e7"},
    {"ip": "FD01::3", "lladdr": "36aeed9d22aa"},  # dual stack: ARP and ND entries side by side
]
KERNEL = sorted([("100.0.0.3", MAC_A, "PERMANENT"), ("100.0.0.4", MAC_B, "PERMANENT"), ("fd01::3", MAC_A, "PERMANENT")])
DIFF_AFTER = "100.0.0.3 lladdr 36:ae:ed:9d:22:aa\n100.0.0.4 lladdr 4e:11:78:36:da:e7\nfd01::3 lladdr 36:ae:ed:9d:22:aa\n"


def neigh(ns: str, dev: str = "vxlan0", permanent_only: bool = False) -> list[tuple]:
    """The device's neighbour entries, NOARP included (`nud all`: ip(8) hides them otherwise),
    without the multicast mappings the kernel makes by itself (ff02::16 -> 33:33:00:00:00:16)."""
    entries = sorted((n["dst"], n.get("lladdr"), ",".join(n.get("state", [])))
                     for n in ip_json(ns, "neigh", "show", "dev", dev, "nud", "all") if not int(n.get("lladdr", "00")[:2], 16) & 1)
    return [e for e in entries if e[2] == "PERMANENT"] if permanent_only else entries


def add_dynamic(ns: str, ip: str, lladdr: str, dev: str = "vxlan0") -> None:
    """A non-permanent entry, as the kernel's own resolution would leave. The ARP table's
    garbage-collection thresholds are global to the host, so while other test runs fill it the
    kernel may answer ENOBUFS for a moment; wait for its gc rather than fail."""
    for _attempt in range(50):
        done = ns_exec(ns, "ip", "neigh", "replace", ip, "lladdr", lladdr, "dev", dev, "nud", "stale", check=False)
        if done.returncode == 0:
            return
        assert "No buffer space" in done.stderr, done.stderr
        time.sleep(0.1)
    raise AssertionError("the host's neighbour table stayed full")


def args(ns, entries, state="present", dev="vxlan0", **extra):
    return dict({"netns": ns.name, "dev": dev, "entries": entries, "state": state}, **extra)


# ---------------------------------------------------------------------------------------------
# check -> apply -> idempotent check -> idempotent apply
# ---------------------------------------------------------------------------------------------


def test_four_steps(vxlan):
    ns = vxlan.name
    before = stable_dump(ns)

    checked = run_module("ip_neigh", args(vxlan, ENTRIES), check=True)
    assert checked["changed"] is True and not checked.get("failed")
    assert checked["diff"]["before"] == ""
    assert checked["diff"]["after"] == DIFF_AFTER
    assert sorted(checked["added"]) == sorted(DIFF_AFTER.splitlines()) and checked["removed"] == []
    assert neigh(ns) == []
    assert_unchanged(ns, before)

    # The whole table is returned only on request (return_entries) since the compact form came.
    applied = run_module("ip_neigh", args(vxlan, ENTRIES, return_entries=True))
    assert applied["changed"] is True and applied["diff"] == checked["diff"]
    assert neigh(ns) == KERNEL
    assert sorted((e["ip"], e["lladdr"]) for e in applied["entries"]) == [(ip, mac) for ip, mac, _state in KERNEL]

    again = run_module("ip_neigh", args(vxlan, ENTRIES), check=True)
    assert again["changed"] is False
    assert again["diff"]["before"] == again["diff"]["after"] == DIFF_AFTER

    final = run_module("ip_neigh", args(vxlan, ENTRIES))
    assert final["changed"] is False
    assert neigh(ns) == KERNEL


def test_nud_noarp_entries(vxlan):
    ns = vxlan.name
    entries = [{"ip": "100.0.0.7", "lladdr": MAC_A}]
    for check, changed in ((True, True), (False, True), (False, False)):
        result = run_module("ip_neigh", args(vxlan, entries, nud="noarp"), check=check)
        assert (result.get("failed"), result["changed"]) == (None, changed), result
        assert neigh(ns) == ([] if check else [("100.0.0.7", MAC_A, "NOARP")])
    # A permanent-managing task does not see (or purge) the noarp entry.
    assert run_module("ip_neigh", args(vxlan, [], "exact"))["changed"] is False
    assert neigh(ns) == [("100.0.0.7", MAC_A, "NOARP")]
    # exact with nud=noarp purges it, but never the kernel's own multicast mappings (NOARP too).
    def mappings():
        return {n["dst"] for n in ip_json(ns, "neigh", "show", "dev", "vxlan0", "nud", "noarp") if n["dst"].startswith("ff02:")}

    kernel_made = mappings()
    assert kernel_made, "vxlan0 has no kernel multicast mappings to protect"
    purged = run_module("ip_neigh", args(vxlan, [], "exact", nud="noarp"))
    assert purged["removed"] == ["100.0.0.7 lladdr 36:ae:ed:9d:22:aa"]
    assert neigh(ns) == []
    assert run_module("ip_neigh", args(vxlan, [], "exact", nud="noarp"))["changed"] is False
    assert kernel_made <= mappings()


# ---------------------------------------------------------------------------------------------
# change, absent, exact
# ---------------------------------------------------------------------------------------------


def test_changed_lladdr_is_replaced(vxlan):
    ns = vxlan.name
    run_module("ip_neigh", args(vxlan, ENTRIES))
    moved = [{"ip": "100.0.0.3", "lladdr": MAC_B}]
    checked = run_module("ip_neigh", args(vxlan, moved), check=True)
    assert (checked["changed"], checked["added"], checked["removed"]) == (True, ["100.0.0.3 lladdr 4e:11:78:36:da:e7"], ["100.0.0.3 lladdr 36:ae:ed:9d:22:aa"])
    assert neigh(ns) == KERNEL
    assert run_module("ip_neigh", args(vxlan, moved))["changed"] is True
    assert ("100.0.0.3", MAC_B, "PERMANENT") in neigh(ns) and len(neigh(ns)) == 3
    assert run_module("ip_neigh", args(vxlan, moved))["changed"] is False


def test_absent_with_and_without_lladdr_and_gone_is_ok(vxlan):
    ns = vxlan.name
    run_module("ip_neigh", args(vxlan, ENTRIES))
    # lladdr given but different: the entry is someone else's now, left alone.
    assert run_module("ip_neigh", args(vxlan, [{"ip": "100.0.0.3", "lladdr": MAC_B}], "absent"))["changed"] is False
    gone = [{"ip": "100.0.0.3"}, {"ip": "fd01::3", "lladdr": MAC_A.upper()}]
    checked = run_module("ip_neigh", args(vxlan, gone, "absent"), check=True)
    assert checked["changed"] is True and sorted(checked["removed"]) == ["100.0.0.3 lladdr 36:ae:ed:9d:22:aa", "fd01::3 lladdr 36:ae:ed:9d:22:aa"]
    assert neigh(ns) == KERNEL
    assert run_module("ip_neigh", args(vxlan, gone, "absent"))["changed"] is True
    assert neigh(ns) == [("100.0.0.4", MAC_B, "PERMANENT")]
    before = stable_dump(ns)
    for check in (True, False):
        again = run_module("ip_neigh", args(vxlan, gone, "absent"), check=check)
        assert again["changed"] is False and not again.get("failed")
    assert_unchanged(ns, before)


def test_exact_purges_only_its_device_and_only_permanent_entries(vxlan):
    ns = vxlan.name
    add_dynamic(ns, "100.0.0.50", MAC_B)
    run_module("ip_neigh", args(vxlan, [{"ip": "100.0.0.60", "lladdr": MAC_A}, {"ip": "fd01::60", "lladdr": MAC_A}], dev="br1"))
    run_module("ip_neigh", args(vxlan, ENTRIES))
    br1_before = neigh(ns, "br1")
    assert len(br1_before) == 2

    keep = [{"ip": "fd01::3", "lladdr": MAC_A}]
    checked = run_module("ip_neigh", args(vxlan, keep, "exact"), check=True)
    assert sorted(checked["removed"]) == ["100.0.0.3 lladdr 36:ae:ed:9d:22:aa", "100.0.0.4 lladdr 4e:11:78:36:da:e7"]
    assert run_module("ip_neigh", args(vxlan, keep, "exact"))["changed"] is True
    assert neigh(ns, permanent_only=True) == [("fd01::3", MAC_A, "PERMANENT")]
    assert [e[:2] for e in neigh(ns) if e[2] != "PERMANENT"] == [("100.0.0.50", MAC_B)]  # dynamic entry untouched
    assert neigh(ns, "br1") == br1_before  # other device untouched
    assert run_module("ip_neigh", args(vxlan, keep, "exact"))["changed"] is False

    assert run_module("ip_neigh", args(vxlan, [], "exact"))["changed"] is True
    assert neigh(ns, permanent_only=True) == [] and neigh(ns, "br1") == br1_before


def test_large_table_across_pipelining_windows(vxlan):
    ns = vxlan.name
    count = 2 * nl.WINDOW + 100
    entries = [{"ip": "10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255), "lladdr": "02:02:00:00:%02x:%02x" % (i >> 8 & 255, i & 255)}
               for i in range(1, count + 1)]
    assert run_module("ip_neigh", args(vxlan, entries, "exact"), diff=False)["changed"] is True
    assert len(neigh(ns, permanent_only=True)) == count
    assert run_module("ip_neigh", args(vxlan, entries, "exact"), diff=False)["changed"] is False
    assert len(run_module("ip_neigh", args(vxlan, entries[:100], "exact"), diff=False)["removed"]) == count - 100
    assert len(neigh(ns, permanent_only=True)) == 100


# ---------------------------------------------------------------------------------------------
# Bad input: refused before the kernel is touched
# ---------------------------------------------------------------------------------------------

GOOD = {"ip": "100.0.0.3", "lladdr": MAC_A}

BAD_INPUTS = [
    ("lladdr-malformed", {"entries": [GOOD, {"ip": "100.0.0.4", "lladdr": "4e:11:78:36:da"}]}, ["entries[1].lladdr='4e:11:78:36:da'", "not a MAC"]),
    ("lladdr-multicast", {"entries": [GOOD, {"ip": "100.0.0.4", "lladdr": "01:00:5e:00:00:05"}]}, ["entries[1].lladdr='01:00:5e:00:00:05'", "multicast"]),
    ("lladdr-broadcast", {"entries": [GOOD, {"ip": "100.0.0.4", "lladdr": "FF:FF:FF:FF:FF:FF"}]}, ["entries[1].lladdr='FF:FF:FF:FF:FF:FF'"]),
    ("lladdr-all-zero", {"entries": [GOOD, {"ip": "100.0.0.4", "lladdr": "00:00:00:00:00:00"}]}, ["entries[1].lladdr='00:00:00:00:00:00'", "all-zero"]),
    ("lladdr-empty", {"entries": [GOOD, {"ip": "100.0.0.4", "lladdr": ""}]}, ["entries[1].lladdr=''", "empty"]),
    ("lladdr-missing", {"entries": [GOOD, {"ip": "100.0.0.4"}]}, ["entries[1].lladdr=None", "required unless state=absent"]),
    ("ip-malformed", {"entries": [GOOD, {"ip": "100.0.0", "lladdr": MAC_B}]}, ["entries[1].ip='100.0.0'", "not an IPv4 or IPv6"]),
    ("ip-with-prefix", {"entries": [GOOD, {"ip": "100.0.0.4/24", "lladdr": MAC_B}]}, ["entries[1].ip='100.0.0.4/24'"]),
    ("ip-multicast", {"entries": [GOOD, {"ip": "224.0.0.5", "lladdr": MAC_B}]}, ["entries[1].ip='224.0.0.5'", "unicast"]),
    ("ip6-multicast", {"entries": [GOOD, {"ip": "ff02::1", "lladdr": MAC_B}]}, ["entries[1].ip='ff02::1'", "unicast"]),
    ("ip-zone-index", {"entries": [GOOD, {"ip": "fe80::1%vxlan0", "lladdr": MAC_B}]}, ["entries[1].ip='fe80::1%vxlan0'"]),
    ("ip-empty", {"entries": [GOOD, {"ip": "", "lladdr": MAC_B}]}, ["entries[1].ip=''", "empty"]),
    ("ip-missing", {"entries": [GOOD, {"lladdr": MAC_B}]}, ["ip", "entries"]),
    ("duplicate", {"entries": [GOOD, {"ip": "100.0.0.4", "lladdr": MAC_B}, {"ip": "100.0.0.3", "lladdr": MAC_B}]}, ["entries[2]='100.0.0.3'", "listed twice"]),
    ("duplicate-ipv6-spelling", {"entries": [{"ip": "FD01::3", "lladdr": MAC_A}, {"ip": "fd01:0::3", "lladdr": MAC_A}]},
     ["entries[1]='fd01::3'", "listed twice"]),
    ("dev-missing", {"dev": "vxlan9"}, ["dev='vxlan9'", "no such interface"]),
    ("dev-too-long", {"dev": "vxlan-overlay-100"}, ["dev='vxlan-overlay-100'", "17 characters"]),
    ("dev-slash", {"dev": "vx/lan0"}, ["dev='vx/lan0'", "'/'"]),
    ("dev-space", {"dev": "vxlan 0"}, ["dev='vxlan 0'"]),
    ("dev-empty", {"dev": ""}, ["dev=''", "empty"]),
    ("netns-missing", {"netns": MISSING_NETNS}, ["netns='%s'" % MISSING_NETNS, "does not exist"]),
    ("netns-space", {"netns": "lab h1"}, ["netns='lab h1'"]),
    ("nud-unknown", {"nud": "incomplete"}, ["nud", "incomplete"]),
    ("state-unknown", {"state": "latest"}, ["state", "latest"]),
]


@pytest.mark.parametrize("override, fragments", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_refused_and_changes_nothing(vxlan, override, fragments):
    run_module("ip_neigh", args(vxlan, [{"ip": "100.0.0.9", "lladdr": MAC_B}, {"ip": "fd01::9", "lladdr": MAC_B}]))
    params = dict(args(vxlan, [GOOD], "exact"), **override)
    assert_refused(vxlan.name, "ip_neigh", params, *fragments)
    if params.get("dev") == "vxlan9":  # the role creates the device first: its whole table is new
        result = assert_check_assumes_created(vxlan.name, "ip_neigh", params, "dev", "vxlan9")
        assert result["removed"] == [] and len(result["added"]) == len(params["entries"]), result
        return
    assert_refused(vxlan.name, "ip_neigh", params, *fragments, check=True)


# ---------------------------------------------------------------------------------------------
# A kernel refusal half-way through the batch is undone
# ---------------------------------------------------------------------------------------------


def test_kernel_refusal_mid_batch_rolls_back_everything(vxlan):
    """IPv6 disabled on vxlan0: the kernel refuses ND entries (EINVAL) but takes ARP ones, so in
    one dual-stack batch the IPv6 entry fails between IPv4 changes that succeed."""
    ns = vxlan.name
    run_module("ip_neigh", args(vxlan, [{"ip": "100.0.0.9", "lladdr": MAC_B}]))
    ns_exec(ns, "sysctl", "-qw", "net.ipv6.conf.vxlan0.disable_ipv6=1")
    before, table = stable_dump(ns), neigh(ns)
    wanted = [{"ip": "100.0.0.3", "lladdr": MAC_A}, {"ip": "fd01::3", "lladdr": MAC_A}, {"ip": "100.0.0.4", "lladdr": MAC_B}]
    result = run_module("ip_neigh", args(vxlan, wanted, "exact"))
    assert result["failed"] is True and result["changed"] is False
    assert "kernel refused neighbour entry fd01::3 lladdr 36:ae:ed:9d:22:aa: IPv6 is disabled on this device (EINVAL)" in result["msg"]
    # delete 100.0.0.9, add 100.0.0.3, add 100.0.0.4 were applied and undone.
    assert "rolled back 3 change(s)" in result["msg"] and "ROLLBACK INCOMPLETE" not in result["msg"]
    assert "Traceback" not in result["_stderr"]
    assert neigh(ns) == table
    assert_unchanged(ns, before)


def test_missing_pyroute2_gives_missing_required_lib():
    assert_missing_pyroute2_reported("ip_neigh", {"dev": "vxlan0", "entries": []})
