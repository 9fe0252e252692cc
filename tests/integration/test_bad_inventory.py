"""site.yml refuses a bad inventory before any host changes (playbooks/validate.yml).

One lab, converged once with site.yml (module scope); then every bad input is one run of
site.yml against it with `-e` or a second inventory source overriding some hosts' variables.
Each run must fail in the validate play, name host, variable and value, run no later play, and
leave every host's links, addresses, fdb, neighbours and VM namespaces exactly as they were.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml
from lab_fixtures import ANSIBLE_PLAYBOOK, DEFAULT_INVENTORY, ROOT, Lab, _destroy_all, _run, _strip, recap, unique_lab_name

SITE = ROOT / "site.yml"
VALIDATE = ROOT / "playbooks" / "validate.yml"
SOURCE_HOSTS = {"h1": "192.168.1.2", "h2": "192.168.1.3", "h3": "192.168.1.4"}
BLUE = {"name": "blue", "vni": 100, "bridge": "br1", "vxlan_dev": "vxlan0", "dstport": 4789, "group": "239.1.1.1"}
LATER_PLAYS = ("PLAY [Build the VXLAN overlay]", "PLAY [Verify the VXLAN overlay]")


def vm(n: int, **fields) -> dict:
    return dict({"network": "blue", "namespace": "ns1", "host_if": "tap1", "vm_if": "tap2", "address": "100.0.0.%d/24" % (n + 1)}, **fields)


def net(**fields) -> list[str]:
    return ["-e", json.dumps({"vxlan_networks": [dict(BLUE, **fields)]})]


def host_state(lab: Lab, host: str) -> dict:
    """Everything the collection could change on a lab host, volatile fields (counters, bridge
    timers, learned entries that age out) left out."""
    def js(*cmd, netns=None):
        out = lab.enter(host, *cmd, netns=netns).stdout
        return _strip(json.loads(out) if out.strip() else [])

    def no_timers(value):
        if isinstance(value, dict):
            return {k: no_timers(item) for k, item in value.items() if not k.endswith("_timer") and k != "tentative"}
        return [no_timers(item) for item in value] if isinstance(value, list) else value

    state = {
        "links": no_timers(js("ip", "-j", "-d", "link")),
        "addrs": no_timers(js("ip", "-j", "addr")),
        "fdb": [e for e in js("bridge", "-j", "fdb") if e.get("state")],  # dynamic (learned) entries age out
        "neigh": js("ip", "-j", "neigh", "show", "nud", "permanent"),
        "netns": {},
    }
    for line in lab.enter(host, "ip", "netns", "list").stdout.splitlines():
        name = line.split()[0]
        state["netns"][name] = {"links": no_timers(js("ip", "-j", "-d", "link", netns=name)),
                                "addrs": no_timers(js("ip", "-j", "addr", netns=name))}
    return state


def lab_state(lab: Lab) -> dict:
    return {host: host_state(lab, host) for host in SOURCE_HOSTS}


@pytest.fixture(scope="module")
def converged():
    """The source's 3-host lab, converged by site.yml once; (lab, its state)."""
    lab = Lab(unique_lab_name(), DEFAULT_INVENTORY, SOURCE_HOSTS)
    try:
        lab.create()
        proc = lab.playbook(SITE)
        assert "overlay MTU 1450 proven" in proc.stdout, proc.stdout[-3000:]
        state = lab_state(lab)
        assert state["h1"]["netns"]["ns1"]["addrs"] and any(e.get("dst") == "192.168.1.3" for e in state["h1"]["fdb"])
        yield lab, state
    finally:
        _destroy_all([lab])


def flat(text: str) -> str:
    """Whitespace-insensitive: the callback wraps long messages."""
    return " ".join(text.split())


