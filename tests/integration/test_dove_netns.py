"""DOVE test bed: the source document's hosts as throwaway network namespaces, plus its tests.

`DoveNet` builds, without the lab and without Ansible: an underlay namespace with a bridge, one
namespace per host (eth0 on the underlay, vxlan0 `nolearning proxy l2miss l3miss` on br1, VM
namespaces on br1), optionally a controller namespace running etcd on 192.168.1.10, and runs
the agent inside each host namespace. Nothing is created in the machine's own network
namespace; everything is removed by `close()` (the fixtures call it even when a test fails).
The other test_dove_*.py files and benchmarks/dove_latency.py import it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The agent package, run as `python3 <dir> run ...` the way the role runs it; the collection's
# module_utils it reuses come from the checkout (.collections), where the role would copy them.
AGENT = ROOT / "roles" / "dove_agent" / "files" / "overlay_vxlan_agent"
AGENT_ENV = dict(os.environ, PYTHONPATH=str(ROOT / ".collections"))
PYTHON = sys.executable
ETCD = shutil.which("etcd")
NETNS_PREFIX = "ovxd-"
CTL_IP = "192.168.1.10"

sys.path.insert(0, str(AGENT.parent))
sys.path.insert(0, str(ROOT / ".collections"))  # also when imported outside pytest (benchmarks)
from overlay_vxlan_agent import cli as agent_cli  # noqa: E402
from overlay_vxlan_agent import metrics as agent_metrics  # noqa: E402,F401  (benchmarks/dove_latency.py)

try:
    from pyroute2 import netns as pyroute2_netns
except ImportError:  # pragma: no cover
    pyroute2_netns = None

PING_SCRIPT = r"""
import json, os, select, socket, struct, sys, time
target, count, interval, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident = os.getpid() & 0xFFFF
def csum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF
rtts = []
for seq in range(1, count + 1):
    payload = b"ovxd" * 8
    head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    packet = struct.pack("!BBHHH", 8, 0, csum(head + payload), ident, seq) + payload
    start = time.perf_counter()
    sock.sendto(packet, (target, 0))
    rtt = None
    deadline = start + timeout
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            break
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            break
        data, addr = sock.recvfrom(2048)
        ihl = (data[0] & 0x0F) * 4
        kind, _code, _sum, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
        if kind == 0 and rid == ident and rseq == seq and addr[0] == target:
            rtt = (time.perf_counter() - start) * 1000.0
            break
    rtts.append(rtt)
    if seq < count:
        time.sleep(max(0.0, interval - (time.perf_counter() - start)))
