"""DOVE mode with the etcd backend: etcd runs inside a controller namespace on the underlay
(192.168.1.10), never in the machine's own namespace. Faults from issue 5, each a test."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from lab_fixtures import DEFAULT_INVENTORY, ROOT, Lab, _destroy_all, recap, root_netns_snapshot, unique_lab_name
from test_dove_netns import PYTHON, DoveNet, sh, wait_for

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
    # a good record is accepted (from an inventory host, h2, with its VTEP)
    good = json.dumps({"vni": 100, "ip": "100.0.0.60", "mac": "02:00:00:00:00:60", "vtep": "192.168.1.3", "host": "h2"})
    assert net.store("put", net.prefix + "/endpoints/100/100.0.0.60/h2", good).returncode == 0
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


# --- the controller role's etcd authorisation (issue 22), on a lab ------------------------------
# One lab for these tests (the repository's lab inventory: ctl runs etcd, h1-h3 are the DOVE
# hosts). The first run is playbooks/dove.yml with the defaults, so etcd authentication is on:
# the controller role on ctl (a user and a role per host), the converge on h1-h3, whose agents log
# in with their host's password (CN-less client certificates). Later runs play only the
# controller role and the dove_agent role's PKI part (RBAC_PLAY). A host is also played by a
# small client run inside its own network namespace with that host's files, as a compromised
# host would use them.

RBAC_PLAY = """\
- name: The controller
  hosts: controller
  gather_facts: false
  roles: [overlay.vxlan.controller]
- name: The DOVE hosts' etcd credentials
  hosts: overlay
  gather_facts: false
  tasks:
    - name: Client certificate, key, CA and etcd password
      ansible.builtin.include_role: {name: overlay.vxlan.dove_agent, tasks_from: pki.yml}
"""

# A host's etcd client (the JSON gateway, as the agent talks to it): argv[1] is a JSON spec
# {ip, port, ca, cert, key, user, password_file, ops: [[path, body], ...]}. With a user it first
# authenticates and sends the token; "$ID" in a body is replaced by the last lease granted.
# Prints one {"status": int|None, "body"|"error": str} per request.
HOST_CLIENT = r"""
import http.client, json, ssl, sys
spec = json.loads(sys.argv[1])
ctx = ssl.create_default_context(cafile=spec["ca"])
ctx.load_cert_chain(spec["cert"], spec["key"])
token, lease, out = None, "0", []
def call(path, body):
    global lease
    body = json.loads(json.dumps(body).replace("$ID", lease))
    try:
        conn = http.client.HTTPSConnection(spec["ip"], spec.get("port", 2379), timeout=5, context=ctx)
        conn.request("POST", path, json.dumps(body), dict({"Content-Type": "application/json"},
                                                           **({"Authorization": token} if token else {})))
        resp = conn.getresponse()
        text = resp.read().decode(errors="replace")
        result = {"status": resp.status, "body": text}
        if resp.status == 200 and path.endswith("lease/grant"):
            lease = json.loads(text)["ID"]
    except (OSError, http.client.HTTPException) as exc:
        result = {"status": None, "error": "%s: %s" % (type(exc).__name__, exc)}
    out.append(result)
    return result
if spec.get("user"):
    try:
        with open(spec["password_file"]) as handle:
            password = handle.read().strip()
    except OSError as exc:
        out.append({"status": None, "error": "no password: %s" % exc})
    else:
        answer = call("/v3/auth/authenticate", {"name": spec["user"], "password": password})
        if answer["status"] == 200:
            token = json.loads(answer["body"])["token"]
for path, body in spec["ops"]:
    call(path, body)
