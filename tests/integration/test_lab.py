"""The simulated lab on the real kernel: create, idempotence, isolation, connection, destroy.

Every lab gets a random name (t1234abc), so nothing here touches the default `ovx` lab or another
test's lab, and every lab is destroyed even when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

if "lab_fixtures" not in sys.modules:  # conftest may have loaded it already
    pytest.register_assert_rewrite("lab_fixtures")

from lab_fixtures import (  # noqa: E402
    DEFAULT_INVENTORY,
    DESTROY_PLAYBOOK,
    LAB_PLAYBOOK,
    Lab,
    inventory_hosts,
    pid_alive,
    recap,
    root_netns_snapshot,
    running_lab,
    underlay_mac,
    unique_lab_name,
    write_inventory,
)

# The fixtures `lab` and `lab_factory` (tests/conftest.py may also load them).
pytest_plugins = ["lab_fixtures"]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nsenter"),
    reason="the lab needs root, and nsenter for its connection plugin",
)


def _changed(proc) -> int:
    return recap(proc.stdout)["localhost"]["changed"]


def _link(lab: Lab, host: str, dev: str) -> dict:
    return json.loads(lab.enter(host, "ip", "-j", "addr", "show", "dev", dev).stdout)[0]


def _permanent_neighbours(lab: Lab, host: str) -> dict:
    entries = json.loads(lab.enter(host, "ip", "-j", "neigh", "show", "dev", "eth0", "nud", "permanent").stdout or "[]")
    return {entry["dst"]: entry["lladdr"] for entry in entries}


def test_create_from_the_lab_inventory_is_idempotent_and_hosts_are_isolated(lab_factory):
    hosts = inventory_hosts(DEFAULT_INVENTORY)  # h1 h2 h3 (and ctl, DOVE's controller)
    assert {"h1", "h2", "h3"} <= set(hosts)
    lab = lab_factory(hosts, inventory=DEFAULT_INVENTORY, create=False)
    assert _changed(lab.create()) == 1
    assert _changed(lab.create()) == 0

    for host, ip in hosts.items():
        # its own hostname, its own underlay address on eth0 (up), lo up
        assert lab.enter(host, "hostname").stdout.strip() == host
        eth0 = _link(lab, host, "eth0")
        assert "UP" in eth0["flags"] and eth0["mtu"] == 1500
        assert [(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a["family"] == "inet"] == [(ip, 24)]
        assert "UP" in _link(lab, host, "lo")["flags"]
        # underlay MAC derived from the address, permanent neighbours for every other host
        assert eth0["address"] == underlay_mac(ip)
        assert _permanent_neighbours(lab, host) == {peer_ip: underlay_mac(peer_ip) for peer, peer_ip in hosts.items() if peer != host}
        # only lo and eth0 in the host
        names = {link["ifname"] for link in json.loads(lab.enter(host, "ip", "-j", "link").stdout)}
        assert names == {"lo", "eth0"}
        # its own, empty /run/netns (a tmpfs in its mount namespace)
        assert lab.enter(host, "ls", "-A", "/run/netns").stdout == ""
        assert lab.enter(host, "findmnt", "-n", "-o", "FSTYPE", "/run/netns").stdout.strip() == "tmpfs"
        # no copies of anybody's namespace pins (other hosts, other labs, the machine's /run/netns)
        assert lab.enter(host, "findmnt", "-rn", "-t", "nsfs", check=False).stdout == ""
        # every host reaches every other host over the underlay
        for peer, peer_ip in hosts.items():
            if peer != host:
                lab.ping(host, peer_ip)

    # each host can have its own ns1; neither the machine nor the other hosts see it
    lab.enter("h1", "ip", "netns", "add", "ns1")
    assert lab.enter("h1", "ip", "netns", "list").stdout.split() == ["ns1"]
    assert lab.enter("h2", "ip", "netns", "list").stdout == ""
    lab.enter("h2", "ip", "netns", "add", "ns1")
    lab.enter("h1", "ip", "link", "set", "lo", "up", netns="ns1")


def test_connection_plugin_pipelines_and_copies_inside_the_host(lab):
    proc = lab.ansible("lab", "ansible.builtin.command", "hostname", "-vvv")
    for host in lab.hosts:
        assert "%s | CHANGED | rc=0 >>\n%s\n" % (host, host) in proc.stdout
    # pipelining: the module went through stdin, no file was put on the host
    assert "PUT " not in proc.stdout
    assert proc.stdout.count("EXEC ") == len(lab.hosts)

    assert "SUCCESS" in lab.ansible("h2", "ansible.builtin.ping").stdout

    # put_file/fetch_file run inside the host's mount namespace: /run/netns is the host's own
    marker = "/run/netns/lab-test-marker"
    lab.ansible("h1", "ansible.builtin.copy", "content=hello-from-h1 dest=%s" % marker)
    assert lab.enter("h1", "cat", marker).stdout == "hello-from-h1"
    assert not os.path.exists(marker)
    assert lab.enter("h2", "test", "-e", marker, check=False).returncode == 1
    target = lab.inventory.parent / "fetched"
    lab.ansible("h1", "ansible.builtin.fetch", "src=%s dest=%s/ flat=true" % (marker, target))
    assert (target / "lab-test-marker").read_text() == "hello-from-h1"

    # a host that does not exist is a clear connection failure
    proc = lab.ansible("h1", "ansible.builtin.ping", "", "-e", "ansible_lab_host=nosuchhost", check=False)
    assert proc.returncode != 0 and "does not exist" in proc.stdout


def test_fabric_floods_multicast_between_hosts(lab):
    # The multicast mode's devices (group 239.1.1.1, bound to eth0) reach each other over the
    # fabric bridge: snooping is off, so the group's traffic floods to every port.
    for index, host in enumerate(lab.hosts, start=2):
        lab.enter(host, "ip", "link", "add", "vxlan0", "type", "vxlan", "id", "100", "dstport", "4789",
                  "group", "239.1.1.1", "dev", "eth0")
        lab.enter(host, "ip", "addr", "add", "100.0.0.%d/24" % index, "dev", "vxlan0")
        lab.enter(host, "ip", "link", "set", "vxlan0", "up")
    lab.ping("h1", "100.0.0.4")
    lab.ping("h3", "100.0.0.3")
    fabric = subprocess.run(["nsenter", "--net=%s/fabric/net" % lab.path, "ip", "-j", "-d", "link", "show", "underlay0"],
                            capture_output=True, text=True, check=True)
    assert json.loads(fabric.stdout)[0]["linkinfo"]["info_data"]["mcast_snooping"] == 0


def test_lab_follows_the_inventory_and_repairs_drift(lab_factory):
    lab = lab_factory(3)
    # drift: a wrong hostname, an extra address, a deleted underlay device
    lab.enter("h1", "hostname", "wrong")
    lab.enter("h2", "ip", "addr", "add", "10.9.9.9/8", "dev", "eth0")
    lab.enter("h3", "ip", "link", "del", "eth0")
    assert _changed(lab.playbook(LAB_PLAYBOOK, "--check")) == 1
    assert lab.enter("h1", "hostname").stdout.strip() == "wrong"  # check mode changed nothing
    assert _changed(lab.create()) == 1
    assert _changed(lab.create()) == 0
    assert lab.enter("h1", "hostname").stdout.strip() == "h1"
    assert "10.9.9.9" not in lab.enter("h2", "ip", "-br", "addr").stdout
    lab.ping("h3", lab.hosts["h1"])

    # grow to 5 hosts, then shrink to 2: the lab follows the inventory
    write_inventory(lab.inventory, lab.name, 5)
    assert _changed(lab.create()) == 1
    lab.ping("h5", lab.hosts["h1"])
    assert set(_permanent_neighbours(lab, "h1")) == {"192.168.1.%d" % i for i in (3, 4, 5, 6)}
    write_inventory(lab.inventory, lab.name, 2)
    assert _changed(lab.create()) == 1
    assert sorted(os.listdir(os.path.join(lab.path, "hosts"))) == ["h1", "h2"]
    assert _permanent_neighbours(lab, "h1") == {"192.168.1.3": "02:fa:c0:a8:01:03"}
    assert _changed(lab.create()) == 0

    # an inventory without lab hosts (a wrong -i) is refused, not taken as "remove every host"
    empty = write_inventory(lab.inventory.parent / "empty.yml", lab.name, 0)
    proc = Lab(lab.name, empty, {}).create(check=False)
    assert proc.returncode != 0 and "has no hosts" in proc.stdout
    assert sorted(os.listdir(os.path.join(lab.path, "hosts"))) == ["h1", "h2"]


def test_labs_coexist_with_the_same_host_names(lab_factory):
    first = lab_factory(2)
    second = lab_factory(2)
    first.enter("h1", "ip", "netns", "add", "ns1")
    assert second.enter("h1", "ip", "netns", "list").stdout == ""
    # same addresses, different segments: h1 of one lab sees only its own h2
    mac_first = _link(first, "h2", "eth0")["address"]
    first.ping("h1", first.hosts["h2"])
    neigh = first.enter("h1", "ip", "-j", "neigh", "show", first.hosts["h2"]).stdout
    assert json.loads(neigh)[0]["lladdr"] == mac_first
    second.destroy()
    assert not second.exists() and first.exists()
    first.ping("h2", first.hosts["h1"])


def test_destroy_kills_everything_and_leaves_nothing(lab_factory):
    lab = lab_factory(3)
    # stand-ins for a DOVE agent or etcd: one in a host, one in the host's own ns1 that ignores SIGTERM
    agent = lab.spawn("h2", "sleep", "1000")
    lab.enter("h1", "ip", "netns", "add", "ns1")
    stubborn = lab.spawn("h1", "ip", "netns", "exec", "ns1", "sh", "-c", "trap '' TERM; sleep 1000")
    deadline = time.monotonic() + 5
    while len(lab.processes()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    inside = lab.processes()
    assert agent.pid in inside and stubborn.pid in inside

    before_destroy = _boot_ticks()
    proc = lab.playbook(DESTROY_PLAYBOOK, "-e", "lab_kill_timeout=0.5")
    assert _changed(proc) == 1
    for child in (agent, stubborn):
        child.wait(timeout=5)
    assert not any(pid_alive(pid) for pid in inside)
    # nothing that was running before the destroy is left in (what were) the lab's namespaces
    assert _started_before(lab, before_destroy) == []
    assert not os.path.exists(lab.path)
    with open("/proc/self/mountinfo") as handle:
        assert lab.path not in handle.read()
    # idempotent
    assert _changed(lab.destroy()) == 0


def _boot_ticks() -> int:
    with open("/proc/uptime") as handle:
        return int(float(handle.read().split()[0]) * os.sysconf("SC_CLK_TCK"))


def _started_before(lab: Lab, ticks: int) -> list[int]:
    """PIDs in the lab's former namespace inodes that started before `ticks` (inodes are reused
    by namespaces made later, so a process started after the destroy is somebody else's)."""
    found = []
    for pid in lab.processes():
        try:
            with open("/proc/%d/stat" % pid) as handle:
                start = int(handle.read().rsplit(")", 1)[1].split()[19])
        except (FileNotFoundError, IndexError, ValueError):
            continue
        if start < ticks:
            found.append(pid)
    return found


