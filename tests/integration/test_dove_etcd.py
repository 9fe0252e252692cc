"""DOVE mode with the etcd backend: etcd runs inside a controller namespace on the underlay
(192.168.1.10), never in the machine's own namespace. Faults from issue 5, each a test."""

from __future__ import annotations

import json
import signal
import time

import pytest
from test_dove_netns import DoveNet, sh, wait_for

LEASE_TTL = 3  # short, so the dead-host test does not wait long


@pytest.fixture
def dove_etcd(tmp_path):
    net = DoveNet(tmp_path, backend="etcd", lease_ttl=LEASE_TTL)
    try:
        net.start_etcd()
        yield net
    finally:
        net.close()


def registered(net, expected_keys):
    return lambda: set(net.store_records()) >= set(expected_keys)


def test_etcd_listens_only_inside_the_controller_namespace(dove_etcd):
    net = dove_etcd
    inside = sh("ip", "netns", "exec", net.ctl, "ss", "-Htln").stdout
    assert "192.168.1.10:2379" in inside
    root = sh("ss", "-Htln").stdout
    assert ":2379" not in root and ":2380" not in root


def test_registration_first_ping_and_on_demand_tables(dove_etcd):
    net = dove_etcd
    net.start_agents()
    h1, h2, h3 = net.hosts
    vm1, vm2, vm3 = (h.vms[0] for h in net.hosts)
    keys = [net.key(vm) for vm in (vm1, vm2, vm3)]
    ok, _ = wait_for(registered(net, keys), timeout=5)
    assert ok, net.store_records()
    records = net.store_records()
    assert records[net.key(vm2)] == {"host": "h2", "ip": vm2.ip, "mac": vm2.mac, "vni": 100, "vtep": h2.ip}  # MAC read from the VM netns
    # every agent's cache holds the three records before any VM talks
    for host in net.hosts:
        wait_for(lambda host=host: host.fresh_metrics()["cache_size"] == 3)
        assert host.fresh_metrics()["cache_size"] == 3

    first = vm1.ping(vm2.ip, count=1, timeout=2.0)[0]
    print("etcd backend: first ping h1 -> h2: %s ms" % first)
    assert first is not None and first < 200.0
    assert h1.neigh() == {vm2.ip: vm2.mac} and h1.fdb() == {vm2.mac: h2.ip}
    assert h3.neigh() == {} and h3.fdb() == {}
    later = vm1.ping(vm2.ip, count=5, interval=0.05)
    assert all(r is not None for r in later)
    assert vm3.ping(vm1.ip, count=1, timeout=2.0)[0] is not None


def test_vm_moves_and_peers_follow_within_a_second(dove_etcd):
    """Same IP and MAC, new VTEP: the new host registers, the old one deregisters; h1 repoints."""
    net = dove_etcd
    net.start_agents()
    h1, h2, h3 = net.hosts
    vm1, vm3 = h1.vms[0], h3.vms[0]
    assert vm1.ping(vm3.ip, count=1, timeout=2.0)[0] is not None
    assert h1.fdb()[vm3.mac] == h3.ip
    ip, mac = vm3.ip, vm3.mac

    net.remove_vm(vm3)
    moved = net.add_vm(h2, ip, mac=mac, index=2)
    start = time.monotonic()
    h2.write_config()
    h2.signal_agent(signal.SIGHUP)  # the new host registers it
    h3.write_config()
    h3.signal_agent(signal.SIGHUP)  # the old host lets it go
    ok, _ = wait_for(lambda: h1.fdb().get(mac) == h2.ip, timeout=5)
    took = time.monotonic() - start
    print("etcd backend: h1 repointed the moved VM in %.3f s" % took)
    assert ok and took < 1.0, (h1.fdb(), h1.log()[-2000:])
    assert h1.neigh()[ip] == mac
    gone, _ = wait_for(lambda: net.key(moved, h3) not in net.store_records(), timeout=3)
    assert gone
    rtts = vm1.ping(moved.ip, count=3, interval=0.1)
    assert all(r is not None for r in rtts), rtts


def test_etcd_down_traffic_flows_then_new_endpoints_resolve(dove_etcd):
    net = dove_etcd
    net.start_agents()
    h1, h2, h3 = net.hosts
    vm1, vm2 = h1.vms[0], h2.vms[0]
    assert vm1.ping(vm2.ip, count=1, timeout=2.0)[0] is not None
    wait_for(registered(net, [net.key(vm) for vm in net.vms()]))

    net.stop_etcd()
    # existing traffic keeps flowing, and a miss for a known endpoint is still answered from the cache
    rtts = vm1.ping(vm2.ip, count=15, interval=0.1)
    assert all(r is not None for r in rtts), rtts
    assert vm1.ping(h3.vms[0].ip, count=1, timeout=2.0)[0] is not None
    # a new VM appears on h3 while the store is down
    new = net.add_vm(h3, "100.0.0.5", index=2)
    h3.write_config()
    h3.signal_agent(signal.SIGHUP)
    time.sleep(2.5)
    assert vm1.ping(new.ip, count=1, timeout=0.3) == [None]
    for host in net.hosts:
        assert host.proc.poll() is None, "agent on %s died with the store" % host.name
        log = host.log()
        warnings = [line for line in log.splitlines() if " WARNING " in line or " ERROR " in line]
        assert " ERROR " not in log
        assert len(warnings) <= 4, warnings  # retries quietly: the first failure per kind only
        assert "Traceback" not in log
        assert host.fresh_metrics()["store"]["state"] == "down"

    net.start_etcd(fresh=False)  # same data dir: the cluster comes back
    ok, took = wait_for(lambda: vm1.ping(new.ip, count=1, timeout=0.3)[0] is not None, timeout=15, interval=0.1)
    print("etcd backend: new endpoint resolved %.2f s after etcd returned" % took)
    assert ok, (h1.log()[-2000:], h3.log()[-2000:])
    assert net.store_records()[net.key(new)]["vtep"] == h3.ip
    assert "recovered after" in h1.log()
    assert h1.fresh_metrics()["store"]["state"] == "connected"