print(json.dumps(rtts))
"""


def sh(*args, check=True, **kwargs):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kwargs)


def vm_mac(ip: str) -> str:
    a, b, c, d = (int(x) for x in ip.split("."))
    return "02:00:%02x:%02x:%02x:%02x" % (a, b, c, d)


class VM:
    def __init__(self, net, host, index, ip, mac):
        self.net, self.host, self.index, self.ip, self.mac = net, host, index, ip, mac
        self.ns = "%s%s-%sv%d" % (NETNS_PREFIX, net.tag, host.name, index)
        self.host_if = "tap%d" % index
        self.vm_if = "tap2"

    def record(self, host=None):
        host = host or self.host
        return {"vni": 100, "ip": self.ip, "mac": self.mac, "vtep": host.ip, "host": host.name}

    def local_config(self):
        return {"network": "blue", "ip": self.ip, "namespace": self.ns, "vm_if": self.vm_if}

    def ping(self, target, count=1, interval=0.2, timeout=1.0):
        """RTTs in ms (None for a lost packet), measured inside the VM namespace."""
        proc = sh("ip", "netns", "exec", self.ns, PYTHON, "-c", PING_SCRIPT, target, str(count), str(interval), str(timeout),
                  timeout=count * (interval + timeout) + 30)
        return json.loads(proc.stdout)


class Host:
    def __init__(self, net, name, ip):
        self.net, self.name, self.ip = net, name, ip
        self.ns = "%s%s-%s" % (NETNS_PREFIX, net.tag, name)
        self.vms: list[VM] = []
        self.proc = None
        self.dir = net.tmp / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / "agent.json"
        self.log_path = self.dir / "agent.log"
        self.metrics_path = self.dir / "metrics.json"
        self.extra_config: dict = {}

    # --- tables, read back from the kernel with iproute2 (independent of the agent's parsers)
    def neigh(self) -> dict:
        out = sh("ip", "-n", self.ns, "-j", "neigh", "show", "dev", "vxlan0").stdout
        return {e["dst"]: e.get("lladdr") for e in json.loads(out or "[]") if "PERMANENT" in e.get("state", [])}

    def fdb(self) -> dict:
        out = sh("bridge", "-n", self.ns, "-j", "fdb", "show", "dev", "vxlan0").stdout
        return {e["mac"]: e["dst"] for e in json.loads(out or "[]") if "self" in e.get("flags", []) and e.get("dst")}

    def metrics(self) -> dict:
        try:
            return json.loads(self.metrics_path.read_text())
        except (OSError, ValueError):
            return {}

    def counter(self, name) -> int:
        return self.metrics().get("counters", {}).get(name, 0)

    def fresh_metrics(self, timeout=3.0) -> dict:
        """The metrics as written after this call (the agent writes them every 0.2 s here)."""
        since = time.time()
        metrics, _ = wait_for(lambda: (m := self.metrics()) and m.get("updated", 0) > since and m, timeout=timeout)
        assert metrics, "no fresh metrics from %s" % self.name
        return metrics

    def log(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    # --- agent
    def write_config(self, local=None):
        local = self.vms if local is None else local
        config = {
            "host": self.name,
            "vtep": self.ip,
            "backend": self.net.backend,
            "networks": [{"name": "blue", "vni": 100, "vxlan_dev": "vxlan0", "bridge": "br1"}],
            "local_endpoints": [vm.local_config() for vm in local],
            # every host of the bed and its VTEP, as the role renders the inventory's (no
            # endpoint owners: the move tests move VMs without re-rendering every config)
            "inventory": {"vteps": {host.name: [host.ip] for host in self.net.hosts}},
            "etcd": {"endpoints": ["http://%s:2379" % CTL_IP], "prefix": self.net.prefix, "lease_ttl": self.net.lease_ttl,
                     "timeout": 1.0},
            "file": {"path": str(self.net.map_path), "poll_interval": 0.1},
            "metrics_file": str(self.metrics_path),
            "metrics_interval": 0.2,
            "log_level": "debug",
        }
        config.update(self.extra_config)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config, indent=1))
        os.replace(tmp, self.config_path)

    def start_agent(self, wait=True):
        self.write_config() if not self.config_path.exists() else None
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, PYTHON, str(AGENT), "run", "--config", str(self.config_path)],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=AGENT_ENV)
        log.close()
        if wait:
            self.wait_synced()

    def wait_synced(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError("agent on %s exited %s:\n%s" % (self.name, self.proc.returncode, self.log()[-3000:]))
            metrics = self.metrics()
            if metrics.get("pid") == self.proc.pid and metrics.get("counters", {}).get("resyncs", 0) >= 1:
                return metrics
            time.sleep(0.05)
        raise AssertionError("agent on %s never synced:\n%s" % (self.name, self.log()[-3000:]))

    def signal_agent(self, signum):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)

    def stop_agent(self, kill=False):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class DoveNet:
    """Hosts h1..hN on 192.168.1.2.., each with `vms_per_host` VMs (100.0.<host>.<n> style IPs)."""

    def __init__(self, tmp: Path, backend="file", hosts=3, vms_per_host=1, lease_ttl=10, controller=None):
        if pyroute2_netns is None:
            pytest.fail("pyroute2 is required (scripts/setup.sh installs it)")
        if os.geteuid() != 0:
            pytest.fail("needs root (network namespaces)")
        self.tag = uuid.uuid4().hex[:6]
        self.tmp = Path(tmp)
        self.backend = backend
        self.lease_ttl = lease_ttl
        self.prefix = "/ovxd-%s" % self.tag
        self.map_path = self.tmp / "endpoints.json"
        self.namespaces: list[str] = []
        self.hosts: list[Host] = []
        self.etcd_proc = None
        self.etcd_dir = self.tmp / "etcd"
        self.controller = backend == "etcd" if controller is None else controller
        self.underlay = self._netns("u")
        try:
            self._build(hosts, vms_per_host)
        except BaseException:
            self.close()
            raise

    # --- construction
    def _netns(self, suffix) -> str:
        name = "%s%s-%s" % (NETNS_PREFIX, self.tag, suffix)
        pyroute2_netns.create(name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def _underlay_port(self, ns, port, ip):
        sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", self.underlay)
        sh("ip", "-n", self.underlay, "link", "set", port, "master", "ubr0", "up")
        sh("ip", "-n", ns, "addr", "add", "%s/24" % ip, "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")

    def _build(self, hosts, vms_per_host):
        sh("ip", "-n", self.underlay, "link", "add", "ubr0", "type", "bridge")
        sh("ip", "-n", self.underlay, "link", "set", "ubr0", "up")
        for n in range(1, hosts + 1):
            host = Host(self, "h%d" % n, "192.168.1.%d" % (n + 1))
            host.ns = self._netns(host.name)
            self._underlay_port(host.ns, "u%d" % n, host.ip)
            sh("ip", "-n", host.ns, "link", "add", "vxlan0", "type", "vxlan", "id", "100", "dstport", "4789", "local", host.ip,
               "dev", "eth0", "nolearning", "proxy", "l2miss", "l3miss")
            sh("ip", "-n", host.ns, "link", "add", "br1", "type", "bridge")
            sh("ip", "-n", host.ns, "link", "set", "vxlan0", "master", "br1")
            sh("ip", "-n", host.ns, "link", "set", "vxlan0", "up")
            sh("ip", "-n", host.ns, "link", "set", "br1", "up")
            self.hosts.append(host)
            for index in range(1, vms_per_host + 1):
                ip = "100.0.0.%d" % (n + 1) if vms_per_host == 1 else "100.0.%d.%d" % (n, index)
                self.add_vm(host, ip, index=index)
        if self.controller:
            self.ctl = self._netns("ctl")
            self._underlay_port(self.ctl, "uc", CTL_IP)
        self.write_map()

    def add_vm(self, host: Host, ip: str, mac: str | None = None, index: int | None = None) -> VM:
        index = index if index is not None else len(host.vms) + 1
        vm = VM(self, host, index, ip, mac or vm_mac(ip))
        vm.ns = self._netns("%sv%d" % (host.name, index)) if vm.ns not in self.namespaces else vm.ns
        sh("ip", "-n", host.ns, "link", "add", vm.host_if, "type", "veth", "peer", "name", vm.vm_if, "netns", vm.ns)
        sh("ip", "-n", host.ns, "link", "set", vm.host_if, "master", "br1", "up")
        sh("ip", "-n", vm.ns, "link", "set", vm.vm_if, "address", vm.mac)
        prefix = 24 if ip.startswith("100.0.0.") else 16
        sh("ip", "-n", vm.ns, "addr", "add", "%s/%d" % (ip, prefix), "dev", vm.vm_if)
        sh("ip", "-n", vm.ns, "link", "set", vm.vm_if, "up")
        host.vms.append(vm)
        return vm

    def remove_vm(self, vm: VM):
        vm.host.vms.remove(vm)
        sh("ip", "-n", vm.host.ns, "link", "del", vm.host_if, check=False)
        pyroute2_netns.remove(vm.ns)
        self.namespaces.remove(vm.ns)

    def vms(self) -> list[VM]:
        return [vm for host in self.hosts for vm in host.vms]

    def host(self, name) -> Host:
        return next(h for h in self.hosts if h.name == name)

    # --- file backend
    def write_map(self, records=None, extra=()):
        records = [vm.record() for vm in self.vms()] if records is None else records
        tmp = self.map_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"endpoints": list(records) + list(extra)}, indent=1))
        os.replace(tmp, self.map_path)

    # --- etcd
    def start_etcd(self, fresh=True):
        if ETCD is None:
            pytest.fail("etcd is not installed: scripts/setup.sh installs etcd-server")
        if fresh and self.etcd_dir.exists():
            shutil.rmtree(self.etcd_dir)
        log = open(self.tmp / "etcd.log", "ab")
        self.etcd_proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ctl, ETCD, "--name", "ctl", "--data-dir", str(self.etcd_dir),
             "--listen-client-urls", "http://%s:2379" % CTL_IP, "--advertise-client-urls", "http://%s:2379" % CTL_IP,
             "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
             "--initial-cluster", "ctl=http://127.0.0.1:2380", "--initial-cluster-state", "new",
             "--listen-metrics-urls", "http://127.0.0.1:2381"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.etcd_proc.poll() is not None:
                raise AssertionError("etcd exited: %s" % (self.tmp / "etcd.log").read_text()[-2000:])
            if self.store("range", "/").returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError("etcd did not become ready")

    def stop_etcd(self):
        if self.etcd_proc is not None and self.etcd_proc.poll() is None:
            self.etcd_proc.terminate()
            try:
                self.etcd_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.etcd_proc.kill()
                self.etcd_proc.wait(5)
        self.etcd_proc = None

    def store(self, op, key, value=None):
        """put / delete / range against etcd, from inside the controller namespace (our client)."""
        code = ("import json, sys; sys.path.insert(0, %r); from overlay_vxlan_agent.etcd_client import EtcdClient; "
                "c = EtcdClient(['http://%s:2379'], timeout=1.0); op, key = sys.argv[1], sys.argv[2]\n"
                "if op == 'put': c.put(key, sys.argv[3])\n"
                "elif op == 'delete': c.delete(key)\n"
                "else:\n rev, kvs = c.range_prefix(key); print(json.dumps([[k, v.decode(), r] for k, v, r in kvs]))\n"
                % (str(AGENT.parent), CTL_IP))
        args = ["ip", "netns", "exec", self.ctl, PYTHON, "-c", code, op, key] + ([value] if value is not None else [])
        return subprocess.run(args, capture_output=True, text=True, timeout=30)

    def store_records(self) -> dict:
        proc = self.store("range", self.prefix + "/endpoints/")
        assert proc.returncode == 0, proc.stderr
        return {key: json.loads(value) if value.startswith("{") else value for key, value, _rev in json.loads(proc.stdout)}

    def key(self, vm: VM, host: Host | None = None) -> str:
        return "%s/endpoints/100/%s/%s" % (self.prefix, vm.ip, (host or vm.host).name)

    # --- agents
    def start_agents(self):
        for host in self.hosts:
            host.write_config()
            host.start_agent(wait=False)
        for host in self.hosts:
            host.wait_synced()

    def close(self):
        for host in self.hosts:
            try:
                host.stop_agent()
            except OSError:
                pass
        self.stop_etcd()
        for name in reversed(self.namespaces):
            try:
                pyroute2_netns.remove(name)
            except OSError:
                pass
        self.namespaces = []


def wait_for(predicate, timeout=5.0, interval=0.02):
    """Poll `predicate` until it is truthy; return (value, seconds it took)."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value, time.monotonic() - start
        time.sleep(interval)