# (extra arguments, host variables overridden by a second inventory source, texts the failure must show)
CASES = {
    "vni abc": (net(vni="abc"), {}, ["hosts h1, h2, h3: vxlan_networks[0] (blue).vni='abc': must be an integer"]),
    "vni 0": (net(vni=0), {}, ["hosts h1, h2, h3: vxlan_networks[0] (blue).vni=0: must be between 1 and 16777215"]),
    "vni 16777216": (net(vni=16777216), {}, ["vxlan_networks[0] (blue).vni=16777216: must be between 1 and 16777215"]),
    "port 0": (net(dstport=0), {}, ["hosts h1, h2, h3: vxlan_networks[0] (blue).dstport=0: must be between 1 and 65535"]),
    "port 65536": (net(dstport=65536), {}, ["vxlan_networks[0] (blue).dstport=65536: must be between 1 and 65535"]),
    "unicast group": (net(group="10.1.1.1"), {}, ["vxlan_networks[0] (blue).group='10.1.1.1': is not a multicast address"]),
    "ipv6 group on ipv4 underlay": (net(group="ff05::1"), {}, ["hosts h1, h2, h3: vxlan_networks[0] (blue).group='ff05::1': is IPv6 but the "
                                                               "network's underlay (vxlan_underlay_ip) is IPv4"]),
    "bridge name with a space": (net(bridge="br 1"), {}, ["vxlan_networks[0] (blue).bridge='br 1': contains ' '"]),
    "vxlan_networks as a string": (["-e", "vxlan_networks=blue"], {}, ["hosts h1, h2, h3: vxlan_networks='blue': must be a list of networks"]),
    "unknown mode": (["-e", "vxlan_mode=bgp"], {}, ["hosts h1, h2, h3: vxlan_mode=bgp: choose one of multicast, flood, static, dove, evpn"]),
    "evpn asn 0": (["-e", "vxlan_mode=evpn", "-e", "evpn_asn=0"], {},
                   ["h1: evpn_route_reflector_group=controller (1 host(s)), evpn_asn=0, evpn_router_id=192.168.1.2"]),
    # FRR 8.4 has no IPv6 VTEP: evpn on an IPv6 underlay is refused, naming the address.
    "evpn on an ipv6 underlay": (["-e", "vxlan_mode=evpn", "-e", "evpn_router_id=10.0.0.1", *net(group="ff05::1:1")],
                                 {h: {"vxlan_underlay_ip": "fd00::%d" % n} for n, h in enumerate(SOURCE_HOSTS, 2)},
                                 ["host h1: vxlan_underlay_ip='fd00::2': vxlan_mode=evpn needs an IPv4 underlay (VTEP) address: FRR "
                                  "has no IPv6 VTEP before 10.6", "host h3: vxlan_underlay_ip='fd00::4'"]),
    "evpn_vnis with a bad rd": (["-e", "vxlan_mode=evpn"], {"h2": {"evpn_vnis": [{"vni": 100, "rd": "65000"}]}},
                                ["host h2: evpn_vnis[0].rd='65000': must be auto, ASN:NN"]),
    # EVPN's bridge addresses (SVIs): checked in evpn mode, with every host's VMs in view.
    "evpn svi address outside the subnet": (["-e", "vxlan_mode=evpn"], {"h2": {"evpn_svi_addresses": {"blue": "10.0.0.9/24"}}},
                                            ["host h2: evpn_svi_addresses.blue='10.0.0.9/24': is not in 100.0.0.0/24, the subnet of "
                                             "network blue's VMs"]),
    "evpn svi address of a VM": (["-e", "vxlan_mode=evpn"], {"h1": {"evpn_svi_addresses": {"blue": ["100.0.0.3/24"]}}},
                                 ["host h1: evpn_svi_addresses.blue='100.0.0.3/24': is the address of VM 100.0.0.3 (h2's vxlan_endpoints[0])"]),
    "evpn_svi not a boolean": (["-e", "vxlan_mode=evpn", "-e", "evpn_svi=maybe"], {},
                               ["host h1: evpn_svi='maybe': must be a boolean", "host h3: evpn_svi='maybe': must be a boolean"]),
    "ttl 300": (["-e", "vxlan_ttl=300"], {}, ["hosts h1, h2, h3: vxlan_ttl='300': must be between 0 and 255"]),
    "duplicate underlay ip": ([], {"h2": {"vxlan_underlay_ip": "192.168.1.2"}},
                              ["hosts h1, h2: vxlan_underlay_ip='192.168.1.2': the same VTEP address on 2 hosts"]),
    "mixed families": ([], {"h3": {"vxlan_underlay_ip": "fd00::4"}},
                       ["host h3: vxlan_underlay_ip='fd00::4': is IPv6 but network blue's other VTEPs (h1, h2) are IPv4"]),
    "empty string from an undefined variable": ([], {"h2": {"vxlan_underlay_ip": "{{ no_such_variable | default('') }}"}},
                                                ["host h2: vxlan_underlay_ip='': is empty"]),
    "undefined variable": ([], {"h2": {"vxlan_underlay_ip": "{{ no_such_variable }}"}},
                           ["host h2: vxlan_underlay_ip cannot be evaluated", "no_such_variable"]),
    "duplicate vm ip": ([], {"h2": {"vxlan_endpoints": [vm(1)]}},
                        ["host h2: vxlan_endpoints[0].address='100.0.0.2/24': network blue: VM address 100.0.0.2 is also h1's vxlan_endpoints[0]"]),
    "duplicate mac": ([], {"h2": {"vxlan_endpoints": [vm(2, mac="02:00:64:00:00:02")]}},
                      ["host h2: vxlan_endpoints[0].mac='02:00:64:00:00:02': network blue: VM MAC 02:00:64:00:00:02 is also h1's"]),
    "upper-case mac equal to a derived one": ([], {"h1": {"vxlan_endpoints": [vm(1, mac="02:00:64:00:00:03".upper())]}},
                                              ["host h2: vxlan_endpoints[0].address='100.0.0.3/24': network blue: its derived MAC "
                                               "02:00:64:00:00:03 is also h1's vxlan_endpoints[0]"]),
    "multicast mac": ([], {"h1": {"vxlan_endpoints": [vm(1, mac="01:00:5e:00:00:01")]}},
                      ["host h1: vxlan_endpoints[0].mac='01:00:5e:00:00:01': is a multicast/broadcast MAC"]),
    "zero mac": ([], {"h1": {"vxlan_endpoints": [vm(1, mac="00:00:00:00:00:00")]}},
                 ["host h1: vxlan_endpoints[0].mac='00:00:00:00:00:00': the all-zero MAC"]),
    "vm outside its subnet": ([], {"h3": {"vxlan_endpoints": [vm(3, address="10.0.0.4/24")]}},
                              ["host h3: vxlan_endpoints[0].address='10.0.0.4/24': is outside 100.0.0.0/24, the subnet of network blue's "
                               "other VMs (h1, h2)"]),
    "missing address": ([], {"h1": {"vxlan_endpoints": [{k: val for k, val in vm(1).items() if k != "address"}]}},
                        ["host h1: vxlan_endpoints[0].address=None: is required"]),
    "unknown network": ([], {"h2": {"vxlan_endpoints": [vm(2, network="green")]}},
                        ["host h2: vxlan_endpoints[0].network='green': no such network in vxlan_networks (it has blue)"]),
    "interface name of 16 characters": ([], {"h1": {"vxlan_endpoints": [vm(1, host_if="tap1-0123456789a")]}},
                                        ["host h1: vxlan_endpoints[0].host_if='tap1-0123456789a': is 16 characters"]),
    "interface name with a slash": ([], {"h1": {"vxlan_endpoints": [vm(1, vm_if="tap/2")]}},
                                    ["host h1: vxlan_endpoints[0].vm_if='tap/2': contains '/'"]),
    "same endpoint twice": ([], {"h1": {"vxlan_endpoints": [vm(1), vm(1)]}},
                            ["host h1: vxlan_endpoints[1]=", "the same endpoint as vxlan_endpoints[0]"]),
    "endpoints as a string": ([], {"h2": {"vxlan_endpoints": "ns1"}}, ["host h2: vxlan_endpoints='ns1': must be a list of endpoints"]),
    "misspelt endpoint key": ([], {"h1": {"vxlan_endpoints": [vm(1, adress="100.0.0.9/24")]}},
                              ["host h1: vxlan_endpoints[0].adress='100.0.0.9/24': is not a key of an endpoint", "did you mean address?"]),
    "bridge named as the underlay device": (net(bridge="eth0"), {}, ["hosts h1, h2, h3: vxlan_underlay_dev='eth0': is also the name of the "
                                                                     "bridge of network blue"]),
    "overlay mtu under 1280": (["-e", "vxlan_underlay_mtu=1329"], {},
                               ["hosts h1, h2, h3: vxlan_underlay_mtu=1329: leaves an overlay MTU of 1279 over IPv4 (1329 - 50)"]),
    # What only the hosts can tell: checked on every host before any host changes.
    "mtu 9000 on a 1500 underlay": (["-e", "vxlan_underlay_mtu=9000"], {},
                                    ["host %s: vxlan_underlay_mtu=9000: eth0 has MTU 1500; VXLAN devices, bridges and VMs would get 8950" % h
                                     for h in SOURCE_HOSTS]),
    "underlay device missing on one host": ([], {"h2": {"vxlan_underlay_dev": "eth9"}},
                                            ["host h2: vxlan_underlay_dev='eth9': no such interface on the host (it has br1, eth0, lo"]),
    "underlay address not on the host": ([], {"h2": {"vxlan_underlay_ip": "192.168.1.99"}},
                                         ["host h2: vxlan_underlay_ip='192.168.1.99': is not an address of eth0 (vxlan_underlay_dev), which "
                                          "has 192.168.1.3/24"]),
    "several problems at once": (["-e", "vxlan_underlay_mtu=1300"], {"h2": {"vxlan_underlay_ip": "192.168.1.2"},
                                                                    "h3": {"vxlan_endpoints": [vm(3, address="10.0.0.4/24", mac="FF:FF:FF:FF:FF:FF")]}},
                                 ["The overlay inventory has 4 problems; no host has been changed:",
                                  "hosts h1, h2: vxlan_underlay_ip='192.168.1.2'", "host h3: vxlan_endpoints[0].mac='FF:FF:FF:FF:FF:FF'",
                                  "hosts h1, h2, h3: vxlan_underlay_mtu=1300", "host h3: vxlan_endpoints[0].address='10.0.0.4/24'"]),
}