def test_nothing_is_created_in_the_machines_network_namespace(tmp_path):
    before = root_netns_snapshot()
    with running_lab(3, tmp_path) as lab:
        during = root_netns_snapshot()
        lab.ping("h1", lab.hosts["h3"])
    after = root_netns_snapshot()
    assert during == before
    assert after == before


@pytest.mark.parametrize("lab", [8], indirect=True)
def test_eight_host_lab(lab):
    assert sorted(os.listdir(os.path.join(lab.path, "hosts"))) == sorted(lab.hosts)
    lab.ping("h8", lab.hosts["h1"])
    assert _changed(lab.create()) == 0


def test_lab_names_are_validated(lab_factory):
    lab = lab_factory(1, name="bad/name", create=False)
    proc = lab.create(check=False)
    assert proc.returncode != 0 and "lab_name" in proc.stdout
    assert not os.path.exists("/run/overlay-lab/bad")


def test_unique_lab_names_differ():
    assert unique_lab_name() != unique_lab_name()


# --- the module's plain functions and check mode --------------------------------------------------

def _module():
    import importlib

    return importlib.import_module("ansible_collections.overlay.vxlan.plugins.module_utils._lab_host")


def _params(**overrides):
    params = {"lab_name": "ovx", "hosts": [{"name": "h1", "underlay_ip": "192.168.1.2"}], "underlay_prefix": 24,
              "underlay_dev": "eth0", "underlay_mtu": 1500, "fabric_bridge": "underlay0", "state": "present",
              "exact": False, "kill_timeout": 2.0, "static_neighbours": True}
    params.update(overrides)
    return params


