"""The DOVE agent against a hostile store (issue 22), on a real kernel in a throwaway namespace.

One namespace per test (conftest's `underlay`: eth0 192.168.1.2/24) gets br1 (100.0.0.1/24) and
vxlan0 `nolearning proxy l2miss l3miss` on it, as DOVE mode builds them. The agent runs there as
its own command line (`run --config`), with its etcd backend pointed at tests/fake_etcd_gateway.py
on the namespace's loopback: its real watcher thread reads whatever the "store" says through
EtcdClient.watch, exactly the path records from etcd take. A ping from the namespace to a VM
address makes the kernel raise a real l3miss on vxlan0 (br1 floods the ARP request to it); what
the agent then installs is read back with iproute2. Nothing is created in the machine's own
namespace; the agent is stopped and the namespace removed even when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ns_exec

ROOT = Path(__file__).resolve().parents[2]
AGENT_FILES = ROOT / "roles" / "dove_agent" / "files"
GATEWAY = ROOT / "tests" / "fake_etcd_gateway.py"
PREFIX = "/ovx-hostile"
MAC3, MAC5 = "02:00:64:00:00:03", "02:00:64:00:00:05"
H2, H3 = "192.168.1.3", "192.168.1.4"


def key(ip, host, vni=100):
    return "%s/endpoints/%d/%s/%s" % (PREFIX, vni, ip, host)


def value(ip, mac, vtep, host, vni=100):
    return json.dumps({"vni": vni, "ip": ip, "mac": mac, "vtep": vtep, "host": host})


class AgentInNamespace:
    """The agent (and the fake gateway it talks to) as one process inside `ns`."""

    def __init__(self, ns, tmp_path: Path):
        self.ns, self.tmp = ns, tmp_path
        self.metrics_path = tmp_path / "metrics.json"
        self.log_path = tmp_path / "agent.log"
        self.proc = None

    def start(self, kvs=(), watch=(), inventory_endpoints=(), **extra):
        config = {
            "host": "h1", "vtep": "192.168.1.2", "backend": "etcd",
            "networks": [{"name": "blue", "vni": 100, "vxlan_dev": "vxlan0", "bridge": "br1"}],
            "inventory": {"vteps": {"h1": ["192.168.1.2"], "h2": [H2], "h3": [H3]}, "endpoints": list(inventory_endpoints)},
            "etcd": {"endpoints": ["http://127.0.0.1:2379"], "prefix": PREFIX, "timeout": 1.0},
            "announce": False, "metrics_file": str(self.metrics_path), "metrics_interval": 0.05, "log_level": "info",
        }
        config.update(extra)
        (self.tmp / "agent.json").write_text(json.dumps(config))
        (self.tmp / "script.json").write_text(json.dumps({"kvs": [list(kv) for kv in kvs], "watch": list(watch)}))
        env = dict(os.environ, PYTHONPATH="%s:%s" % (AGENT_FILES, ROOT / ".collections"))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns.name, sys.executable, str(GATEWAY),
                                          str(self.tmp / "script.json"), str(self.tmp / "agent.json")],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics(self) -> dict:
        try:
            return json.loads(self.metrics_path.read_text())
        except (OSError, ValueError):
            return {}

    def wait(self, predicate, what: str, timeout: float = 15.0) -> dict:
        """Poll the metrics until predicate(metrics) holds; fail (with the log) if the agent dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the agent died (exit %s):\n%s" % (self.proc.returncode, self.log()[-4000:])
            metrics = self.metrics()
            if metrics and predicate(metrics):
                return metrics
            time.sleep(0.05)
        raise AssertionError("agent never got to %s: %s\n%s" % (what, self.metrics(), self.log()[-4000:]))

    def miss(self, ip: str) -> None:
        """A real l3miss: the namespace ARPs for `ip` on br1, the bridge floods it to vxlan0."""
        ns_exec(self.ns.name, "ping", "-n", "-c", "1", "-W", "0.3", ip, check=False)

    def neigh(self) -> dict:
        out = ns_exec(self.ns.name, "ip", "-j", "neigh", "show", "dev", "vxlan0").stdout
        return {e["dst"]: e.get("lladdr") for e in json.loads(out or "[]") if "PERMANENT" in e.get("state", [])}

    def fdb(self) -> list:
        out = ns_exec(self.ns.name, "bridge", "-j", "fdb", "show", "dev", "vxlan0").stdout
        return sorted((e["mac"], e["dst"]) for e in json.loads(out or "[]") if e.get("dst") and e["mac"] != "00:00:00:00:00:00")

    def wait_installed(self, ip: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.miss(ip)
            neigh = self.neigh()
            if ip in neigh:
                return neigh
        raise AssertionError("%s never installed: neigh %s fdb %s\n%s" % (ip, self.neigh(), self.fdb(), self.log()[-4000:]))


@pytest.fixture
def agent(underlay, tmp_path):
    """`underlay` with br1 (100.0.0.1/24) and vxlan0 (VNI 100, l2miss l3miss) as DOVE mode makes
    them, and an agent to run there; the agent is stopped before the namespace goes."""
    with underlay.ipr() as ipr:
        eth0 = ipr.link_lookup(ifname="eth0")[0]
        ipr.link("add", ifname="br1", kind="bridge")
        br1 = ipr.link_lookup(ifname="br1")[0]
        ipr.addr("add", index=br1, address="100.0.0.1", prefixlen=24)
        ipr.link("add", ifname="vxlan0", kind="vxlan", vxlan_id=100, vxlan_port=4789, vxlan_link=eth0, vxlan_local="192.168.1.2",
                 vxlan_learning=0, vxlan_proxy=1, vxlan_l2miss=1, vxlan_l3miss=1)
        vx = ipr.link_lookup(ifname="vxlan0")[0]
        ipr.link("set", index=vx, master=br1)
        ipr.link("set", index=vx, state="up")
        ipr.link("set", index=br1, state="up")
    running = AgentInNamespace(underlay, tmp_path)
    try:
        yield running
    finally:
        running.stop()


GOOD = (key("100.0.0.3", "h2"), value("100.0.0.3", MAC3, H2, "h2"))


def test_poison_records_on_the_watch_are_skipped_and_a_good_one_is_served(agent):
    """Regression (issue 22): one record with a NUL in its IP (ValueError from inet_pton) or a
    value of "[" * 50000 (RecursionError from json, when under the size cap) used to kill the
    agent. Fed through the watch stream, each is logged and skipped; the agent keeps running and
    answers a miss for the good record that comes after them."""
    poison = [
        {"put": [key("100.0.0.9", "h2"), value("100.0.0.9\0", "02:00:64:00:00:09", H2, "h2"), 20]},  # NUL in the value's IP
        {"put": [key("100.0.0.8\0", "h2"), value("100.0.0.8", "02:00:64:00:00:08", H2, "h2"), 21]},  # NUL in the key's IP
        {"put": [key("100.0.0.7", "h2"), "[" * 50000, 22]},  # over the value cap: refused before parsing
        {"put": [key("100.0.0.6", "h2"), "[" * 4000, 23]},  # under the cap, deep enough for a RecursionError
        {"put": [key("100.0.0.5", "h" * 2000), value("100.0.0.5", MAC5, H2, "h2"), 24]},  # over the key cap
    ]
    agent.start(watch=poison + [{"put": [GOOD[0], GOOD[1], 30]}])
    agent.wait(lambda m: m["counters"]["records_rejected"] >= 5 and m["cache_size"] == 1, "5 rejections and the good record")
    neigh = agent.wait_installed("100.0.0.3")
    assert neigh["100.0.0.3"] == MAC3
    assert (MAC3, H2) in agent.fdb()
    log = agent.log()
    assert log.count("rejected store record") >= 5, log
    assert "value over 4096 bytes" in log and "RecursionError" in log and "Traceback" not in log, log
    assert agent.proc.poll() is None


def test_garbled_gateway_answers_resync_instead_of_killing_the_watcher(agent):
    """The gateway's own answers are checked too: a watch message nested deeply enough for a
    RecursionError breaks the stream (GatewayError: the watcher reads the prefix again), and a kv
    the range garbles (base64 that does not decode) is skipped and counted. The good record
    still gets through. (Other garbled messages: tests/unit/test_dove_agent_fuzz.py.)"""
    garbage = [
        {"raw": "{\"result\": " + "[" * 5000},  # never completes: RecursionError in the stream parser
    ]
    kvs = [
        (key("100.0.0.4", "h3"), {"raw_b64": "!!not base64!!"}, 5),
        (GOOD[0], GOOD[1], 6),
    ]
    agent.start(kvs=kvs, watch=garbage)
    metrics = agent.wait(lambda m: m["counters"]["resyncs"] >= 1 and m["cache_size"] == 1, "a load with the good record")
    assert metrics["counters"]["records_rejected"] >= 1
    agent.wait_installed("100.0.0.3")
    log = agent.log()
    assert "not base64" in log and "Traceback" not in log, log
    assert agent.proc.poll() is None


def test_forged_records_are_not_installed_the_genuine_one_is(agent):
    """Whoever can write the store used to take over a VM's address: any record with a unicast
    vtep was installed. Now the agent believes a record only from an inventory host with that
    host's VTEP, and not for a VM address (IP or MAC) the inventory puts on another host. The
    forged records come later (higher revision) than the genuine one, so they would win."""
    inventory = [{"vni": 100, "ip": "100.0.0.3", "mac": MAC3, "host": "h2"}]
    kvs = [
        GOOD + (10,),
        # 100.0.0.3 claimed by h3, with h3's genuine VTEP: the inventory puts it on h2
        (key("100.0.0.3", "h3"), value("100.0.0.3", "02:66:66:66:66:03", H3, "h3"), 20),
        # 100.0.0.3 from a host the inventory does not know, at an address it does not know
        (key("100.0.0.3", "h9"), value("100.0.0.3", "02:66:66:66:66:09", "10.9.9.9", "h9"), 21),
        # h2 by name but another VTEP (a host's name does not lend its VTEP to a stranger)
        (key("100.0.0.5", "h2"), value("100.0.0.5", MAC5, "10.9.9.9", "h2"), 22),
        # h2's VM's MAC claimed for another address by h3 (an l2miss for MAC3 would go to h3)
        (key("100.0.0.6", "h3"), value("100.0.0.6", MAC3, H3, "h3"), 23),
    ]
    agent.start(kvs=kvs, inventory_endpoints=inventory)
    metrics = agent.wait(lambda m: m["counters"]["resyncs"] >= 1, "the first load")
    assert metrics["cache_size"] == 1 and metrics["counters"]["records_untrusted"] == 4, metrics
    neigh = agent.wait_installed("100.0.0.3")
    for ip in ("100.0.0.5", "100.0.0.6"):
        agent.miss(ip)
    agent.wait(lambda m: m["counters"]["misses_unknown"] >= 2, "the misses for 100.0.0.5 and .6 (unknown: refused)")
    assert agent.neigh() == {"100.0.0.3": MAC3}, neigh
    assert agent.fdb() == [(MAC3, H2)]
    log = agent.log()
    assert "belongs to host h2 in the inventory, not h3" in log and "host 'h9' is not an inventory host" in log, log
    assert "vtep 10.9.9.9 is not a VTEP of host h2" in log, log


def test_records_of_unserved_vnis_are_not_kept_and_a_vni_holds_at_most_its_cap(agent):
    """The cache holds only the VNIs this agent serves, and at most max_records_per_vni records
    per VNI; what comes past the cap is refused and counted, what it holds is still served."""
    kvs = [(key("100.0.0.%d" % n, "h2"), value("100.0.0.%d" % n, "02:00:64:00:00:%02x" % n, H2, "h2"), n) for n in range(3, 9)]
    kvs += [(key("100.0.0.3", "h2", vni=200), value("100.0.0.3", MAC3, H2, "h2", vni=200), 50)]
    agent.start(kvs=kvs, max_records_per_vni=4)
    metrics = agent.wait(lambda m: m["counters"]["resyncs"] >= 1, "the first load")
    counters = metrics["counters"]
    assert (metrics["cache_size"], counters["records_over_cap"], counters["records_unserved"]) == (4, 2, 1), metrics
    assert agent.wait_installed("100.0.0.3")["100.0.0.3"] == MAC3
    assert "vni 100 already holds 4 records" in agent.log()


def test_a_vm_moved_in_the_inventory_is_believed_after_a_reload(agent, tmp_path):
    """The inventory says where each VM is; when it changes (a move, converged), the new map is
    believed on SIGHUP and the store is read again: h3's record for 100.0.0.3, refused while the
    inventory put the VM on h2, is installed once the inventory puts it on h3."""
    moved = (key("100.0.0.3", "h3"), value("100.0.0.3", MAC3, H3, "h3"), 20)
    agent.start(kvs=[moved], inventory_endpoints=[{"vni": 100, "ip": "100.0.0.3", "mac": MAC3, "host": "h2"}])
    agent.wait(lambda m: m["counters"]["resyncs"] >= 1 and m["counters"]["records_untrusted"] == 1, "h3's claim refused")
    config = json.loads((tmp_path / "agent.json").read_text())
    config["inventory"]["endpoints"] = [{"vni": 100, "ip": "100.0.0.3", "mac": MAC3, "host": "h3"}]
    (tmp_path / "agent.json").write_text(json.dumps(config))
    agent.proc.send_signal(signal.SIGHUP)
    agent.wait(lambda m: m["cache_size"] == 1, "h3's record believed after the reload")
    assert agent.wait_installed("100.0.0.3")["100.0.0.3"] == MAC3
    assert agent.fdb() == [(MAC3, H3)]
