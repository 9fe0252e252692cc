"""overlay.vxlan.netns_veth against a real kernel.

The host end lives in the `ns` fixture's namespace (the module's `netns`), never the root one;
every VM namespace gets a unique name and is removed in a finalizer even when a test fails.
"""

from __future__ import annotations

import subprocess

import pytest
from _assertions import warning_texts
from _settled import assert_unchanged, stale_netns_file, state_dump
from helpers import ip_json, ns_exec, run_module, unique
from pyroute2 import netns

MODULE = "netns_veth"
MAC = "02:00:64:00:00:02"


@pytest.fixture
def host(ns):
    """`ns` as a host: bridges br1 and br2, each with a fixed MAC and a port of its own (veths
    eth0 and eth1; eth0 is also "an interface that is not a bridge"), IPv6 off.

    The host side of the overlay is pure layer 2. Left to itself the kernel would change a
    bridge's MAC and TSO limits as ports join and leave, and give every interface that gets
    carrier an IPv6 link-local address and multicast fdb entries, asynchronously: state changes
    no module made, which would make a rolled-back run look different from the state before it.
    The VM namespaces keep IPv6."""
    for key in ("all", "default"):
        ns_exec(ns.name, "sysctl", "-qw", "net.ipv6.conf.%s.disable_ipv6=1" % key)
    for number, bridge in enumerate(("br1", "br2"), start=1):
        port = "eth%d" % (number - 1)
        ns_exec(ns.name, "ip", "link", "add", bridge, "address", "02:00:00:00:01:%02x" % number, "type", "bridge")
        ns_exec(ns.name, "ip", "link", "add", port, "type", "veth", "peer", "name", port + "-peer")
        ns_exec(ns.name, "ip", "link", "set", port, "master", bridge)
        for name in (port, port + "-peer", bridge):
            ns_exec(ns.name, "ip", "link", "set", name, "up")
    return ns


@pytest.fixture
def vmns():
    """Factory of unique VM namespace names; whatever exists of them at the end is removed."""
    names = []

    def make(create: bool = False) -> str:
        name = unique("ovxt-vm")
        names.append(name)
        if create:
            netns.create(name)
        return name

    yield make
    for name in names:
        if name in netns.listnetns():
            netns.remove(name)


def run(host, vm, check=False, **args):
    return run_module(MODULE, dict({"netns": host.name, "namespace": vm}, **args), check=check)


def link(ns: str, name: str):
    found = [item for item in ip_json(ns, "-d", "link", "show") if item["ifname"] == name]
    return found[0] if found else None


def addresses(ns: str, name: str) -> list[str]:
    result = []
    for iface in ip_json(ns, "addr", "show", "dev", name):
        for addr in iface["addr_info"]:
            if not addr["local"].startswith("fe80:"):
                result.append("%s/%d" % (addr["local"], addr["prefixlen"]))
    return result


def up(item) -> bool:
    return "UP" in item["flags"]


VM = {"name": "tap1", "peer": "tap2", "master": "br1", "addresses": ["100.0.0.2/24", "fd00:100::2/64"], "mac": MAC, "mtu": 1450}


def test_create_check_apply_then_idempotent(host, vmns):
    vm = vmns()
    before = state_dump(host.name)

    check = run(host, vm, check=True, **VM)
    assert check["changed"] is True, check
    expected = {"name": "tap1", "peer": "tap2", "namespace": vm, "master": "br1", "mtu": 1450, "peer_mtu": 1450,
                "mac": MAC, "addresses": ["100.0.0.2/24", "fd00:100::2/64"], "up": True}
    assert check["diff"]["before"] == {"namespace": {"name": vm, "exists": False}, "veth": {}}
    assert check["diff"]["after"] == {"namespace": {"name": vm, "exists": True}, "veth": expected}
    assert vm not in netns.listnetns(), "check mode created the namespace"
    assert_unchanged(before, state_dump(host.name))  # check mode changed nothing

    result = run(host, vm, **VM)
    assert result["changed"] is True, result
    assert result["veth"] == expected and result["namespace_exists"] is True
    tap1 = link(host.name, "tap1")
    assert tap1["linkinfo"]["info_kind"] == "veth" and tap1["master"] == "br1" and tap1["mtu"] == 1450 and up(tap1)
    tap2 = link(vm, "tap2")
    assert tap2["linkinfo"]["info_kind"] == "veth" and tap2["address"] == MAC and tap2["mtu"] == 1450 and up(tap2)
    assert tap1["link_index"] == tap2["ifindex"] and tap2["link_index"] == tap1["ifindex"], "tap1 and tap2 are one pair"
    assert up(link(vm, "lo"))
    assert sorted(addresses(vm, "tap2")) == ["100.0.0.2/24", "fd00:100::2/64"]
    assert sorted(i["ifname"] for i in ip_json(vm, "link", "show")) == ["lo", "tap2"]

    assert run(host, vm, check=True, **VM)["changed"] is False
    again = run(host, vm, **VM)
    assert again["changed"] is False, again
    assert again["veth"] == expected