HOST_CASES = ("mtu 9000 on a 1500 underlay", "underlay device missing on one host", "underlay address not on the host")


def override_inventory(path, host_vars: dict) -> list[str]:
    """A second inventory source whose host variables win over inventories/lab's."""
    if not host_vars:
        return []
    path.write_text(yaml.safe_dump({"all": {"children": {"overlay": {"hosts": host_vars}}}}))
    return ["-i", str(path)]


def assert_refused_before_any_change(lab: Lab, before: dict, proc, texts: list[str], hosts_read: bool) -> None:
    """The run failed in the validate play naming `texts`, ran no later play, changed nothing."""
    output = flat(proc.stdout + proc.stderr)
    assert proc.returncode != 0, proc.stdout[-3000:]
    for text in texts:
        assert flat(text) in output, "%r not in:\n%s" % (text, proc.stdout[-4000:])
    assert "Traceback" not in output
    assert "PLAY [Validate the overlay inventory and each host's underlay]" in proc.stdout
    for play in LATER_PLAYS:
        assert play not in proc.stdout, proc.stdout[-3000:]
    stats = recap(proc.stdout)
    assert stats and all(s["changed"] == 0 for s in stats.values()), proc.stdout[-2000:]
    # An inventory problem is found on the controller: no host is even contacted.
    assert ("TASK [Read each host's interfaces]" in proc.stdout) == hosts_read, proc.stdout[-3000:]
    assert lab_state(lab) == before


