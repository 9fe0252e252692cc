"""overlay.vxlan.overlay_apply against a real kernel: one process builds what the five modules,
run one by one, build (the same state, read back), with check mode, diff and idempotence, and a
bad item stops it naming the item."""

from __future__ import annotations

from _assertions import warning_texts
from _settled import assert_unchanged, state_dump
from helpers import Namespace, run_module
from test_overlay_plan import converge, vm_namespace, wanted  # noqa: F401  (fixture)


def with_rows(want: dict) -> dict:
    """The tables as the roles give them since the fleet change: compact rows, one string."""
    want = dict(want)
    want["bridge_fdb"] = [dict({k: v for k, v in p.items() if k != "entries"}, rows="".join("%s %s\n" % (e["mac"], e["dst"]) for e in p["entries"]))
                          for p in want["bridge_fdb"]]
    want["ip_neigh"] = [dict({k: v for k, v in p.items() if k != "entries"}, rows="".join("%s %s\n" % (e["ip"], e["lladdr"]) for e in p["entries"]))
                        for p in want["ip_neigh"]]
    return want


def test_check_apply_idempotent_and_the_same_state_as_the_modules(underlay, vm_namespace):  # noqa: F811
    want = with_rows(wanted(underlay.name, vm_namespace))
    before = state_dump(underlay.name)
    checked = run_module("overlay_apply", want, check=True)
    assert checked["changed"] is True and not checked.get("failed"), checked
    assert_unchanged(before, state_dump(underlay.name))
    # Devices an earlier item creates are assumed in check mode, with the modules' own warning.
    assert any("does not exist yet" in w for w in warning_texts(checked)), checked
    headers = [d["before_header"] for d in checked["diff"]]
    assert any(h.startswith("linux_bridge[0] (linux_bridge br1)") for h in headers), headers
    fdb_diff = next(d for d in checked["diff"] if d["before_header"].startswith("bridge_fdb[0]"))
    assert fdb_diff["after"] == "02:00:64:00:00:03 dst 192.168.1.3\n02:00:64:00:00:04 dst 192.168.1.4\n"

    applied = run_module("overlay_apply", want)
    assert applied["changed"] is True and not applied.get("failed"), applied
    assert [i["changed"] for items in applied["items"].values() for i in items] == [True] * 5
    assert applied["items"]["bridge_fdb"][0]["counts"] == {"entries": 2, "added": 2, "removed": 0}
    assert "entries" not in applied["items"]["bridge_fdb"][0]  # the modules' summary result

    again = run_module("overlay_apply", want)
    assert again["changed"] is False and again["diff"] == [], again
    # The same state as the five modules make one by one: each of them, on its own, has nothing to do.
    for module, items in wanted(underlay.name, vm_namespace).items():
        for params in items:
            assert run_module(module, params, check=True)["changed"] is False, (module, params)

    # Built by the modules one by one, a second host's state equals this one's.
    ns = Namespace()
    other = wanted(ns.name, vm_namespace + "b")
    try:
        with ns.ipr() as ipr:
            ipr.link("add", ifname="eth0", kind="veth", peer="eth0-peer")
            eth0 = ipr.link_lookup(ifname="eth0")[0]
            ipr.addr("add", index=eth0, address="192.168.1.2", prefixlen=24)
            ipr.link("set", index=eth0, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname="eth0-peer")[0], state="up")
        converge(other)
        assert run_module("overlay_apply", with_rows(other))["changed"] is False
    finally:
        run_module("netns_veth", {"namespace": vm_namespace + "b", "name": "tap1", "peer": "tap2", "netns": ns.name,
                                  "state": "absent", "namespace_state": "absent"})
        ns.remove()


def test_a_bad_item_stops_the_task_naming_it(underlay, vm_namespace):  # noqa: F811
    want = with_rows(wanted(underlay.name, vm_namespace))
    want["ip_neigh"][0]["rows"] = "100.0.0.3 02:00:64:00:00:03\n100.0.0 02:00:64:00:00:04\n"
    result = run_module("overlay_apply", want)
    assert result["failed"] is True
    assert result["msg"].startswith("ip_neigh[0] (ip_neigh vxlan0): rows[1].ip='100.0.0'"), result["msg"]
    # Items before it are applied, as separate tasks would have left them; the bad table is untouched.
    assert result["changed"] is True and [i["changed"] for i in result["items"]["bridge_fdb"]] == [True]
    assert result["items"]["ip_neigh"] == []
    assert "Traceback" not in result.get("msg", "") + result["_stderr"]