print(json.dumps(out))
"""

# A TLS handshake to etcd's peer port with a certificate: "ok" or the error.
PEER_HANDSHAKE = r"""
import socket, ssl, sys
ip, cert, key = sys.argv[1:4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
ctx.load_cert_chain(cert, key)
try:
    with ctx.wrap_socket(socket.create_connection((ip, 2380), timeout=5)) as tls:
        tls.sendall(b"GET /version HTTP/1.0\r\n\r\n")
        answer = b""
        while len(answer) < 4096:
            chunk = tls.recv(4096)
            if not chunk:
                break
            answer += chunk
        print("ok" if answer.startswith(b"HTTP/1.0 200") else "no answer: %r" % answer[:80])
except (OSError, ssl.SSLError) as exc:
    print("refused: %s" % exc)
"""

PREFIX = "/overlay-vxlan"
DOVE_PLAY = ROOT / "playbooks" / "dove.yml"
VMS = {"h1": "100.0.0.2", "h2": "100.0.0.3", "h3": "100.0.0.4"}  # inventories/lab: one VM (ns1) per host
VTEPS = {"h1": "192.168.1.2", "h2": "192.168.1.3", "h3": "192.168.1.4"}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class RbacLab:
    def __init__(self, lab, tmp):
        self.lab, self.tmp = lab, tmp
        self.pki = tmp / "pki"
        self.play = tmp / "rbac.yml"
        self.play.write_text(RBAC_PLAY)
        # the same inventory without h3 (a retired host): a copy of inventories/lab, h3 removed
        retired = tmp / "inventory-without-h3"
        shutil.copytree(DEFAULT_INVENTORY, retired)
        data = yaml.safe_load((retired / "hosts.yml").read_text())
        del data["all"]["children"]["overlay"]["hosts"]["h3"]
        (retired / "hosts.yml").write_text(yaml.safe_dump(data))
        self.retired = Lab(lab.name, retired, lab.hosts)
        self.first = None

    def run(self, *extra, lab=None, check=True, play=None):
        """A run with the defaults (dove_etcd_auth on) and the test's PKI directory."""
        return (lab or self.lab).playbook(play or self.play, "-e", "dove_pki_dir=%s" % self.pki, *extra, check=check)

    def files(self, host) -> str:
        kind = "etcd" if host == "ctl" else "dove"
        return "/run/overlay-vxlan-lab/%s/%s/%s/pki" % (self.lab.name, host, kind)

    def as_host(self, host, ops, user=True, cert=None, key=None, ca=None):
        """Requests to ctl's gateway from inside `host` with its own files (cert/key/ca overridable)."""
        pki = self.files(host)
        spec = {"ip": "192.168.1.10", "ca": ca or pki + "/ca.pem", "cert": cert or pki + "/client.pem",
                "key": key or pki + "/client-key.pem", "user": host if user else None,
                "password_file": pki + "/etcd-password", "ops": ops}
        proc = self.lab.enter(host, PYTHON, "-c", HOST_CLIENT, json.dumps(spec), timeout=60)
        return json.loads(proc.stdout)

    def etcdctl(self, *args, cert="root", check=True):
        """etcdctl (gRPC) inside ctl with one of ctl's certificates (root: the role's admin user)."""
        pki = self.files("ctl")
        return self.lab.enter("ctl", "etcdctl", "--endpoints", "https://192.168.1.10:2379", "--cacert", pki + "/ca.pem",
                              "--cert", "%s/%s.pem" % (pki, cert), "--key", "%s/%s-key.pem" % (pki, cert), *args,
                              check=check, env=dict(os.environ, ETCDCTL_API="3"), timeout=60)

    def value(self, key):
        kvs = json.loads(self.etcdctl("get", key, "-w", "json").stdout).get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None

    def auth_enabled(self) -> bool:
        """etcd 3.4's etcdctl has no `auth status`: a read without a token is refused when it is on
        (permission denied: a CN-less client certificate maps to no user)."""
        answer = self.as_host("h1", [["/v3/kv/range", {"key": _b64(PREFIX + "/")}]], user=False)[0]
        return answer["status"] == 403 and "permission denied" in answer.get("body", "")

    def lease_of(self, key) -> str:
        kvs = json.loads(self.etcdctl("get", key, "-w", "json").stdout).get("kvs") or []
        return str(kvs[0]["lease"]) if kvs and kvs[0].get("lease") else "0"

    # --- the agents the dove_agent role runs on the lab hosts (files in its lab directory)
    def agent_file(self, host, name) -> Path:
        return Path(self.files(host)).parent / name

    def agent_log(self, host) -> str:
        try:
            return self.agent_file(host, "agent.log").read_text()
        except OSError:
            return ""

    def agent_pid(self, host) -> int:
        return int(self.agent_file(host, "agent.pid").read_text())

    def agent_metrics(self, host) -> dict:
        """The agent's metrics as written after this call (it writes them every second)."""
        since = time.time()
        path = self.agent_file(host, "metrics.json")

        def fresh():
            try:
                metrics = json.loads(path.read_text())
            except (OSError, ValueError):
                return None
            return metrics if metrics.get("updated", 0) > since else None
        metrics, _ = wait_for(fresh, timeout=5)
        assert metrics, "no fresh metrics from the agent on %s" % host
        return metrics

    def reconfigure_agent(self, host, change):
        """Edit the agent's configuration file and make it reload (SIGHUP)."""
        path = self.agent_file(host, "agent.json")
        config = json.loads(path.read_text())
        change(config)
        path.write_text(json.dumps(config, indent=1))
        os.kill(self.agent_pid(host), signal.SIGHUP)

    def records(self) -> dict:
        out = json.loads(self.etcdctl("get", "--prefix", PREFIX + "/endpoints/", "-w", "json").stdout)
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]).decode() for kv in out.get("kvs") or []}

    def vxlan_table(self, host) -> tuple:
        """(neighbours {ip: mac}, fdb {mac: vtep}) of vxlan0 on a lab host, read with iproute2."""
        neigh = json.loads(self.lab.enter(host, "ip", "-j", "neigh", "show", "dev", "vxlan0").stdout or "[]")
        fdb = json.loads(self.lab.enter(host, "bridge", "-j", "fdb", "show", "dev", "vxlan0").stdout or "[]")
        return ({e["dst"]: e.get("lladdr") for e in neigh if e.get("lladdr")},
                {e["mac"]: e["dst"] for e in fdb if e.get("dst") and e["mac"] != "00:00:00:00:00:00"})

    def serial(self, host, name) -> int:
        from cryptography import x509
        return x509.load_pem_x509_certificate(Path(self.files(host), name).read_bytes()).serial_number


