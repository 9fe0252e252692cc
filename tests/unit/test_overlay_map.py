"""The whole-inventory check and endpoint map (module_utils/_overlay_map.py), as plain functions."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.overlay.vxlan.plugins.filter.mesh import compute_mesh
from ansible_collections.overlay.vxlan.plugins.module_utils import _overlay_map as om

ROOT = Path(__file__).resolve().parents[2]
BLUE = {"name": "blue", "vni": 100, "bridge": "br1", "vxlan_dev": "vxlan0", "dstport": 4789, "group": "239.1.1.1"}
RED = {"name": "red", "vni": 200, "bridge": "br2", "vxlan_dev": "vxlan1", "dstport": 4789, "group": "239.1.1.2"}


def vm(n: int, **extra) -> dict:
    return dict({"network": "blue", "namespace": "ns1", "host_if": "tap1", "vm_if": "tap2", "address": "100.0.0.%d/24" % (n + 1)}, **extra)


def source_hosts(count: int = 3) -> dict:
    """The source's hosts as hostvars would give them (group variables repeated on each host)."""
    return {"h%d" % n: {"vxlan_underlay_ip": "192.168.1.%d" % (n + 1), "vxlan_underlay_dev": "eth0", "vxlan_mode": "static",
                        "vxlan_networks": [dict(BLUE)], "vxlan_endpoints": [vm(n)]} for n in range(1, count + 1)}


def problems_of(hosts: dict) -> list[str]:
    overlay_map, problems = om.build(hosts)
    json.dumps(overlay_map)  # the map is plain data, whatever the input
    return problems


def with_all(hosts: dict, **variables) -> dict:
    for host in hosts.values():
        host.update(copy.deepcopy(variables))
    return hosts


def test_the_source_inventory_is_sound_and_mapped():
    overlay_map, problems = om.build(source_hosts())
    assert problems == []
    assert overlay_map["hosts"]["h2"] == {"underlay_ip": "192.168.1.3", "family": 4, "underlay_dev": "eth0", "underlay_mtu": 1500,
                                          "overlay_mtu": 1450, "mode": "static", "svi": {"blue": ["100.0.0.253/24"]}, "svi_problems": []}
    blue = overlay_map["networks"]["blue"]
    assert (blue["vni"], blue["subnet"], blue["family"], blue["vteps"]) == (100, "100.0.0.0/24", 4, ["192.168.1.2", "192.168.1.3", "192.168.1.4"])
    assert blue["endpoints"][0] == {"host": "h1", "vtep": "192.168.1.2", "network": "blue", "namespace": "ns1", "host_if": "tap1",
                                    "vm_if": "tap2", "address": "100.0.0.2/24", "ip": "100.0.0.2", "mac": "02:00:64:00:00:02"}


def test_role_defaults_apply_to_variables_left_out():
    hosts = source_hosts()
    for host in hosts.values():
        del host["vxlan_underlay_dev"], host["vxlan_mode"]
    overlay_map, problems = om.build(hosts)
    assert problems == [] and overlay_map["hosts"]["h1"]["underlay_dev"] == "eth0" and overlay_map["hosts"]["h1"]["mode"] == "static"


@pytest.mark.parametrize("count", [3, 12])
def test_each_hosts_share_is_what_the_mesh_filter_computes(count):
    hosts = source_hosts(count)
    hosts["h1"]["vxlan_endpoints"].append(dict(vm(1), network="red", namespace="ns2", host_if="tap3", vm_if="tap4", address="100.0.0.40/24"))
    hosts["h3"]["vxlan_endpoints"].append(dict(vm(3), network="red", namespace="ns2", host_if="tap3", vm_if="tap4", address="100.0.0.42/24",
                                               mac="02:AA:00:00:00:01"))
    with_all(hosts, vxlan_networks=[BLUE, RED])
    overlay_map, problems = om.build(hosts)
    assert problems == []
    for host in hosts:
        # One builder: the mesh filter's plain function returns the map's share, bridge addresses included.
        assert om.host_share(overlay_map, host) == compute_mesh(hosts, [BLUE, RED], host), host


def test_the_repository_inventories_are_sound():
    for inventory in ("inventories/lab", "inventories/multi", "inventories/example"):
        proc = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i", inventory, "--list"], cwd=ROOT,
                              capture_output=True, text=True, check=True)
        data = json.loads(proc.stdout)
        hostvars = data["_meta"]["hostvars"]
        hosts = {h: {k: val for k, val in hostvars[h].items() if k in om.VARIABLES} for h in data["overlay"]["hosts"]}
        assert problems_of(hosts) == [], inventory