@pytest.mark.parametrize("case", list(CASES))
def test_bad_inventory_fails_before_any_host_changes(converged, tmp_path, case):
    lab, before = converged
    extra, host_vars, texts = CASES[case]
    proc = lab.playbook(SITE, *override_inventory(tmp_path / "override.yml", host_vars), *extra, check=False)
    assert_refused_before_any_change(lab, before, proc, texts, hosts_read=case in HOST_CASES)


def test_multicast_playbook_without_a_group_fails_before_any_host_changes(converged):
    """playbooks/multicast.yml gives vxlan_mode as a play variable, which hostvars (what the
    controller's check reads) do not hold: the mode's own need is checked with the play's mode."""
    lab, before = converged
    groupless = {key: value for key, value in BLUE.items() if key != "group"}
    proc = lab.playbook(ROOT / "playbooks" / "multicast.yml", "-e", json.dumps({"vxlan_networks": [groupless]}), check=False)
    assert_refused_before_any_change(lab, before, proc, ["host %s: vxlan_mode='multicast': network blue has no group; multicast mode "
                                                         "needs one (or use vxlan_mode=flood)" % h for h in SOURCE_HOSTS],
                                     hosts_read=False)


def test_a_variable_changed_after_the_map_was_built_fails_the_role_naming_it(converged, tmp_path):
    """The endpoint map is built once per run: a host whose vxlan_endpoints change later in the
    run (a set_fact between plays) is refused by the next role, not configured from the old map."""
    lab, before = converged
    playbook = tmp_path / "midrun.yml"
    playbook.write_text(yaml.safe_dump([
        {"name": "Validate", "ansible.builtin.import_playbook": str(VALIDATE)},
        {"name": "A VM added mid-run", "hosts": "h3", "gather_facts": False,
         "tasks": [{"name": "Second VM on h3", "ansible.builtin.set_fact": {
             "vxlan_endpoints": [vm(3), vm(3, namespace="ns2", host_if="tap3", vm_if="tap4", address="100.0.0.5/24")]}}]},
        {"name": "The endpoint role", "hosts": "overlay", "gather_facts": False, "roles": [{"role": "overlay.vxlan.endpoint"}]},
    ]))
    proc = lab.playbook(playbook, check=False)
    output = flat(proc.stdout + proc.stderr)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert flat('host h3: vxlan_endpoints=[{"address": "100.0.0.4/24"') in output and '"address": "100.0.0.5/24"' in output, proc.stdout[-3000:]
    assert flat("changed after this run's endpoint map was built") in output, proc.stdout[-3000:]
    stats = recap(proc.stdout)
    assert stats["h3"]["failed"] == 1 and all(s["changed"] == 0 for s in stats.values()), proc.stdout[-2000:]
    assert lab_state(lab) == before  # no ns2 on h3, nothing else touched