@pytest.fixture(scope="module")
def rbac(tmp_path_factory):
    root_before = root_netns_snapshot()
    lab = Lab(unique_lab_name(), DEFAULT_INVENTORY, {"h1": "192.168.1.2", "h2": "192.168.1.3", "h3": "192.168.1.4",
                                                     "ctl": "192.168.1.10"})
    try:
        lab.create()
        bed = RbacLab(lab, tmp_path_factory.mktemp("rbac"))
        bed.first = bed.run("--diff", check=False, play=DOVE_PLAY)  # the tests judge it
        yield bed
    finally:
        _destroy_all([lab])
    assert root_netns_snapshot() == root_before, "the lab left something in the machine's own namespace"


def _statuses(results) -> list:
    return [r["status"] for r in results]


def test_controller_diff_never_prints_a_private_key(rbac):
    """The first run, with --diff, makes every key and password and copies them to the hosts."""
    out = rbac.first.stdout + rbac.first.stderr
    assert "PRIVATE KEY" not in out, [line for line in out.splitlines() if "PRIVATE KEY" in line][:3]
    assert rbac.first.returncode == 0, out[-4000:]
    passwords = [(rbac.pki / ("%s-etcd-password" % h)).read_text() for h in ("h1", "h2", "h3")]
    assert all(len(p) == 32 for p in passwords) and len(set(passwords)) == 3
    assert not any(p in out for p in passwords)
    # ... and they are where they belong: keys 0600, the root user's certificate only on ctl
    for host, name in (("ctl", "member-key.pem"), ("ctl", "peer-key.pem"), ("ctl", "root-key.pem"),
                       ("h2", "client-key.pem"), ("h2", "etcd-password")):
        assert oct(os.stat(os.path.join(rbac.files(host), name)).st_mode & 0o777) == "0o600", (host, name)
    assert not any(os.path.exists(os.path.join(rbac.files(h), "root.pem")) for h in ("h1", "h2", "h3"))