def test_malformed_store_records_rejected_with_a_log_line(dove_etcd):
    net = dove_etcd
    net.start_agents()
    h1 = net.hosts[0]
    vm1 = h1.vms[0]
    bad = {
        net.prefix + "/endpoints/100/100.0.0.60/h9": "{not json",
        net.prefix + "/endpoints/100/100.0.0.61/h9": json.dumps({"vni": 100, "ip": "100.0.0.61", "mac": "01:00:5e:00:00:01",
                                                                  "vtep": "192.168.1.3", "host": "h9"}),
        net.prefix + "/endpoints/100/100.0.0.62/h9": json.dumps({"vni": 100, "ip": "100.0.0.99", "mac": "02:00:00:00:00:62",
                                                                  "vtep": "192.168.1.3", "host": "h9"}),
        net.prefix + "/endpoints/0/100.0.0.63/h9": json.dumps({"vni": 0, "ip": "100.0.0.63", "mac": "02:00:00:00:00:63",
                                                                "vtep": "192.168.1.3", "host": "h9"}),
        net.prefix + "/endpoints/100/100.0.0.64/h9": json.dumps({"vni": 100, "ip": "100.0.0.64", "mac": "02:00:00:00:00:64",
                                                                  "vtep": "127.0.0.1", "host": "h9"}),
    }
    for key, value in bad.items():
        assert net.store("put", key, value).returncode == 0
    ok, _ = wait_for(lambda: all("rejected store record %s" % key in h1.log() for key in bad), timeout=3)
    assert ok, h1.log()[-3000:]
    log = h1.log()
    assert "value is not JSON" in log and "multicast/broadcast MAC" in log and "key says vni 100 ip 100.0.0.62" in log
    assert "must be between 1 and 16777215" in log and "loopback" in log
    for ip in ("100.0.0.60", "100.0.0.61", "100.0.0.62", "100.0.0.63", "100.0.0.64", "100.0.0.99"):
        assert vm1.ping(ip, count=1, timeout=0.3) == [None]
    assert not {"100.0.0.60", "100.0.0.61", "100.0.0.62", "100.0.0.63", "100.0.0.64", "100.0.0.99"} & set(h1.neigh())
    assert not {"01:00:5e:00:00:01", "02:00:00:00:00:62", "02:00:00:00:00:63", "02:00:00:00:00:64"} & set(h1.fdb())
    assert h1.fresh_metrics()["counters"]["records_rejected"] >= 5
    # a record fixed in place is accepted
    good = json.dumps({"vni": 100, "ip": "100.0.0.60", "mac": "02:00:00:00:00:60", "vtep": "192.168.1.3", "host": "h9"})
    assert net.store("put", net.prefix + "/endpoints/100/100.0.0.60/h9", good).returncode == 0
    ok, _ = wait_for(lambda: h1.fresh_metrics()["cache_size"] == 4)
    assert ok


def test_killed_agent_restarts_and_drops_what_changed_meanwhile(dove_etcd):
    net = dove_etcd
    net.start_agents()
    h1, h2, h3 = net.hosts
    vm1, vm2, vm3 = (h.vms[0] for h in net.hosts)
    assert vm1.ping(vm2.ip, count=1, timeout=2.0)[0] is not None
    assert vm1.ping(vm3.ip, count=1, timeout=2.0)[0] is not None
    assert set(h1.neigh()) == {vm2.ip, vm3.ip}

    h1.stop_agent(kill=True)
    # meanwhile h3's VM is gone from the overlay (its host deregisters it)
    net.remove_vm(vm3)
    h3.write_config()
    h3.signal_agent(signal.SIGHUP)
    gone, _ = wait_for(lambda: net.key(vm3) not in net.store_records(), timeout=5)
    assert gone
    assert vm1.ping(vm2.ip, count=3, interval=0.05)[-1] is not None  # data plane alive without the agent

    h1.start_agent()
    assert "adopted 2 neighbour and 2 fdb entries from the kernel" in h1.log()
    ok, _ = wait_for(lambda: h1.neigh() == {vm2.ip: vm2.mac} and h1.fdb() == {vm2.mac: h2.ip}, timeout=3)
    assert ok, (h1.neigh(), h1.fdb())
    # its own record is there again (put under the new run's lease)
    assert net.store_records()[net.key(vm1)]["vtep"] == h1.ip
    assert vm1.ping(vm2.ip, count=1)[0] is not None


def test_dead_host_expires_with_its_lease(dove_etcd):
    net = dove_etcd
    net.start_agents()
    h1, h2, h3 = net.hosts
    vm1, vm3 = h1.vms[0], h3.vms[0]
    assert vm1.ping(vm3.ip, count=1, timeout=2.0)[0] is not None
    assert vm3.ip in h1.neigh()
    h3.stop_agent(kill=True)  # the host "dies": no deregistration, only the lease ends
    start = time.monotonic()
    ok, _ = wait_for(lambda: vm3.ip not in h1.neigh() and vm3.mac not in h1.fdb(), timeout=LEASE_TTL + 5)
    took = time.monotonic() - start
    print("etcd backend: dead host's endpoints removed from h1 after %.2f s (lease ttl %d s)" % (took, LEASE_TTL))
    assert ok
    assert net.key(vm3) not in net.store_records()
    assert net.key(vm1) in net.store_records()  # live hosts keep theirs
