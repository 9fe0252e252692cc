"""DOVE with a three-member etcd cluster over mutual TLS, with real processes: three controller
namespaces (192.168.1.10-12) each run an etcd member that serves clients and peers over https
only and requires client certificates; the agents get the three https URLs, the CA and a
client certificate. Plain HTTP and TLS without a client certificate are refused; one member
killed loses no endpoint, a new endpoint registers and is reached, the member restored catches
up. The certificates are made here with `cryptography` (the roles make theirs with
community.crypto: molecule scenario dove_ha)."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import signal
import subprocess
import time

import pytest
from test_dove_netns import ETCD, PYTHON, DoveNet, sh, wait_for

cryptography = pytest.importorskip("cryptography")
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

MEMBERS = {"m1": "192.168.1.10", "m2": "192.168.1.11", "m3": "192.168.1.12"}
LEASE_TTL = 4

# One request to etcd's JSON gateway from inside a namespace: mode http, tls (no client
# certificate) or mtls. Prints {"status": int|None, "body"|"error": str}.
REQUEST = r"""
import http.client, json, ssl, sys
ip, path, body, mode, ca, cert, key = sys.argv[1:8]
try:
    if mode == "http":
        conn = http.client.HTTPConnection(ip, 2379, timeout=3)
    else:
        ctx = ssl.create_default_context(cafile=ca)
        if mode == "mtls":
            ctx.load_cert_chain(cert, key)
        conn = http.client.HTTPSConnection(ip, 2379, timeout=3, context=ctx)
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    print(json.dumps({"status": resp.status, "body": resp.read().decode(errors="replace")}))
except (OSError, http.client.HTTPException) as exc:
    print(json.dumps({"status": None, "error": "%s: %s" % (type(exc).__name__, exc)}))
