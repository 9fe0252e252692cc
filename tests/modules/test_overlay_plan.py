"""overlay.vxlan.overlay_plan against a real kernel: it must answer exactly what each module's
own check mode answers, item by item, and never change anything.

The host state is built by the real modules (so "converged" means what the modules made), then
drifted by hand with ip/bridge, one drift at a time.
"""

from __future__ import annotations

import pytest
from _settled import assert_unchanged, state_dump
from helpers import ns_exec, run_module, unique
from pyroute2 import netns


@pytest.fixture
def vm_namespace():
    name = unique("ovxt-vm")
    yield name
    if name in netns.listnetns():
        netns.remove(name)


def wanted(host: str, vm: str) -> dict:
    """One network of the source's static mode, as the roles hand it to the modules."""
    return {
        "linux_bridge": [{"name": "br1", "mtu": 1450, "netns": host}],
        "netns_veth": [{"namespace": vm, "name": "tap1", "peer": "tap2", "master": "br1", "addresses": ["100.0.0.2/24"],
                        "mac": "02:00:64:00:00:02", "mtu": 1450, "netns": host}],
        "vxlan_link": [{"name": "vxlan0", "vni": 100, "dstport": 4789, "local": "192.168.1.2", "dev": "eth0", "learning": False,
                        "proxy": True, "l2miss": False, "l3miss": False, "mtu": 1450, "master": "br1", "netns": host}],
        "bridge_fdb": [{"dev": "vxlan0", "state": "exact", "netns": host,
                        "entries": [{"mac": "02:00:64:00:00:03", "dst": "192.168.1.3"}, {"mac": "02:00:64:00:00:04", "dst": "192.168.1.4"}]}],
        "ip_neigh": [{"dev": "vxlan0", "state": "exact", "netns": host,
                      "entries": [{"ip": "100.0.0.3", "lladdr": "02:00:64:00:00:03"}, {"ip": "100.0.0.4", "lladdr": "02:00:64:00:00:04"}]}],
    }


def converge(want: dict) -> None:
    for module, items in want.items():
        for params in items:
            result = run_module(module, params)
            assert not result.get("failed"), result


def modules_check(want: dict) -> dict:
    """What each module, run on its own in check mode, says about each item."""
    return {module: [bool(run_module(module, params, check=True)["changed"]) for params in items] for module, items in want.items() if items}


def plan(want: dict, check: bool = False) -> dict:
    result = run_module("overlay_plan", want, check=check)
    assert not result.get("failed"), result
    assert result["changed"] is False
    return result


def changed_items(result: dict) -> dict:
    """Per module given items, what the plan says (modules given no items are left out)."""
    return {module: [item["changed"] for item in items] for module, items in result["items"].items() if items}


def test_fresh_host_everything_pending_and_nothing_changed(underlay, vm_namespace):
    want = wanted(underlay.name, vm_namespace)
    before = state_dump(underlay.name)
    result = plan(want)
    assert result["pending"] is True
    # The bridge is missing: the module's check mode says it would create it.
    assert result["items"]["linux_bridge"] == [{"changed": True}]
    # The rest depends on the bridge and the device; whatever cannot be checked yet is pending.
    for module in ("netns_veth", "vxlan_link", "bridge_fdb", "ip_neigh"):
        assert all(item["changed"] or "error" in item for item in result["items"][module]), result["items"]
    assert_unchanged(before, state_dump(underlay.name))
    assert vm_namespace not in netns.listnetns(), "the plan created the VM namespace"


def test_converged_host_nothing_pending(underlay, vm_namespace):
    want = wanted(underlay.name, vm_namespace)
    converge(want)
    result = plan(want)
    assert result["pending"] is False, result["items"]
    assert changed_items(result) == modules_check(want)
    assert plan(want, check=True)["pending"] is False