def test_the_sources_vms_reach_each_other_over_the_bridge(host, vmns):
    """Two "VMs" on br1, as in the source: 100.0.0.2 pings 100.0.0.3."""
    vm1, vm2 = vmns(), vmns()
    run(host, vm1, name="tap1", peer="tap2", master="br1", addresses=["100.0.0.2/24"], mac="02:00:64:00:00:02")
    run(host, vm2, name="tap3", peer="tap2", master="br1", addresses=["100.0.0.3/24"], mac="02:00:64:00:00:03")
    # Static ARP both ways: the kernel's ARP table limit (gc_thresh3) is shared by every namespace
    # on the machine, and concurrent runs can fill it; permanent entries do not count.
    ns_exec(vm1, "ip", "neigh", "add", "100.0.0.3", "lladdr", "02:00:64:00:00:03", "dev", "tap2", "nud", "permanent")
    ns_exec(vm2, "ip", "neigh", "add", "100.0.0.2", "lladdr", "02:00:64:00:00:02", "dev", "tap2", "nud", "permanent")
    ping = ns_exec(vm1, "ping", "-c", "1", "-w", "10", "100.0.0.3", check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_existing_namespace_is_used(host, vmns):
    vm = vmns(create=True)
    result = run(host, vm, name="tap1", peer="tap2")
    assert result["changed"] is True and result["diff"]["before"]["namespace"]["exists"] is True
    assert link(vm, "tap2") is not None


def test_change_converges_in_place_and_removes_foreign_addresses(host, vmns):
    vm = vmns()
    run(host, vm, **VM)
    ns_exec(vm, "ip", "addr", "add", "100.0.0.9/24", "dev", "tap2")  # not ours: goes
    indexes = (link(host.name, "tap1")["ifindex"], link(vm, "tap2")["ifindex"])
    host_before, vm_before = state_dump(host.name), state_dump(vm)

    changed = dict(VM, master="br2", addresses=["100.0.0.3/24", "fd00:100::3/64"], mac="02:00:64:00:00:03", mtu=1400)
    check = run(host, vm, check=True, **changed)
    assert check["changed"] is True
    assert check["diff"]["before"]["veth"]["addresses"] == ["100.0.0.2/24", "100.0.0.9/24", "fd00:100::2/64"]
    after = check["diff"]["after"]["veth"]
    assert (after["master"], after["addresses"], after["mac"], after["mtu"], after["peer_mtu"]) == (
        "br2", ["100.0.0.3/24", "fd00:100::3/64"], "02:00:64:00:00:03", 1400, 1400)
    assert_unchanged((host_before, vm_before), (state_dump(host.name), state_dump(vm)))

    result = run(host, vm, **changed)
    assert result["changed"] is True
    assert result["veth"] == after
    tap1, tap2 = link(host.name, "tap1"), link(vm, "tap2")
    assert (tap1["ifindex"], tap2["ifindex"]) == indexes, "changed in place, not recreated"
    assert tap1["master"] == "br2" and tap1["mtu"] == 1400
    assert tap2["address"] == "02:00:64:00:00:03" and tap2["mtu"] == 1400
    assert sorted(addresses(vm, "tap2")) == ["100.0.0.3/24", "fd00:100::3/64"]
    assert any(a["local"].startswith("fe80:") for a in ip_json(vm, "addr", "show", "dev", "tap2")[0]["addr_info"]), \
        "the kernel's link-local address is left alone"
    assert run(host, vm, **changed)["changed"] is False


def test_removing_a_primary_address_keeps_the_wanted_secondary(host, vmns):
    """Deleting an IPv4 primary drops its secondaries; the module re-reads and puts it back."""
    vm = vmns()
    run(host, vm, name="tap1", peer="tap2", addresses=["100.0.0.2/24", "100.0.0.3/24"])
    result = run(host, vm, name="tap1", peer="tap2", addresses=["100.0.0.3/24"])
    assert result["changed"] is True
    assert addresses(vm, "tap2") == ["100.0.0.3/24"]
    assert run(host, vm, name="tap1", peer="tap2", addresses=["100.0.0.3/24"])["changed"] is False


def test_empty_list_removes_all_addresses_and_left_out_options_are_not_managed(host, vmns):
    vm = vmns()
    run(host, vm, **VM)
    untouched = run(host, vm, name="tap1", peer="tap2")
    assert untouched["changed"] is False
    assert untouched["veth"]["addresses"] == ["100.0.0.2/24", "fd00:100::2/64"] and untouched["veth"]["master"] == "br1"
    assert run(host, vm, name="tap1", peer="tap2", addresses=[])["changed"] is True
    assert addresses(vm, "tap2") == []


def test_down_ends_and_lo_are_brought_up(host, vmns):
    vm = vmns()
    run(host, vm, **VM)
    ns_exec(host.name, "ip", "link", "set", "tap1", "down")
    ns_exec(vm, "ip", "link", "set", "tap2", "down")
    ns_exec(vm, "ip", "link", "set", "lo", "down")
    check = run(host, vm, check=True, **VM)
    assert check["changed"] is True and check["diff"]["before"]["veth"]["up"] is False and check["diff"]["after"]["veth"]["up"] is True
    result = run(host, vm, **VM)
    assert result["changed"] is True and result["veth"]["up"] is True
    assert up(link(host.name, "tap1")) and up(link(vm, "tap2")) and up(link(vm, "lo"))


def test_absent_then_namespace_absent(host, vmns):
    vm = vmns()
    run(host, vm, **VM)
    host_before, vm_before = state_dump(host.name), state_dump(vm)

    check = run(host, vm, check=True, name="tap1", state="absent")
    assert check["changed"] is True and check["diff"]["after"]["veth"] == {}
    assert check["diff"]["before"]["veth"]["peer"] == "tap2"
    assert_unchanged((host_before, vm_before), (state_dump(host.name), state_dump(vm)))

    result = run(host, vm, name="tap1", peer="tap2", state="absent")
    assert result["changed"] is True and result["veth"] == {} and result["namespace_exists"] is True
    assert link(host.name, "tap1") is None and link(vm, "tap2") is None
    assert vm in netns.listnetns(), "namespace_state defaults to present"
    assert run(host, vm, name="tap1", state="absent")["changed"] is False

    check = run(host, vm, check=True, name="tap1", state="absent", namespace_state="absent")
    assert check["changed"] is True and vm in netns.listnetns()
    gone = run(host, vm, name="tap1", state="absent", namespace_state="absent")
    assert gone["changed"] is True and gone["namespace_exists"] is False
    assert vm not in netns.listnetns()
    assert run(host, vm, name="tap1", state="absent", namespace_state="absent")["changed"] is False


def test_pair_and_namespace_removed_in_one_task(host, vmns):
    vm = vmns()
    run(host, vm, **VM)
    result = run(host, vm, name="tap1", state="absent", namespace_state="absent")
    assert result["changed"] is True and vm not in netns.listnetns() and link(host.name, "tap1") is None


def test_namespace_holding_other_interfaces_is_kept(host, vmns):
    vm = vmns()
    run(host, vm, **VM)
    ns_exec(vm, "ip", "link", "add", "other0", "type", "veth", "peer", "name", "other1")
    result = run(host, vm, name="tap1", state="absent", namespace_state="absent")
    assert result["changed"] is True and result["namespace_exists"] is True
    assert "still holds other0, other1; it is kept" in str(result.get("warnings")), result.get("warnings")
    assert vm in netns.listnetns() and link(vm, "other0") is not None and link(host.name, "tap1") is None


def test_host_end_paired_elsewhere_is_refused(host, vmns):
    vm, elsewhere = vmns(create=True), vmns(create=True)
    ns_exec(host.name, "ip", "link", "add", "tap1", "type", "veth", "peer", "name", "tap2")
    ns_exec(host.name, "ip", "link", "add", "tap3", "type", "veth", "peer", "name", "tap4", "netns", elsewhere)
    dumps = [state_dump(n) for n in (host.name, vm, elsewhere)]
    cases = [
        ("tap1", "present", "tap2 in the same namespace"),
        ("tap1", "absent", "tap2 in the same namespace"),
        ("tap3", "present", "tap4 in namespace %s" % elsewhere),
        ("tap3", "absent", "tap4 in namespace %s" % elsewhere),
    ]
    for name, state, where in cases:
        result = run(host, vm, name=name, peer="tap2", state=state)
        assert result.get("failed") is True and result["changed"] is False, result
        assert "name=%r" % name in result["msg"] and where in result["msg"] and "not in namespace %s" % vm in result["msg"], result["msg"]
        assert_unchanged(dumps, [state_dump(n) for n in (host.name, vm, elsewhere)])


def test_existing_names_that_are_not_ours_are_refused(host, vmns):
    vm = vmns(create=True)
    ns_exec(vm, "ip", "link", "add", "tap2", "type", "bridge")
    dumps = (state_dump(host.name), state_dump(vm))
    cases = [
        ({"name": "br1", "peer": "tap9"}, "name='br1'", "is a bridge, not a veth"),
        ({"name": "tap1", "peer": "tap2"}, "peer='tap2'", "already exists in namespace %s (a bridge" % vm),
    ]
    for args, field, reason in cases:
        result = run(host, vm, **args)
        assert result.get("failed") is True and result["changed"] is False
        assert field in result["msg"] and reason in result["msg"], result["msg"]
        assert_unchanged(dumps, (state_dump(host.name), state_dump(vm)))


def test_peer_of_another_name_is_not_renamed(host, vmns):
    vm = vmns()
    run(host, vm, name="tap1", peer="tap2")
    dumps = (state_dump(host.name), state_dump(vm))
    for state in ("present", "absent"):
        result = run(host, vm, name="tap1", peer="tap3", state=state)
        assert result.get("failed") is True and "peer='tap3'" in result["msg"] and "is tap2" in result["msg"], result["msg"]
        assert_unchanged(dumps, (state_dump(host.name), state_dump(vm)))


def test_kernel_refusal_after_creating_the_pair_rolls_it_back(host, vmns):
    """IPv6 disabled in the VM namespace: the pair is created, its IPv4 address added, the IPv6
    one refused; the run undoes everything, leaving no veth on either side."""
    vm = vmns(create=True)
    ns_exec(vm, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
    dumps = (state_dump(host.name), state_dump(vm))
    result = run(host, vm, **VM)
    assert result.get("failed") is True and result["changed"] is False, result
    assert "kernel refused setting the addresses of tap2" in result["msg"], result["msg"]
    assert "rolled back" in result["msg"] and "ROLLBACK INCOMPLETE" not in result["msg"], result["msg"]
    assert "Traceback" not in result["_stderr"]
    assert link(host.name, "tap1") is None and link(vm, "tap2") is None
    assert_unchanged(dumps, (state_dump(host.name), state_dump(vm)))
    assert vm in netns.listnetns(), "a namespace this run did not create is kept"


def test_kernel_refusal_removes_the_namespace_this_run_created(host, vmns):
    """br1 has no free port number left (1023 ports): the run creates the namespace and the
    pair, the kernel refuses to attach tap1 (EXFULL); the pair and the namespace are undone."""
    batch = "".join("link add vx%d type vxlan id %d dstport 4789 local 192.0.2.1\nlink set vx%d master br1\n" % (i, i, i) for i in range(1, 1023))
    filled = subprocess.run(["ip", "-n", host.name, "-batch", "-"], input=batch, capture_output=True, text=True)
    assert filled.returncode == 0, filled.stderr
    vm = vmns()
    before = state_dump(host.name)
    result = run(host, vm, **VM)
    assert result.get("failed") is True and result["changed"] is False, result
    assert "kernel refused attaching tap1 to br1" in result["msg"] and "EXFULL" in result["msg"], result["msg"]
    assert "rolled back 2 earlier change(s)" in result["msg"] and "ROLLBACK INCOMPLETE" not in result["msg"], result["msg"]
    assert vm not in netns.listnetns(), "the namespace this run created is removed again"
    assert link(host.name, "tap1") is None
    assert_unchanged(before, state_dump(host.name))


def test_kernel_refusal_while_changing_restores_the_pair(host, vmns):
    vm = vmns()
    run(host, vm, **dict(VM, addresses=["100.0.0.2/24"]))
    ns_exec(vm, "sysctl", "-qw", "net.ipv6.conf.tap2.disable_ipv6=1")
    dumps = (state_dump(host.name), state_dump(vm))
    result = run(host, vm, **dict(VM, master="br2", mtu=1400, addresses=["100.0.0.3/24", "fd00:100::3/64"]))
    assert result.get("failed") is True and result["changed"] is False, result
    assert "rolled back 4 earlier change(s)" in result["msg"] and "ROLLBACK INCOMPLETE" not in result["msg"], result["msg"]
    assert_unchanged(dumps, (state_dump(host.name), state_dump(vm)))


BAD_INPUTS = [
    ({"name": "tap-0123456789ab"}, "name", "tap-0123456789ab"),
    ({"name": "tap/1"}, "name", "tap/1"),
    ({"name": "tap 1"}, "name", "tap 1"),
    ({"name": ""}, "name", "''"),
    ({"name": "tap%d"}, "name", "tap%d"),
    ({"name": "tap$1"}, "name", "tap$1"),  # names reach shell commands: the safe-name rule
    ({"peer": "-tap2"}, "peer", "-tap2"),
    ({"peer": "tap-0123456789ab"}, "peer", "tap-0123456789ab"),
    ({"peer": "tap:2"}, "peer", "tap:2"),
    ({"peer": "lo"}, "peer", "lo"),
    ({"peer": " "}, "peer", "''"),
    ({"namespace": ""}, "namespace", "''"),
    ({"namespace": "ns/1"}, "namespace", "ns/1"),
    ({"namespace": "ns 1"}, "namespace", "ns 1"),
    ({"namespace": "/run/netns/ns1"}, "namespace", "/run/netns/ns1"),
    ({"addresses": ["100.0.0.300/24"]}, "addresses[0]", "100.0.0.300/24"),
    ({"addresses": ["100.0.0.2"]}, "addresses[0]", "100.0.0.2"),
    ({"addresses": ["100.0.0.2/33"]}, "addresses[0]", "100.0.0.2/33"),
    ({"addresses": ["vm-address/24"]}, "addresses[0]", "vm-address/24"),
    ({"addresses": [""]}, "addresses[0]", "''"),
    ({"addresses": ["100.0.0.2/24", "224.0.0.1/4"]}, "addresses[1]", "224.0.0.1/4"),
    ({"addresses": ["fe80::2/64"]}, "addresses[0]", "fe80::2/64"),
    ({"addresses": ["::1/128"]}, "addresses[0]", "::1/128"),
    ({"addresses": ["100.0.0.2/24", "100.0.0.2/25"]}, "addresses[1]", "100.0.0.2/25"),
    ({"addresses": ["fd00::2/64", "FD00:0::2/64"]}, "addresses[1]", "FD00:0::2/64"),
    ({"mac": "01:00:5e:00:00:01"}, "mac", "01:00:5e:00:00:01"),
    ({"mac": "ff:ff:ff:ff:ff:ff"}, "mac", "ff:ff:ff:ff:ff:ff"),
    ({"mac": "00:00:00:00:00:00"}, "mac", "00:00:00:00:00:00"),
    ({"mac": "02:00:64:00:00"}, "mac", "02:00:64:00:00"),
    ({"mac": ""}, "mac", "''"),
    ({"mtu": 0}, "mtu", "0"),
    ({"mtu": 65536}, "mtu", "65536"),
    ({"mtu": 1000, "addresses": ["100.0.0.2/24", "fd00::2/64"]}, "mtu", "1000"),
    ({"master": "br9"}, "master", "br9"),
    ({"master": "eth0"}, "master", "eth0"),
    ({"master": "br-0123456789abc"}, "master", "br-0123456789abc"),
    ({"netns": "ovxt-missing-ns"}, "netns", "ovxt-missing-ns"),
    ({"netns": ""}, "netns", "''"),
    ({"namespace_state": "absent"}, "namespace_state", "absent"),
    ({"peer": None}, "peer", "state is present"),
]


@pytest.mark.parametrize("args,field,value", BAD_INPUTS, ids=["%s=%r" % (f, v) for _a, f, v in BAD_INPUTS])
def test_bad_input_fails_cleanly(host, vmns, args, field, value):
    vm = vmns()
    full = dict({"netns": host.name, "namespace": vm, "name": "tap1", "peer": "tap2", "master": "br1"}, **args)
    full = {k: val for k, val in full.items() if val is not None}
    before = state_dump(host.name)
    result = run_module(MODULE, full)
    assert result.get("failed") is True, result
    assert result.get("changed", False) is False  # Ansible's own argument checks omit the key
    assert field in result["msg"] and value in result["msg"], result["msg"]
    assert "Traceback" not in result["_stderr"] and "exception" not in result, result
    assert_unchanged(before, state_dump(host.name))
    assert vm not in netns.listnetns(), "the VM namespace was created despite bad input"


@pytest.mark.parametrize("template", ["-{}", ".{}", "{};true", "{}$(id)", "{}`id`", "{}..x"])
def test_unsafe_namespace_name_is_refused_and_nothing_is_created(host, template):
    """A VM namespace is a file under /run/netns and a word in shell commands (ip netns exec, the
    verify role's ping matrix): a name an option, a path or a shell would read differently is refused."""
    name = template.format(unique("ovxt-vm"))
    try:
        before = state_dump(host.name)
        result = run_module(MODULE, {"netns": host.name, "namespace": name, "name": "tap1", "peer": "tap2"})
        assert result.get("failed") is True and result["changed"] is False, result
        assert "namespace=%r: is not a valid namespace name: " % name in result["msg"], result["msg"]
        assert "Traceback" not in result["_stderr"]
        assert_unchanged(before, state_dump(host.name))
        assert name not in netns.listnetns(), "the namespace was created"
    finally:
        if name in netns.listnetns():
            netns.remove(name)


def test_namespace_equal_to_netns_is_refused(host):
    before = state_dump(host.name)
    result = run_module(MODULE, {"netns": host.name, "namespace": host.name, "name": "tap1", "peer": "tap2"})
    assert result.get("failed") is True and "namespace=%r" % host.name in result["msg"], result
    assert_unchanged(before, state_dump(host.name))


@pytest.mark.parametrize("field", ["namespace", "netns"])
def test_namespace_file_that_is_not_a_namespace_is_refused(host, field):
    with stale_netns_file() as stale:
        vm = unique("ovxt-vm")
        args = {"netns": host.name, "namespace": vm, "name": "tap1", "peer": "tap2", field: stale}
        before = state_dump(host.name)
        result = run_module(MODULE, args)
        assert result.get("failed") is True and result["changed"] is False, result
        assert "%s=%r: cannot be entered" % (field, stale) in result["msg"], result["msg"]
        assert "Traceback" not in result["_stderr"]
        assert_unchanged(before, state_dump(host.name))
        assert vm not in netns.listnetns()


def test_check_mode_assumes_a_missing_master_is_created_earlier(host, vmns):
    """A role creates the bridge first; check mode then has no bridge to look at. It goes on,
    warns, predicts the pair in that bridge, and creates nothing (the real run refuses it:
    test_bad_input_fails_cleanly)."""
    vm = vmns()
    before = state_dump(host.name)
    result = run(host, vm, check=True, name="tap1", peer="tap2", master="br9", addresses=["100.0.0.2/24"])
    assert not result.get("failed") and result["changed"] is True, result
    assert any("check mode: master=br9 does not exist yet" in w for w in warning_texts(result)), result
    assert result["diff"]["after"]["veth"]["master"] == "br9", result["diff"]
    assert_unchanged(before, state_dump(host.name))
    assert vm not in netns.listnetns()