@pytest.fixture
def dove_file(tmp_path):
    net = DoveNet(tmp_path, backend="file")
    try:
        yield net
    finally:
        net.close()


# --- tests of the bed itself and of the agent as a supervised process


def test_bed_underlay_and_nothing_in_root_namespace(dove_file):
    """VTEPs reach each other over the underlay; no test interface lands in the root netns."""
    h1, h2 = dove_file.hosts[:2]
    proc = sh("ip", "netns", "exec", h1.ns, PYTHON, "-c", PING_SCRIPT, h2.ip, "1", "0.1", "1.0")
    assert json.loads(proc.stdout)[0] is not None
    root_links = sh("ip", "-j", "link", "show").stdout
    assert "vxlan0" not in root_links and "ubr0" not in root_links
    assert all(name.startswith(NETNS_PREFIX) for name in dove_file.namespaces)


def test_supervised_like_etcd_status_reads_the_pid_file(dove_file):
    """The lab supervises the agent the way roles/controller supervises etcd (the same
    start-stop-daemon command lines as roles/dove_agent/tasks/process.yml); `status` reads the pid
    file it makes, and a dead or reused PID never reads as running."""
    h1 = dove_file.hosts[0]
    h1.write_config()
    pidfile = dove_file.tmp / "h1" / "agent.pid"
    status_cmd = [PYTHON, str(AGENT), "status", "--config", str(h1.config_path), "--pidfile", str(pidfile)]
    start = ["ip", "netns", "exec", h1.ns, "start-stop-daemon", "--start", "--background", "--make-pidfile",
             "--pidfile", str(pidfile), "--output", str(h1.log_path), "--exec", PYTHON, "--", str(AGENT), "run",
             "--config", str(h1.config_path)]
    stop = ["start-stop-daemon", "--stop", "--pidfile", str(pidfile), "--exec", PYTHON, "--retry", "TERM/10/KILL/5",
            "--remove-pidfile", "--oknodo"]
    assert subprocess.run(["start-stop-daemon", "--status", "--pidfile", str(pidfile)]).returncode != 0
    sh(*start, env=AGENT_ENV)
    try:
        pid = int(pidfile.read_text())
        _, took = wait_for(lambda: h1.metrics().get("pid") == pid, timeout=15)
        proc = subprocess.run(status_cmd + ["--wait", "10"], capture_output=True, text=True, env=AGENT_ENV)
        status = json.loads(proc.stdout)
        assert proc.returncode == 0 and status["running"] and status["pid"] == pid and status["metrics"]["pid"] == pid, h1.log()
        assert subprocess.run(["start-stop-daemon", "--status", "--pidfile", str(pidfile)]).returncode == 0
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not Path("/proc/%d" % pid).exists(), timeout=5)
        proc = subprocess.run(status_cmd, capture_output=True, text=True, env=AGENT_ENV)
        assert proc.returncode == 3 and json.loads(proc.stdout)["running"] is False
    finally:
        sh(*stop, check=False)
    assert not pidfile.exists()
    stale = dove_file.tmp / "stale.pid"
    stale.write_text("%d\n" % os.getpid())  # a reused PID: a live process that is not the agent
    assert agent_cli.read_pid(str(stale)) is None