def test_a_sound_inventory_passes_and_validation_changes_nothing(converged):
    lab, before = converged
    proc = lab.playbook(VALIDATE)
    stats = recap(proc.stdout)
    assert set(stats) == set(SOURCE_HOSTS) and all(s["changed"] == 0 and s["failed"] == 0 for s in stats.values()), proc.stdout
    assert lab_state(lab) == before


@pytest.mark.parametrize("spoil", [["-e", "vxlan_underlay_ip=192.168.1.2"], ["-e", "vxlan_underlay_mtu=9000"]],
                         ids=["on the controller", "on a host"])
def test_a_failed_validation_stops_every_later_play_for_every_host(converged, tmp_path, spoil):
    lab, _before = converged
    playbook = tmp_path / "later.yml"
    playbook.write_text(yaml.safe_dump([
        {"name": "Validate", "ansible.builtin.import_playbook": str(VALIDATE)},
        {"name": "A later play on every host", "hosts": "all,localhost", "gather_facts": False,
         "tasks": [{"name": "Mark", "ansible.builtin.debug": {"msg": "LATER PLAY RAN"}}]},
    ]))
    proc = lab.playbook(playbook, *spoil, check=False)
    assert proc.returncode != 0 and "FAILED" in proc.stdout, proc.stdout[-3000:]
    assert "LATER PLAY RAN" not in proc.stdout and "PLAY [A later play" not in proc.stdout, proc.stdout[-3000:]


def test_a_thousand_host_inventory_is_checked_once_in_seconds(tmp_path):
    """No lab: the check fails on h1000 (a duplicate VM address) before any host is contacted."""
    hosts = {}
    for n in range(1000):
        hosts["h%d" % (n + 1)] = {"vxlan_underlay_ip": "10.0.%d.%d" % (n // 250, n % 250 + 1),
                                  "vxlan_endpoints": [vm(0, address="100.0.%d.%d/16" % (n // 250, n % 250 + 1))]}
    hosts["h1000"]["vxlan_endpoints"][0]["address"] = "100.0.0.1/16"
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"overlay": {
        "hosts": hosts, "vars": {"vxlan_networks": [BLUE], "vxlan_underlay_dev": "eth0", "ansible_connection": "local"}}}}}))
    timings = tmp_path / "timings.json"
    start = time.monotonic()
    proc = _run(["env", "ANSIBLE_CALLBACK_PLUGINS=%s" % (ROOT / "benchmarks" / "callback_plugins"), "ANSIBLE_CALLBACKS_ENABLED=bench_count",
                 "BENCH_COUNT_FILE=%s" % timings, ANSIBLE_PLAYBOOK, "-i", inventory, VALIDATE])
    wall = time.monotonic() - start
    assert proc.returncode != 0
    assert flat("host h1000: vxlan_endpoints[0].address='100.0.0.1/16': network blue: VM address 100.0.0.1 is also h1's") in flat(proc.stdout)
    assert "The overlay inventory has 1 problem;" in proc.stdout
    check = next(t for t in json.loads(timings.read_text())["tasks"] if t["name"].startswith("Check every overlay host"))
    print("1000 hosts: the check task %.2fs, the whole ansible-playbook run %.2fs" % (check["seconds"], wall))
    assert check["seconds"] < 20, check