# Each bad input: how to spoil the source inventory, and what the one problem must say (host, variable, value).
def _set(host, key, value):
    return lambda hosts: hosts[host].__setitem__(key, value)


def _vm(host, **fields):
    return lambda hosts: hosts[host]["vxlan_endpoints"][0].update(fields)


def _net(**fields):
    return lambda hosts: with_all(hosts, vxlan_networks=[dict(BLUE, **fields)])


def _del_vm(host, key):
    return lambda hosts: hosts[host]["vxlan_endpoints"][0].pop(key)


BAD = {
    "vni abc": (_net(vni="abc"), "hosts h1, h2, h3: vxlan_networks[0] (blue).vni='abc': must be an integer"),
    "vni 0": (_net(vni=0), "vxlan_networks[0] (blue).vni=0: must be between 1 and 16777215"),
    "vni 16777216": (_net(vni=16777216), "vxlan_networks[0] (blue).vni=16777216: must be between 1 and 16777215"),
    "vni true": (_net(vni=True), "vxlan_networks[0] (blue).vni=True: must be an integer"),
    "port 0": (_net(dstport=0), "vxlan_networks[0] (blue).dstport=0: must be between 1 and 65535"),
    "port 65536": (_net(dstport=65536), "vxlan_networks[0] (blue).dstport=65536: must be between 1 and 65535"),
    "unicast group": (_net(group="10.1.1.1"), "(blue).group='10.1.1.1': is not a multicast address"),
    "ipv6 group, ipv4 underlay": (_net(group="ff05::1"), "hosts h1, h2, h3: vxlan_networks[0] (blue).group='ff05::1': is IPv6 but the "
                                  "network's underlay (vxlan_underlay_ip) is IPv4"),
    "empty group": (_net(group=""), "(blue).group='': is empty"),
    "bridge 16 chars": (_net(bridge="br-0123456789abc"), "(blue).bridge='br-0123456789abc': is 16 characters"),
    "bridge with space": (_net(bridge="br 1"), "(blue).bridge='br 1': contains ' '"),
    "vxlan_dev with colon": (_net(vxlan_dev="vx:0"), "(blue).vxlan_dev='vx:0': contains ':'"),
    "vxlan_dev with percent": (_net(vxlan_dev="vx%d"), "(blue).vxlan_dev='vx%d': contains '%'"),
    "network without name": (_net(name=""), "vxlan_networks[0].name='': is empty"),
    "networks as a string": (lambda h: with_all(h, vxlan_networks="blue"), "hosts h1, h2, h3: vxlan_networks='blue': must be a list"),
    "network as a string": (lambda h: with_all(h, vxlan_networks=["blue"]), "vxlan_networks[0]='blue': must be a dict"),
    "multicast without group": (lambda h: with_all(h, vxlan_mode="multicast", vxlan_networks=[{k: val for k, val in BLUE.items() if k != "group"}]),
                                "hosts h1, h2, h3: vxlan_mode='multicast': network blue has no group"),
    "unknown mode": (lambda h: with_all(h, vxlan_mode="bgp"), "hosts h1, h2, h3: vxlan_mode=bgp: choose one of multicast, flood, static, dove, evpn"),
    "ttl 256": (lambda h: with_all(h, vxlan_ttl=256), "hosts h1, h2, h3: vxlan_ttl=256: must be between 0 and 255"),
    "duplicate underlay ip": (_set("h2", "vxlan_underlay_ip", "192.168.1.2"), "hosts h1, h2: vxlan_underlay_ip='192.168.1.2': the same VTEP"),
    "underlay ip missing": (lambda h: h["h2"].pop("vxlan_underlay_ip"), "host h2: vxlan_underlay_ip=None: is required"),
    "underlay ip empty": (_set("h2", "vxlan_underlay_ip", ""), "host h2: vxlan_underlay_ip='': is empty"),
    "underlay ip multicast": (_set("h2", "vxlan_underlay_ip", "239.1.1.9"), "host h2: vxlan_underlay_ip='239.1.1.9': must be a unicast"),
    "underlay ip with prefix": (_set("h2", "vxlan_underlay_ip", "192.168.1.3/24"), "host h2: vxlan_underlay_ip='192.168.1.3/24': is not an IPv4"),
    "mixed families": (_set("h3", "vxlan_underlay_ip", "fd00::4"), "host h3: vxlan_underlay_ip='fd00::4': is IPv6 but network blue's other VTEPs "
                       "(h1, h2) are IPv4"),
    "underlay dev 16 chars": (_set("h1", "vxlan_underlay_dev", "eth0-0123456789a"), "host h1: vxlan_underlay_dev='eth0-0123456789a': is 16"),
    "underlay dev empty": (lambda h: with_all(h, vxlan_underlay_dev=""), "hosts h1, h2, h3: vxlan_underlay_dev='': is empty"),
    "mtu abc": (lambda h: with_all(h, vxlan_underlay_mtu="abc"), "hosts h1, h2, h3: vxlan_underlay_mtu='abc': must be an integer"),
    "mtu under 1280": (lambda h: with_all(h, vxlan_underlay_mtu=1329), "hosts h1, h2, h3: vxlan_underlay_mtu=1329: leaves an overlay MTU of 1279 "
                       "over IPv4 (1329 - 50)"),
    "duplicate vm ip": (_vm("h2", address="100.0.0.2/24"), "host h2: vxlan_endpoints[0].address='100.0.0.2/24': network blue: VM address "
                        "100.0.0.2 is also h1's vxlan_endpoints[0]"),
    "duplicate mac": (_vm("h2", mac="02:00:64:00:00:02"), "host h2: vxlan_endpoints[0].mac='02:00:64:00:00:02': network blue: VM MAC "
                      "02:00:64:00:00:02 is also h1's"),
    "upper-case mac duplicate": (_vm("h1", mac="02:00:64:00:00:03".upper()), "host h2: vxlan_endpoints[0].address='100.0.0.3/24': network blue: "
                                 "its derived MAC 02:00:64:00:00:03 is also h1's vxlan_endpoints[0]"),
    "multicast mac": (_vm("h1", mac="03:00:00:00:00:01"), "host h1: vxlan_endpoints[0].mac='03:00:00:00:00:01': is a multicast"),
    "zero mac": (_vm("h1", mac="00:00:00:00:00:00"), "host h1: vxlan_endpoints[0].mac='00:00:00:00:00:00': the all-zero MAC"),
    "malformed mac": (_vm("h1", mac="02:00:64:00:00"), "host h1: vxlan_endpoints[0].mac='02:00:64:00:00': is not a MAC"),
    "empty mac": (_vm("h1", mac=""), "host h1: vxlan_endpoints[0].mac='': is empty"),
    "vm outside subnet": (_vm("h3", address="10.0.0.4/24"), "host h3: vxlan_endpoints[0].address='10.0.0.4/24': is outside 100.0.0.0/24, the "
                          "subnet of network blue's other VMs (h1, h2)"),
    "vm other prefix": (_vm("h3", address="100.0.0.4/25"), "host h3: vxlan_endpoints[0].address='100.0.0.4/25': is outside 100.0.0.0/24"),
    "vm broadcast address": (_vm("h3", address="100.0.0.255/24"), "host h3: vxlan_endpoints[0].address='100.0.0.255/24': is the network or "
                             "broadcast"),
    "vm without prefix": (_vm("h3", address="100.0.0.4"), "host h3: vxlan_endpoints[0].address='100.0.0.4': needs a prefix length"),
    "missing address": (_del_vm("h1", "address"), "host h1: vxlan_endpoints[0].address=None: is required"),
    "unknown network": (_vm("h2", network="green"), "host h2: vxlan_endpoints[0].network='green': no such network in vxlan_networks (it has blue)"),
    "host_if 16 chars": (_vm("h1", host_if="tap1-0123456789a"), "host h1: vxlan_endpoints[0].host_if='tap1-0123456789a': is 16 characters"),
    "vm_if with slash": (_vm("h1", vm_if="tap/2"), "host h1: vxlan_endpoints[0].vm_if='tap/2': contains '/'"),
    "namespace with space": (_vm("h1", namespace="ns 1"), "host h1: vxlan_endpoints[0].namespace='ns 1': is not a valid namespace name"),
    "empty namespace": (_vm("h1", namespace=""), "host h1: vxlan_endpoints[0].namespace='': is empty"),
    # Names reach paths (/run/netns/<name>) and shell commands: the safe-name rule.
    "namespace like an option": (_vm("h1", namespace="-ns1"), "host h1: vxlan_endpoints[0].namespace='-ns1': is not a valid namespace "
                                 "name: starts with '-' (a name may have only letters, digits, '_', '.' and '-'"),
    "namespace with a command": (_vm("h2", namespace="ns1;reboot"), "host h2: vxlan_endpoints[0].namespace='ns1;reboot': is not a valid "
                                 "namespace name: contains ';'"),
    "namespace going up": (_vm("h2", namespace="../ns1"), "host h2: vxlan_endpoints[0].namespace='../ns1': is not a valid namespace "
                           "name: starts with '.'"),
    "namespace as a path": (_vm("h3", namespace="/run/netns/ns1"), "host h3: vxlan_endpoints[0].namespace='/run/netns/ns1': is not a valid "
                            "namespace name: a path"),
    "host_if with a dollar": (_vm("h1", host_if="tap$1"), "host h1: vxlan_endpoints[0].host_if='tap$1': contains '$' (a name may have only"),
    "vm_if like an option": (_vm("h1", vm_if="-tap2"), "host h1: vxlan_endpoints[0].vm_if='-tap2': starts with '-'"),
    "bridge with a backquote": (_net(bridge="br`id`"), "hosts h1, h2, h3: vxlan_networks[0] (blue).bridge='br`id`': contains '`'"),
    "underlay dev with a quote": (_set("h2", "vxlan_underlay_dev", "eth0'"), "host h2: vxlan_underlay_dev=\"eth0'\": contains \"'\""),
    "host_if is the bridge": (_vm("h1", host_if="br1"), "host h1: vxlan_endpoints[0].host_if='br1': is the name of the bridge of network blue"),
    "host_if is the underlay": (_vm("h1", host_if="eth0"), "host h1: vxlan_endpoints[0].host_if='eth0': is the name of the underlay device"),
    "endpoints as a string": (_set("h2", "vxlan_endpoints", "ns1"), "host h2: vxlan_endpoints='ns1': must be a list"),
    "endpoint as a string": (_set("h2", "vxlan_endpoints", ["ns1"]), "host h2: vxlan_endpoints[0]='ns1': must be a dict"),
    "same endpoint twice": (lambda h: h["h1"]["vxlan_endpoints"].append(vm(1)), "host h1: vxlan_endpoints[1]="),
    "cannot be evaluated": (_set("h2", "vxlan_underlay_ip", om.Unreadable("'nope' is undefined")),
                            "host h2: vxlan_underlay_ip cannot be evaluated: 'nope' is undefined"),
    # Keys the roles would ignore without a word: a tired operator's typo.
    "endpoint key misspelt": (_vm("h1", adress="100.0.0.9/24"), "host h1: vxlan_endpoints[0].adress='100.0.0.9/24': is not a key of an "
                              "endpoint (network, namespace, host_if, vm_if, address, mac); did you mean address?"),
    "endpoint key of another word": (_vm("h1", mac_address="02:00:00:00:00:09"), "host h1: vxlan_endpoints[0].mac_address='02:00:00:00:00:09': "
                                     "is not a key of an endpoint (network, namespace, host_if, vm_if, address, mac)"),
    "network key misspelt": (_net(goup="239.1.1.1"), "hosts h1, h2, h3: vxlan_networks[0] (blue).goup='239.1.1.1': is not a key of a network "
                             "(name, vni, bridge, vxlan_dev, dstport, group); did you mean group?"),
    "bridge named as the underlay": (_net(bridge="eth0"), "hosts h1, h2, h3: vxlan_underlay_dev='eth0': is also the name of the bridge of "
                                     "network blue; the overlay would take over the underlay device"),
    "vxlan_dev named as one host's underlay": (lambda h: (_net(vxlan_dev="eth1")(h), h["h2"].update(vxlan_underlay_dev="eth1")),
                                               "host h2: vxlan_underlay_dev='eth1': is also the name of the VXLAN device of network blue"),
    "networks differ": (lambda h: h["h3"].update(vxlan_networks=[dict(BLUE, vni=101)]),
                        "host h3: vxlan_networks=[{'name': 'blue', 'vni': 101"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_one_bad_input_is_one_named_problem(case):
    spoil, expected = BAD[case]
    hosts = source_hosts()
    spoil(hosts)
    problems = problems_of(hosts)
    assert len(problems) == 1 and expected in problems[0], problems


def test_same_endpoint_twice_names_the_first():
    hosts = source_hosts()
    hosts["h1"]["vxlan_endpoints"].append(vm(1))
    assert problems_of(hosts) == ["host h1: vxlan_endpoints[1]=%r: the same endpoint as vxlan_endpoints[0]; list each VM once" % vm(1)]


def test_two_vms_of_one_host_cannot_share_a_link():
    hosts = source_hosts()
    hosts["h1"]["vxlan_endpoints"].append(vm(1, address="100.0.0.20/24", vm_if="tap9"))
    hosts["h2"]["vxlan_endpoints"].append(vm(2, address="100.0.0.30/24", host_if="tap9"))
    assert problems_of(hosts) == ["host h1: vxlan_endpoints[1].host_if='tap1': already used by vxlan_endpoints[0].host_if on this host",
                                  "host h2: vxlan_endpoints[1].vm_if='tap2': already used by vxlan_endpoints[0].vm_if on this host"]


def test_networks_must_not_share_names_vnis_or_devices():
    hosts = with_all(source_hosts(), vxlan_networks=[BLUE, dict(RED, vni=100), dict(RED, name="green", vni=300, bridge="vxlan0"),
                                                     dict(RED, name="blue", vni=400, bridge="br4", vxlan_dev="vxlan4")])
    problems = problems_of(hosts)
    assert problems == [
        "hosts h1, h2, h3: vxlan_networks[3] (blue)='blue': name already used by vxlan_networks[0] (blue); each network needs its own",
        "hosts h1, h2, h3: vxlan_networks[1] (red).vni=100: VNI already used by vxlan_networks[0] (blue).vni; each network needs its own",
        "hosts h1, h2, h3: vxlan_networks[2] (green).bridge='vxlan0': link name already used by vxlan_networks[0] (blue).vxlan_dev; "
        "each network needs its own",
        "hosts h1, h2, h3: vxlan_networks[2] (green).vxlan_dev='vxlan1': link name already used by vxlan_networks[1] (red).vxlan_dev; "
        "each network needs its own",
    ]


def test_every_problem_is_listed_at_once():
    hosts = source_hosts()
    hosts["h2"]["vxlan_underlay_ip"] = "192.168.1.2"
    hosts["h3"]["vxlan_endpoints"][0]["address"] = "10.0.0.4/24"
    hosts["h1"]["vxlan_endpoints"][0]["mac"] = "ff:ff:ff:ff:ff:ff"
    with_all(hosts, vxlan_underlay_mtu=1300)
    problems = problems_of(hosts)
    assert len(problems) == 4, problems
    message = om.report(problems)
    assert message.startswith("The overlay inventory has 4 problems; no host has been changed:\n- ")
    for text in ("vxlan_underlay_ip='192.168.1.2'", "address='10.0.0.4/24'", "mac='ff:ff:ff:ff:ff:ff'", "vxlan_underlay_mtu=1300"):
        assert text in message


def test_ipv6_underlay_needs_70_bytes_and_an_ipv6_group():
    hosts = source_hosts()
    for n, host in enumerate(hosts.values(), start=2):
        host["vxlan_underlay_ip"] = "fd00::%d" % n
    with_all(hosts, vxlan_underlay_mtu=1349, vxlan_networks=[dict(BLUE, group="ff05::1")])
    assert problems_of(hosts) == ["hosts h1, h2, h3: vxlan_underlay_mtu=1349: leaves an overlay MTU of 1279 over IPv6 (1349 - 70); at least "
                                  "1280 is needed (IPv6's minimum: below it VMs lose their IPv6 addresses)"]
    with_all(hosts, vxlan_underlay_mtu=1350)
    overlay_map, problems = om.build(hosts)
    assert problems == [] and overlay_map["networks"]["blue"]["family"] == 6 and overlay_map["hosts"]["h1"]["overlay_mtu"] == 1280


def test_a_large_fleet_names_a_few_hosts_and_the_count():
    hosts = with_all(source_hosts(40), vxlan_underlay_mtu=1000)
    for n, host in enumerate(hosts.values()):
        host["vxlan_endpoints"][0]["address"] = "100.0.%d.%d/16" % (n // 200, n % 200 + 2)
    (problem,) = problems_of(hosts)
    assert problem.startswith("hosts h1, h10, h11 and 37 more: vxlan_underlay_mtu=1000:")


def test_underlay_problems_name_what_the_host_has():
    overlay_map, _ = om.build(with_all(source_hosts(), vxlan_underlay_mtu=9000))
    eth0 = {"name": "eth0", "mtu": 1500, "addresses": ["192.168.1.2/24"]}
    lo = {"name": "lo", "mtu": 65536, "addresses": ["127.0.0.1/8"]}
    assert om.underlay_problems(overlay_map, "h1", {"eth0": eth0, "lo": lo}) == [
        "host h1: vxlan_underlay_mtu=9000: eth0 has MTU 1500; VXLAN devices, bridges and VMs would get 8950, more than it can carry"]
    assert om.underlay_problems(overlay_map, "h2", {"eth0": dict(eth0, mtu=9000), "eth1": {"addresses": ["192.168.1.3/24"]}}) == [
        "host h2: vxlan_underlay_ip='192.168.1.3': is not an address of eth0 (vxlan_underlay_dev), which has 192.168.1.2/24; it is on eth1"]
    assert om.underlay_problems(overlay_map, "h3", {"lo": lo}) == ["host h3: vxlan_underlay_dev='eth0': no such interface on the host (it has lo)"]
    assert om.underlay_problems(overlay_map, "h1", {"eth0": dict(eth0, mtu=9000)}) == []


def test_a_thousand_hosts_are_checked_in_well_under_a_second():
    hosts = source_hosts(1000)
    for n, host in enumerate(hosts.values()):
        host["vxlan_underlay_ip"] = "10.0.%d.%d" % (n // 250, n % 250 + 1)
        host["vxlan_endpoints"][0]["address"] = "100.0.%d.%d/16" % (n // 250, n % 250 + 1)
    start = time.perf_counter()
    overlay_map, problems = om.build(hosts)
    elapsed = time.perf_counter() - start
    assert problems == [] and len(overlay_map["networks"]["blue"]["endpoints"]) == 1000
    assert elapsed < 1.0, elapsed


def test_an_endpoint_with_a_bad_field_is_still_checked_against_the_others():
    hosts = source_hosts()
    hosts["h3"]["vxlan_endpoints"] = [vm(3, address="10.0.0.4/24", mac="FF:FF:FF:FF:FF:FF", vm_if="")]
    hosts["h2"]["vxlan_endpoints"] = [vm(1, host_if="x" * 16)]
    problems = problems_of(hosts)
    assert len(problems) == 5, problems
    for text in ("host h3: vxlan_endpoints[0].vm_if='': is empty", "host h3: vxlan_endpoints[0].mac='FF:FF:FF:FF:FF:FF'",
                 "host h3: vxlan_endpoints[0].address='10.0.0.4/24': is outside", "host h2: vxlan_endpoints[0].host_if='xxxxxxxxxxxxxxxx'",
                 "host h2: vxlan_endpoints[0].address='100.0.0.2/24': network blue: VM address 100.0.0.2 is also h1's"):
        assert any(text in problem for problem in problems), text


# --- EVPN: the bridges' own addresses (SVIs) -------------------------------------------------------

def svi_of(hosts: dict) -> dict:
    overlay_map, problems = om.build(hosts)
    assert problems == [], problems  # SVI problems are kept per host, reported in evpn mode only
    return {host: (entry["svi"], entry["svi_problems"]) for host, entry in overlay_map["hosts"].items()}


def test_svi_addresses_are_generated_from_the_top_of_the_subnet_in_host_order():
    hosts = source_hosts()
    assert svi_of(hosts) == {"h1": ({"blue": ["100.0.0.254/24"]}, []), "h2": ({"blue": ["100.0.0.253/24"]}, []),
                             "h3": ({"blue": ["100.0.0.252/24"]}, [])}
    overlay_map, _ = om.build(hosts)
    assert [net["bridge_addresses"] for net in om.host_share(overlay_map, "h3")] == [["100.0.0.252/24"]]
    # Only for the networks a host carries (its bridges): a host without VMs has none.
    hosts["h4"] = {"vxlan_underlay_ip": "192.168.1.5", "vxlan_networks": [dict(BLUE)], "vxlan_endpoints": []}
    assert svi_of(hosts)["h4"] == ({}, [])


def test_svi_addresses_given_per_host_ipv6_and_switched_off():
    hosts = source_hosts()
    hosts["h1"]["evpn_svi_addresses"] = {"blue": ["100.0.0.200/24", "2001:db8:100::fe/64"]}
    hosts["h2"]["evpn_svi_addresses"] = {"blue": "100.0.0.201/24"}
    hosts["h3"]["evpn_svi"] = "false"  # as -e gives it
    assert svi_of(hosts) == {"h1": ({"blue": ["100.0.0.200/24", "2001:db8:100::fe/64"]}, []), "h2": ({"blue": ["100.0.0.201/24"]}, []),
                             "h3": ({}, [])}


def test_ipv6_subnet_gets_ipv6_svi():
    hosts = source_hosts()
    for n, host in enumerate(sorted(hosts), start=2):
        hosts[host]["vxlan_endpoints"] = [vm(1, address="2001:db8:100::%d/64" % n)]
    assert svi_of(hosts)["h2"] == ({"blue": ["2001:db8:100:0:ffff:ffff:ffff:fffd/64"]}, [])


@pytest.mark.parametrize(("host", "variables", "problem"), [
    ("h2", {"evpn_svi_addresses": {"blue": "10.0.0.9/24"}},
     "host h2: evpn_svi_addresses.blue='10.0.0.9/24': is not in 100.0.0.0/24, the subnet of network blue's VMs"),
    ("h1", {"evpn_svi_addresses": {"blue": ["100.0.0.3/24"]}},
     "host h1: evpn_svi_addresses.blue='100.0.0.3/24': is the address of VM 100.0.0.3 (h2's vxlan_endpoints[0])"),
    ("h2", {"evpn_svi_addresses": {"blue": "100.0.0.254/24"}},
     "host h2: evpn_svi_addresses.blue='100.0.0.254/24': is already the bridge address of host h1 in network blue"),
    ("h1", {"evpn_svi_addresses": {"blue": "100.0.0.300/24"}}, "host h1: evpn_svi_addresses.blue='100.0.0.300/24'"),
    ("h1", {"evpn_svi_addresses": {"blue": "100.0.0.255/24"}},
     "host h1: evpn_svi_addresses.blue='100.0.0.255/24': is the network or broadcast address of 100.0.0.0/24"),
    ("h1", {"evpn_svi_addresses": {"blue": []}}, "host h1: evpn_svi_addresses.blue=[]: must be an address with its prefix"),
    ("h1", {"evpn_svi_addresses": {"green": "100.0.0.9/24"}},
     "host h1: evpn_svi_addresses.green='100.0.0.9/24': no such network in vxlan_networks (it has blue)"),
    ("h1", {"evpn_svi_addresses": "100.0.0.9/24"}, "host h1: evpn_svi_addresses='100.0.0.9/24': must map network names"),
    ("h1", {"evpn_svi": "maybe"}, "host h1: evpn_svi='maybe': must be a boolean"),
    ("h3", {"evpn_svi_addresses": {"blue": "fe80::1/64"}}, "host h3: evpn_svi_addresses.blue='fe80::1/64': is an IPv6 link-local address"),
])
def test_bad_svi_values_are_problems_of_the_host(host, variables, problem):
    hosts = source_hosts()
    hosts[host].update(variables)
    found = svi_of(hosts)[host][1]
    assert any(p.startswith(problem) for p in found), found


def test_generated_svi_that_is_a_vm_address_is_a_problem_and_a_full_subnet_too():
    hosts = source_hosts()
    hosts["h3"]["vxlan_endpoints"] = [vm(3, address="100.0.0.254/24")]
    assert svi_of(hosts)["h1"][1] == ["host h1: evpn_svi_addresses.blue (generated)='100.0.0.254/24': is the address of VM 100.0.0.254 "
                                      "(h3's vxlan_endpoints[0]); give this host's bridge another address"]
    small = source_hosts()
    for n, host in enumerate(sorted(small)):
        small[host]["vxlan_endpoints"] = [vm(1, address="100.0.0.%d/30" % (1 + n % 2))] if n < 2 else []
    small["h2"]["vxlan_endpoints"] = [vm(1, address="100.0.0.2/30")]
    # /30: two usable addresses, both VMs'; h2 (the second host) would take .1 = h1's VM.
    problems = svi_of(small)["h2"][1]
    assert problems and "is the address of VM 100.0.0.1" in problems[0], problems