def test_port_names_fit_ifnamsiz_and_stay_distinct():
    lab_host = _module()
    assert lab_host.port_name("h1") == "vh1"
    assert lab_host.port_name("a" * 14) == "v" + "a" * 14
    long_names = ["controller-number-%d" % i for i in range(50)]
    ports = {lab_host.port_name(name) for name in long_names}
    assert len(ports) == 50 and all(len(p) <= 15 and p.startswith("x") for p in ports)


@pytest.mark.parametrize("overrides, field", [
    ({"lab_name": "bad/name"}, "lab_name"),
    ({"lab_name": ""}, "lab_name"),
    ({"hosts": [{"name": "h1", "underlay_ip": "192.168.1.2"}, {"name": "h1", "underlay_ip": "192.168.1.3"}]}, "hosts[1].name"),
    ({"hosts": [{"name": "h1", "underlay_ip": "192.168.1.2"}, {"name": "h2", "underlay_ip": "192.168.1.2"}]}, "hosts[1].underlay_ip"),
    ({"hosts": [{"name": "h1", "underlay_ip": "192.168.1.2"}, {"name": "h2", "underlay_ip": "fd00::2"}]}, "hosts[1].underlay_ip"),
    ({"hosts": [{"name": "h1", "underlay_ip": "239.1.1.1"}]}, "hosts[0].underlay_ip"),
    ({"hosts": [{"name": "h 1", "underlay_ip": "192.168.1.2"}]}, "hosts[0].name"),
    ({"underlay_prefix": 33}, "underlay_prefix"),
    ({"underlay_dev": "a-very-long-device-name"}, "underlay_dev"),
    ({"kill_timeout": -1.0}, "kill_timeout"),
])
def test_bad_parameters_are_refused_before_anything_is_touched(overrides, field):
    from ansible_collections.overlay.vxlan.plugins.module_utils._validate import InputError

    with pytest.raises(InputError) as error:
        _module().validate(_params(**overrides))
    assert error.value.field == field


def test_check_mode_reports_the_lab_and_creates_nothing():
    from helpers import run_module

    name = unique_lab_name()
    args = _params(lab_name=name, hosts=[{"name": "h1", "underlay_ip": "192.168.1.2"}, {"name": "h2", "underlay_ip": "192.168.1.3"}])
    result = run_module("lab_host", args, check=True)
    assert result["changed"] is True and result["created"] == ["h1", "h2"]
    assert result["diff"]["after"]["hosts"] == {"h1": "192.168.1.2/24", "h2": "192.168.1.3/24"}
    assert not os.path.exists("/run/overlay-lab/%s" % name)
    result = run_module("lab_host", {"lab_name": name, "state": "absent"}, check=True)
    assert result["changed"] is False and not os.path.exists("/run/overlay-lab/%s" % name)