"""


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(directory, members, clients):
    """A CA, a server+client certificate per member (SAN = its IP) and a client certificate per host."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("test CA")).issuer_name(_name("test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def issue(stem, cn, ips, usages):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]), critical=False)
                .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                .sign(ca_key, hashes.SHA256()))
        (directory / ("%s.pem" % stem)).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path = directory / ("%s-key.pem" % stem)
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_path.chmod(0o600)

    for name, ip in members.items():
        issue(name, name, [ip], [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    for name, ip in clients.items():
        issue(name, name, [ip], [ExtendedKeyUsageOID.CLIENT_AUTH])


class Cluster:
    """Three etcd members with mutual TLS, one per controller namespace of a DoveNet."""

    def __init__(self, net: DoveNet):
        self.net = net
        self.pki = net.tmp / "pki"
        make_pki(self.pki, MEMBERS, {h.name: h.ip for h in net.hosts})
        self.ns = {}
        self.procs = {}
        for index, (name, ip) in enumerate(MEMBERS.items(), start=1):
            self.ns[name] = net._netns("c%d" % index)
            net._underlay_port(self.ns[name], "uc%d" % index, ip)

    def start(self, name):
        ip, pki, data = MEMBERS[name], self.pki, self.net.tmp / ("etcd-" + name)
        cluster = ",".join("%s=https://%s:2380" % (n, i) for n, i in MEMBERS.items())
        log = open(self.net.tmp / ("etcd-%s.log" % name), "ab")
        self.procs[name] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[name], ETCD, "--name", name, "--data-dir", str(data),
             "--listen-client-urls", "https://%s:2379" % ip, "--advertise-client-urls", "https://%s:2379" % ip,
             "--listen-peer-urls", "https://%s:2380" % ip, "--initial-advertise-peer-urls", "https://%s:2380" % ip,
             "--initial-cluster", cluster, "--initial-cluster-state", "new", "--initial-cluster-token", self.net.tag,
             "--listen-metrics-urls", "http://127.0.0.1:2381",
             "--client-cert-auth", "--trusted-ca-file", str(pki / "ca.pem"),
             "--cert-file", str(pki / ("%s.pem" % name)), "--key-file", str(pki / ("%s-key.pem" % name)),
             "--peer-client-cert-auth", "--peer-trusted-ca-file", str(pki / "ca.pem"),
             "--peer-cert-file", str(pki / ("%s.pem" % name)), "--peer-key-file", str(pki / ("%s-key.pem" % name))],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()

    def kill(self, name):
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def close(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.procs = {}

    def request(self, member, path, body, mode="mtls", client="h1", ns=None):
        """A gateway request to `member` from inside host `client`'s namespace (or `ns`)."""
        pki = self.pki
        args = ["ip", "netns", "exec", ns or self.net.host(client).ns, PYTHON, "-c", REQUEST, MEMBERS[member], path,
                json.dumps(body), mode, str(pki / "ca.pem"), str(pki / ("%s.pem" % client)), str(pki / ("%s-key.pem" % client))]
        return json.loads(subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout)

    def records(self, member) -> dict:
        """The endpoint records as `member` serves them (serializable: that member's own copy)."""
        prefix = (self.net.prefix + "/endpoints/").encode()
        body = {"key": base64.b64encode(prefix).decode(), "range_end": base64.b64encode(prefix[:-1] + b"0").decode(),
                "serializable": True}
        answer = self.request(member, "/v3/kv/range", body)
        assert answer["status"] == 200, answer
        kvs = json.loads(answer["body"]).get("kvs", [])
        return {base64.b64decode(kv["key"]).decode(): json.loads(base64.b64decode(kv["value"])) for kv in kvs}

    def healthy(self, member) -> bool:
        answer = self.request(member, "/v3/kv/range", {"key": base64.b64encode(b"/").decode()})
        return answer["status"] == 200


@pytest.fixture
def ha(tmp_path):
    if ETCD is None:
        pytest.fail("etcd is not installed: scripts/setup.sh installs etcd-server")
    net = DoveNet(tmp_path, backend="etcd", controller=False, lease_ttl=LEASE_TTL)
    cluster = None
    try:
        cluster = Cluster(net)
        for name in MEMBERS:
            cluster.start(name)
        ok, _ = wait_for(lambda: all(cluster.healthy(m) for m in MEMBERS), timeout=30, interval=0.3)
        assert ok, [(net.tmp / ("etcd-%s.log" % m)).read_text()[-1500:] for m in MEMBERS]
        for host in net.hosts:
            host.extra_config = {"etcd": {
                "endpoints": ["https://%s:2379" % ip for ip in MEMBERS.values()], "prefix": net.prefix,
                "lease_ttl": LEASE_TTL, "timeout": 1.0, "ca_cert": str(cluster.pki / "ca.pem"),
                "cert": str(cluster.pki / ("%s.pem" % host.name)), "key": str(cluster.pki / ("%s-key.pem" % host.name))}}
        yield net, cluster
    finally:
        for host in net.hosts:
            host.stop_agent()  # while the store is up: they revoke their leases
        if cluster is not None:
            cluster.close()
        net.close()


def test_plain_http_and_certificate_less_tls_are_refused(ha):
    net, cluster = ha
    body = {"key": base64.b64encode(b"/").decode(), "range_end": base64.b64encode(b"0").decode()}
    for member in MEMBERS:
        plain = cluster.request(member, "/v3/kv/range", body, mode="http")
        nocert = cluster.request(member, "/v3/kv/range", body, mode="tls")
        valid = cluster.request(member, "/v3/kv/range", body, mode="mtls")
        print("%s: plain HTTP -> %s; TLS without certificate -> %s; mutual TLS -> %s"
              % (member, plain.get("error") or plain["status"], nocert.get("error") or nocert["status"], valid["status"]))
        assert plain["status"] != 200, plain
        assert nocert["status"] is None, nocert  # the TLS handshake itself fails
        assert valid["status"] == 200, valid
    # nothing of the cluster in the machine's own namespace
    root = sh("ss", "-Htln").stdout
    assert ":2379 " not in root and ":2380 " not in root


def test_one_member_killed_loses_nothing_and_new_endpoints_register(ha):
    net, cluster = ha
    net.start_agents()
    h1, h2, h3 = net.hosts
    vm1, vm2, vm3 = (h.vms[0] for h in net.hosts)
    keys = {net.key(vm) for vm in (vm1, vm2, vm3)}
    ok, _ = wait_for(lambda: set(cluster.records("m2")) >= keys, timeout=10)
    assert ok, cluster.records("m2")
    assert vm1.ping(vm2.ip, count=1, timeout=2.0)[0] is not None

    cluster.kill("m1")  # the member every agent asks first
    killed_at = time.monotonic()
    # no endpoint lost: both survivors serve all three records, past a lease TTL
    time.sleep(LEASE_TTL + 1)
    for member in ("m2", "m3"):
        assert set(cluster.records(member)) >= keys, member
    # existing endpoints still resolve (a fresh miss: vm1 never talked to vm3)
    assert vm1.ping(vm3.ip, count=1, timeout=2.0)[0] is not None
    # a new endpoint on h3 registers through a surviving member and is reached
    new = net.add_vm(h3, "100.0.0.5", index=2)
    h3.write_config()
    h3.signal_agent(signal.SIGHUP)
    ok, took = wait_for(lambda: net.key(new) in cluster.records("m3"), timeout=10, interval=0.1)
    assert ok, h3.log()[-3000:]
    print("new endpoint registered %.2f s after the SIGHUP, %.1f s after m1 was killed" % (took, time.monotonic() - killed_at))
    ok, _ = wait_for(lambda: vm1.ping(new.ip, count=1, timeout=0.5)[0] is not None, timeout=10, interval=0.1)
    assert ok, (h1.log()[-2000:], h3.log()[-2000:])
    assert new.ping(vm2.ip, count=1, timeout=2.0)[0] is not None
    for host in net.hosts:
        assert host.proc.poll() is None
        assert host.fresh_metrics()["store"]["state"] == "connected"
        assert "Traceback" not in host.log()

    # the member restored (same data directory) rejoins and catches up
    cluster.start("m1")
    ok, _ = wait_for(lambda: cluster.healthy("m1") and net.key(new) in cluster.records("m1"), timeout=30, interval=0.3)
    assert ok, (net.tmp / "etcd-m1.log").read_text()[-2000:]
    assert set(cluster.records("m1")) >= keys | {net.key(new)}
    assert vm1.ping(new.ip, count=1, timeout=2.0)[0] is not None