OVERRUN_SCRIPT = r"""
import errno, json, sys
sys.path[:0] = sys.argv[1:3]
from pyroute2 import IPRoute
from overlay_vxlan_agent.kernel import Kernel
kernel = Kernel(rcvbuf=65536)         # some notifications fit, a thousand do not
with IPRoute() as ipr:
    ipr.link("add", ifname="b0", kind="bridge")
    index = ipr.link_lookup(ifname="b0")[0]
    ipr.link("set", index=index, state="up")
    kernel.recv_events()              # drain the link notifications
    for n in range(1000):
        ipr.neigh("replace", ifindex=index, dst="10.9.%d.%d" % (n // 250, n % 250 + 1),
                  lladdr="02:00:00:00:%02x:%02x" % (n // 256, n % 256), state=128)
    result = {}
    try:
        kernel.recv_events()
        result["first"] = "no error"
    except OSError as exc:
        result["first"] = errno.errorcode.get(exc.errno, exc.errno)
    ipr.neigh("replace", ifindex=index, dst="10.9.9.9", lladdr="02:00:00:00:99:99", state=128)
    # after an overrun the socket reads on (only misses are decoded in full: count the types)
    result["after"] = sorted({msg_type for msg_type, _msg in kernel.recv_events()})
print(json.dumps(result))
"""


def test_event_queue_overrun_is_reported_as_enobufs_and_reading_goes_on():
    """The agent reads its bound netlink socket itself (Kernel.recv_events): when the kernel
    drops notifications the read fails with ENOBUFS, which the daemon counts and logs
    (events_lost), and the next read returns the notifications that came after."""
    ns = NETNS_PREFIX + "ovr-" + uuid.uuid4().hex[:6]
    sh("ip", "netns", "add", ns)
    try:
        proc = sh("ip", "netns", "exec", ns, PYTHON, "-c", OVERRUN_SCRIPT, str(AGENT.parent), str(ROOT / ".collections"))
        result = json.loads(proc.stdout)
        assert result["first"] == "ENOBUFS", result
        assert result["after"] == [28], result  # RTM_NEWNEIGH, at least the entry added after the overrun
    finally:
        sh("ip", "netns", "del", ns, check=False)