def test_dove_converges_with_etcd_authentication_on_by_default(rbac):
    """No dove_etcd_auth given: authentication is on, every agent logs in as its host and
    registers its VM, and the VMs reach each other through the entries the agents install."""
    assert rbac.first.returncode == 0, rbac.first.stdout[-4000:]
    assert rbac.auth_enabled()
    for host in VMS:
        etcd = json.loads(rbac.agent_file(host, "agent.json").read_text())["etcd"]
        assert (etcd["user"], etcd["password_file"]) == (host, rbac.files(host) + "/etcd-password"), etcd
        log = rbac.agent_log(host)
        assert "authenticated as %s" % host in log and "Traceback" not in log, log[-3000:]
        assert rbac.agent_metrics(host)["store"]["state"] == "connected"
    ok, _ = wait_for(lambda: set(rbac.records()) == {"%s/endpoints/100/%s/%s" % (PREFIX, ip, host) for host, ip in VMS.items()},
                     timeout=10)
    assert ok, rbac.records()
    for source, target in (("h1", "h2"), ("h1", "h3"), ("h2", "h3")):
        rbac.lab.ping(source, VMS[target], netns="ns1")
    neigh, fdb = rbac.vxlan_table("h1")
    assert neigh[VMS["h3"]] in fdb and fdb[neigh[VMS["h3"]]] == VTEPS["h3"], (neigh, fdb)