DRIFTS = {
    "bridge MTU": (["ip", "link", "set", "br1", "mtu", "1400"], "linux_bridge"),
    "bridge down": (["ip", "link", "set", "br1", "down"], "linux_bridge"),
    "veth off the bridge": (["ip", "link", "set", "tap1", "nomaster"], "netns_veth"),
    "vxlan learning on": (["ip", "link", "set", "vxlan0", "type", "vxlan", "learning"], "vxlan_link"),
    "vxlan out of the bridge": (["ip", "link", "set", "vxlan0", "nomaster"], "vxlan_link"),
    "fdb entry missing": (["bridge", "fdb", "del", "02:00:64:00:00:03", "dev", "vxlan0", "dst", "192.168.1.3"], "bridge_fdb"),
    "fdb entry extra": (["bridge", "fdb", "append", "02:00:00:de:ad:01", "dev", "vxlan0", "dst", "192.168.1.99"], "bridge_fdb"),
    "neighbour wrong lladdr": (["ip", "neigh", "replace", "100.0.0.3", "lladdr", "02:00:00:de:ad:01", "dev", "vxlan0", "nud", "permanent"], "ip_neigh"),
    "neighbour extra": (["ip", "neigh", "add", "100.0.0.99", "lladdr", "02:00:00:de:ad:01", "dev", "vxlan0", "nud", "permanent"], "ip_neigh"),
}


@pytest.mark.parametrize("drift", sorted(DRIFTS))
def test_each_drift_is_pending_exactly_where_the_module_would_change(underlay, vm_namespace, drift):
    want = wanted(underlay.name, vm_namespace)
    converge(want)
    command, module = DRIFTS[drift]
    ns_exec(underlay.name, *command)
    before = state_dump(underlay.name)

    result = plan(want)
    assert result["pending"] is True, (drift, result["items"])
    assert result["items"][module] == [{"changed": True}], (drift, result["items"])
    # Item by item, the same answer as each module's own check mode: no second comparison.
    assert changed_items(result) == modules_check(want), drift
    assert_unchanged(before, state_dump(underlay.name))

    converge(want)
    assert plan(want)["pending"] is False, drift


def test_veth_pair_in_vm_namespace_drift(underlay, vm_namespace):
    want = wanted(underlay.name, vm_namespace)
    converge(want)
    ns_exec(vm_namespace, "ip", "addr", "flush", "dev", "tap2")
    result = plan(want)
    assert result["pending"] is True
    assert result["items"]["netns_veth"] == [{"changed": True}]
    assert changed_items(result) == modules_check(want)


@pytest.mark.parametrize(
    ("module", "params", "words"),
    [
        ("vxlan_link", {"name": "vxlan0", "vni": 100, "bogus": 1}, "bogus"),
        ("vxlan_link", {"name": "vxlan0", "vni": 99999999}, "vni"),
        ("vxlan_link", {"name": "vxlan0", "vni": 100, "group": "239.1.1.1", "remote": "192.168.1.3"}, "mutually exclusive"),
        ("bridge_fdb", {"dev": "eth0", "entries": []}, "not a vxlan"),
        ("ip_neigh", {"dev": "vxlan0", "entries": [{"ip": "not-an-ip", "lladdr": "02:00:00:00:00:01"}]}, "not-an-ip"),
        ("linux_bridge", {"name": "a-name-far-too-long-for-linux"}, "name"),
    ],
)
def test_an_item_that_cannot_be_checked_is_pending_with_its_error(vxlan, module, params, words):
    before = state_dump(vxlan.name)
    result = plan({module: [dict(params, netns=vxlan.name)]})
    assert result["pending"] is True
    [item] = result["items"][module]
    assert item["changed"] is False and words in item["error"], item
    assert_unchanged(before, state_dump(vxlan.name))


def test_a_device_that_is_not_there_yet_is_pending(vxlan):
    """Check mode takes a missing device as one an earlier task creates (the role's order), so
    the item itself has nothing to report; the plan still counts it as pending, never settled."""
    result = plan({"bridge_fdb": [{"dev": "vxlan9", "entries": [], "netns": vxlan.name}]})
    assert result["pending"] is True
    [item] = result["items"]["bridge_fdb"]
    assert item["changed"] is False and "dev=vxlan9 does not exist yet" in item["assumed"], item


def test_nothing_given_nothing_pending():
    result = plan({})
    assert result["pending"] is False
    assert result["items"] == {"linux_bridge": [], "netns_veth": [], "vxlan_link": [], "bridge_fdb": [], "ip_neigh": [],
                               "vtep_allowlist": []}