def test_etcd_rbac_refuses_forged_writes_and_changes_nothing_the_second_time(rbac):
    """h2, with all of its own files, tries to take over h3's and h1's VMs: etcd refuses every
    forged write, and the agents go on installing the genuine records (h3 learns h1's VM)."""
    assert rbac.first.returncode == 0, rbac.first.stdout[-4000:]
    h3_key, h2_key = PREFIX + "/endpoints/100/100.0.0.4/h3", PREFIX + "/endpoints/100/100.0.0.3/h2"
    h1_key = PREFIX + "/endpoints/100/100.0.0.2/h1"
    ok, _ = wait_for(lambda: all(rbac.value(key) for key in (h1_key, h2_key, h3_key)), timeout=10)
    assert ok, rbac.records()
    # the records as the agents registered them, each under its agent's lease
    genuine = {key: rbac.value(key) for key in (h1_key, h2_key, h3_key)}
    h3_lease = rbac.lease_of(h3_key)
    assert h3_lease != "0"
    assert json.loads(genuine[h3_key])["vtep"] == VTEPS["h3"]
    forged = json.dumps({"host": "h3", "ip": "100.0.0.4", "mac": "02:66:6f:72:67:65", "vni": 100, "vtep": "192.168.1.3"})
    forged_h1 = json.dumps({"host": "h1", "ip": "100.0.0.2", "mac": "02:66:6f:72:67:66", "vni": 100, "vtep": "192.168.1.3"})

    # h2 claims h3's VM, deletes h3's record, revokes h3's lease, claims h1's VM...
    h2 = rbac.as_host("h2", [["/v3/kv/put", {"key": _b64(h3_key), "value": _b64(forged)}],
                             ["/v3/kv/deleterange", {"key": _b64(h3_key)}],
                             ["/v3/lease/revoke", {"ID": h3_lease}],
                             ["/v3/kv/put", {"key": _b64(h2_key), "value": _b64(forged), "lease": h3_lease}],
                             ["/v3/kv/put", {"key": _b64(PREFIX + "/endpoints/100/100.0.0.4/h2"), "value": _b64(forged)}],
                             ["/v3/kv/put", {"key": _b64(h1_key), "value": _b64(forged_h1)}],
                             ["/v3/kv/range", {"key": _b64(h3_key)}],
                             ["/v3/kv/put", {"key": _b64(h2_key), "value": _b64(genuine[h2_key]), "lease": rbac.lease_of(h2_key)}]])
    print("h2 forging h3's and h1's records: %s" % [(r["status"], r.get("body", r.get("error", ""))[:60]) for r in h2])
    assert h2[0]["status"] == 200  # authenticated with its password
    for refused in h2[1:7]:
        assert refused["status"] == 403 and "permission denied" in refused["body"], h2
    assert rbac.value(h3_key) == genuine[h3_key] and rbac.value(h1_key) == genuine[h1_key]  # still theirs
    assert rbac.lease_of(h3_key) == h3_lease
    assert rbac.value(PREFIX + "/endpoints/100/100.0.0.4/h2") is None
    assert h2[7]["status"] == 200 and genuine[h3_key] in base64.b64decode(json.loads(h2[7]["body"])["kvs"][0]["value"]).decode()
    assert h2[8]["status"] == 200  # its own record it may write
    # h3 forgets h1's VM (its VM's ARP cache, vxlan0's neighbour and fdb entries): its agent
    # answers the misses of the next ping from its cache, with h1's genuine record
    h1_mac = json.loads(genuine[h1_key])["mac"]
    rbac.lab.enter("h3", "ip", "neigh", "flush", "all", netns="ns1")
    rbac.lab.enter("h3", "ip", "neigh", "flush", "dev", "vxlan0", "nud", "permanent")
    rbac.lab.enter("h3", "bridge", "fdb", "del", h1_mac, "dev", "vxlan0", "self", check=False)
    assert rbac.vxlan_table("h3") == ({}, {mac: vtep for mac, vtep in rbac.vxlan_table("h3")[1].items() if mac != h1_mac})
    rbac.lab.ping("h3", VMS["h1"], netns="ns1")
    neigh, fdb = rbac.vxlan_table("h3")
    assert neigh.get(VMS["h1"]) == h1_mac and fdb.get(h1_mac) == VTEPS["h1"], (neigh, fdb)
    rbac.lab.ping("h1", VMS["h3"], netns="ns1")
    assert rbac.vxlan_table("h1")[1].get(json.loads(genuine[h3_key])["mac"]) == VTEPS["h3"]
    assert not any("rejected store record" in rbac.agent_log(host) for host in VMS)  # nothing forged reached them

    # h2's certificate without its password, over gRPC: no user, nothing allowed
    h2_pki = rbac.files("h2")
    grpc = rbac.lab.enter("ctl", "etcdctl", "--endpoints", "https://192.168.1.10:2379", "--cacert", h2_pki + "/ca.pem",
                          "--cert", h2_pki + "/client.pem", "--key", h2_pki + "/client-key.pem", "get", h3_key,
                          check=False, env=dict(os.environ, ETCDCTL_API="3"), timeout=60)
    assert grpc.returncode != 0 and "permission denied" in grpc.stderr, grpc.stderr[-500:]
    # a certificate of another CA (CN h2): the TLS handshake fails
    from test_dove_ha import make_pki  # here: that module skips itself without cryptography

    other = rbac.tmp / "other-ca"
    make_pki(other, {}, {"h2": "192.168.1.3"})
    stranger = rbac.as_host("h2", [["/v3/kv/range", {"key": _b64(h3_key)}]], user=False,
                            cert=str(other / "h2.pem"), key=str(other / "h2-key.pem"))
    assert stranger[0]["status"] is None and "SSL" in stranger[0]["error"], stranger

    # what the role set, read back from etcd as root
    assert json.loads(rbac.etcdctl("user", "list", "-w", "json").stdout)["users"] == ["h1", "h2", "h3", "root"]
    perms = json.loads(rbac.etcdctl("role", "get", "overlay-vxlan-host-h2", "-w", "json").stdout)["perm"]
    assert sorted((p.get("permType", 0), base64.b64decode(p["key"]).decode(),
                   base64.b64decode(p["range_end"]).decode() if p.get("range_end") else None) for p in perms) == [
        (0, PREFIX + "/", PREFIX + "0"), (2, PREFIX + "/endpoints/100/100.0.0.3/h2", None)]

    # the second run changes nothing, on ctl and on the hosts
    again = rbac.run()
    stats = recap(again.stdout)
    assert all(s["changed"] == 0 for s in stats.values()), again.stdout[-4000:]
    assert rbac.value(h3_key) == genuine[h3_key]


def test_agents_outlive_a_revoked_token_and_take_refusals_calmly(rbac):
    """etcd forgets every token (authentication disabled and enabled again): the agent whose
    record is then deleted logs in again and puts it back. A host whose key the controller no
    longer grants: its delete is refused and taken as done, its put refused and not hammered."""
    assert rbac.first.returncode == 0, rbac.first.stdout[-4000:]
    h1_key, h2_key = PREFIX + "/endpoints/100/100.0.0.2/h1", PREFIX + "/endpoints/100/100.0.0.3/h2"
    ok, _ = wait_for(lambda: rbac.value(h1_key) and rbac.value(h2_key), timeout=10)
    assert ok, rbac.records()
    rbac.etcdctl("auth", "disable")
    rbac.etcdctl("auth", "enable")
    assert rbac.auth_enabled()
    start = time.monotonic()
    rbac.etcdctl("del", h1_key)  # h1's watch sees it go; its put carries the token etcd forgot
    ok, took = wait_for(lambda: rbac.value(h1_key) is not None, timeout=10)
    print("h1's record back %.2f s after its deletion, with a new token" % (time.monotonic() - start))
    log = rbac.agent_log("h1")
    assert ok, log[-3000:]
    assert "authenticated again as h1 (the token was refused: etcdserver: invalid auth token)" in log, log[-3000:]
    assert json.loads(rbac.value(h1_key))["vtep"] == VTEPS["h1"]

    # the controller stops granting h2 its key (as when its VM moves away in the inventory),
    # and h2's agent is told its VM is gone and another one (which it was never granted) is there
    role = "overlay-vxlan-host-h2"
    rbac.etcdctl("role", "revoke-permission", role, h2_key)
    lines_before = len(rbac.agent_log("h2").splitlines())

    def move(config):
        config["local_endpoints"] = [{"vni": 100, "ip": "100.0.0.9", "mac": "02:00:64:00:00:09", "namespace": None, "vm_if": None}]
    original = json.loads(rbac.agent_file("h2", "agent.json").read_text())
    rbac.reconfigure_agent("h2", move)
    new_log = lambda: "\n".join(rbac.agent_log("h2").splitlines()[lines_before:])  # noqa: E731
    ok, _ = wait_for(lambda: "the key is no longer this host's" in new_log() and "registering %s/endpoints/100/100.0.0.9/h2: etcd refuses"
                     % PREFIX in new_log(), timeout=10)
    assert ok, new_log()
    time.sleep(6)  # a few registration rounds (every 3 s): the refused delete is not tried again
    log = new_log()
    print(log)
    assert log.count("deregistering %s" % h2_key) == 1 and log.count("etcd refuses") == 2, log
    assert "Traceback" not in log and " ERROR " not in log
    assert rbac.value(h2_key) is not None  # refused: the controller role removes such records
    assert rbac.value(PREFIX + "/endpoints/100/100.0.0.9/h2") is None
    os.kill(rbac.agent_pid("h2"), 0)  # alive
    assert rbac.agent_metrics("h2")["store"]["state"] == "connected"  # a refusal is not an outage

    # the grant comes back, so does the original configuration: h2 registers its VM again
    rbac.etcdctl("role", "grant-permission", role, "readwrite", h2_key)
    rbac.reconfigure_agent("h2", lambda config: config.update(original))
    ok, _ = wait_for(lambda: " INFO registered %s" % h2_key in new_log(), timeout=10)
    assert ok, new_log()
    rbac.lab.ping("h1", VMS["h2"], netns="ns1")


def test_peer_port_takes_only_the_peer_ca(rbac):
    """Each certificate is tried from its owner's own address (etcd also matches a peer's IP SAN
    with its address), so only the CA can refuse it."""
    assert rbac.first.returncode == 0, rbac.first.stdout[-4000:]
    ctl = rbac.files("ctl")
    results = {}
    for name, host, cert in (("vtep client", "h2", rbac.files("h2") + "/client"), ("member client-facing", "ctl", ctl + "/member"),
                             ("root user", "ctl", ctl + "/root"), ("member peer", "ctl", ctl + "/peer")):
        results[name] = rbac.lab.enter(host, PYTHON, "-c", PEER_HANDSHAKE, "192.168.1.10", cert + ".pem", cert + "-key.pem",
                                       check=False, timeout=30).stdout.strip() or "no such certificate"
    print(results)
    for name in ("vtep client", "member client-facing"):
        assert results[name].startswith("refused"), results
    assert results["member peer"] == "ok", results
    assert results["root user"].startswith("refused"), results


def test_retired_host_is_refused_and_renewal_reissues_certificates(rbac):
    """h3 leaves the inventory; the same run renews every certificate (window above 825 days).
    In check mode first: reported in the diff, nothing changed."""
    assert rbac.first.returncode == 0, rbac.first.stdout[-4000:]
    h3_key = PREFIX + "/endpoints/100/100.0.0.4/h3"
    if rbac.value(h3_key) is None:  # the test above left h3's record; alone, this test makes it
        assert _statuses(rbac.as_host("h3", [["/v3/kv/put", {"key": _b64(h3_key), "value": _b64("{}")}]])) == [200, 200]
    serials = {(h, n): rbac.serial(h, n) for h, n in (("ctl", "member.pem"), ("ctl", "peer.pem"), ("h1", "client.pem"))}
    ca_serial = rbac.serial("ctl", "ca.pem")

    # (the controller only: the agents' certificates go through the same tasks)
    dry = rbac.run("--check", "--diff", "--limit", "ctl", "-e", "dove_pki_renew_days=900", lab=rbac.retired)
    assert recap(dry.stdout)["ctl"]["changed"] > 0, dry.stdout[-3000:]
    assert "-        overlay-vxlan-host-h3:" in dry.stdout, dry.stdout[-3000:]  # the diff: h3's role goes
    assert "PRIVATE KEY" not in dry.stdout
    assert "h3" in json.loads(rbac.etcdctl("user", "list", "-w", "json").stdout)["users"]
    assert rbac.value(h3_key) is not None
    assert rbac.serial("ctl", "member.pem") == serials[("ctl", "member.pem")]
    assert rbac.serial("ctl", "peer.pem") == serials[("ctl", "peer.pem")]

    rbac.run("-e", "dove_pki_renew_days=900", lab=rbac.retired)
    assert json.loads(rbac.etcdctl("user", "list", "-w", "json").stdout)["users"] == ["h1", "h2", "root"]
    assert "overlay-vxlan-host-h3" not in json.loads(rbac.etcdctl("role", "list", "-w", "json").stdout).get("roles", [])
    assert rbac.value(h3_key) is None  # its record, which no host may write any more, is gone
    retired = rbac.as_host("h3", [["/v3/kv/put", {"key": _b64(h3_key), "value": _b64("{}")}]])
    assert retired[0]["status"] != 200 and "authentication failed" in retired[0]["body"], retired
    assert retired[1]["status"] == 403, retired
    renewed = {k: rbac.serial(*k) for k in serials}
    assert all(renewed[k] != serials[k] for k in serials), (serials, renewed)
    assert rbac.serial("ctl", "ca.pem") == ca_serial  # the CA (10 years) was not due
    # etcd was restarted with its new certificates and serves h1 (renewed too)
    assert _statuses(rbac.as_host("h1", [["/v3/kv/range", {"key": _b64(h3_key)}]])) == [200, 200]


def test_pki_directory_defaults_to_one_per_inventory(tmp_path):
    """No shared default PKI across inventories: two inventories, two directories; a lab's is
    per lab_name; dove_pki_dir wins."""
    play = tmp_path / "show.yml"
    play.write_text("- hosts: all\n  gather_facts: false\n  vars_files: [%s, %s]\n  tasks:\n"
                    "    - ansible.builtin.debug: {msg: 'PKI=={{ controller_pki_dir }}=='}\n"
                    % (ROOT / "roles/controller/defaults/main.yml", ROOT / "roles/controller/vars/main.yml"))
    found = {}
    for name, extra in (("a", []), ("b", []), ("a-lab", ["-e", "lab_name=labx"]), ("a-set", ["-e", "dove_pki_dir=/srv/pki"])):
        inventory = tmp_path / name.split("-")[0] / "hosts.yml"
        inventory.parent.mkdir(exist_ok=True)
        inventory.write_text("all:\n  hosts:\n    x: {ansible_connection: local}\n")
        proc = subprocess.run([str(Path(PYTHON).parent / "ansible-playbook"), "-i", str(inventory), str(play), *extra],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        found[name] = proc.stdout.split("PKI==")[1].split("==")[0]
    print(found)
    assert found["a"] != found["b"]
    assert found["a"].startswith(os.path.expanduser("~/.overlay-vxlan/pki/hosts.yml-"))
    assert found["a-lab"] == os.path.expanduser("~/.overlay-vxlan/pki/labx")
    assert found["a-set"] == "/srv/pki"
