"""vxlan_mode=evpn on the simulated lab: FRR (zebra + bgpd, watchfrr) inside each lab host with
its own /etc/frr and /run/frr, two route reflectors (ctl, ctl2), the VMs of the source document,
and lab host `rogue` (192.168.1.66, in no group of the overlay) for the BGP attacks.

One lab (OVERLAY_VXLAN_LAB_PREFIX + random), made and converged once for the module (with
evpn_bgp_password from the inventory, and --diff), goes through, in this order (the last test
tears the lab down):

1. the BGP sessions as the kernel and FRR have them: bgpd listening on the underlay address only,
   every session TCP-MD5 signed with the inventory's password and GTSM-checked, the route-maps in
   place, each FRR host's allow-list (nftables) accepting TCP 179 only from its BGP peers (a
   route reflector's recorded for the boot-time restore); the
   password in no line of the converge's --diff output; evpn_maximum_prefix refused on FRR 8.4;
2. a VTEP (h3) that lies about its routes' next hop: the route reflectors point them at h3 all the same;
3. a rogue BGP speaker (Debian's gobgpd on `rogue`, with the address and MAC of route reflector
   ctl, which is taken off the segment) that tries each VTEP and ctl2 without the password, with
   a wrong one, with the right one from 64 hops, and from its own address: no session, no route
   in any FRR table nor kernel table, and the kernel's drop counters say which protection did it
   (from its own address the allow-list's, on a VTEP and on a route reflector: its TCP
   connection never even establishes);
4. converge, routes and zebra's entries read back, the bridges' addresses (SVIs) with MAC+IP
   type-2 routes and ARP answered by the local bridge (a request that never reaches the remote
   VM), an idempotent second run, a moved VM, the loss of one route reflector, a switch to
   static and back (nothing of either mode left behind, the bridge address included),
   evpn_svi=false together with every BGP protection and the allow-list off (the control: the
   same rogue speaker and lying VTEP then do land, its connection from its own address is
   accepted, and --diff shows no password going away), and teardown; the
   machine's own namespace is compared before and after.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from evpn_helpers import (
    allowlist,
    assert_ok,
    best_next_hops,
    bgp_dropped,
    bgp_neighbors,
    bridge_addresses,
    extern_learn,
    fdb,
    listening,
    mac_of,
    macip_routes,
    md5_sessions,
    passive_opens,
    tcp_ext,
    vtysh,
    vtysh_json,
    wait_for,
    zebra_neighbours,
)
from lab_fixtures import ROOT, Lab, recap, root_netns_snapshot, underlay_mac, unique_lab_name

from ansible_collections.overlay.vxlan.plugins.module_utils import _lab
from ansible_collections.overlay.vxlan.plugins.module_utils._vm_mac import bridge_mac

EVPN = ROOT / "playbooks" / "evpn.yml"
STATIC = ROOT / "playbooks" / "static.yml"
TEARDOWN = ROOT / "playbooks" / "teardown.yml"
VTEPS = {"h1": "192.168.1.2", "h2": "192.168.1.3", "h3": "192.168.1.4"}
REFLECTORS = {"ctl": "192.168.1.10", "ctl2": "192.168.1.11"}
FRR_DAEMONS = {"watchfrr", "zebra", "bgpd", "staticd"}
# The bridges' generated addresses (evpn_svi): the n-th overlay host, the n-th from the top.
SVIS = {"h1": "100.0.0.254/24", "h2": "100.0.0.253/24", "h3": "100.0.0.252/24"}
VM_IPS = {"h1": "100.0.0.2", "h2": "100.0.0.3", "h3": "100.0.0.4"}
ARP_PROBE = Path(__file__).resolve().parents[1] / "arp_probe.py"
# The BGP protections (roles/evpn, docs/security.md "EVPN (BGP)"): the inventory's password, and
# every knob off for the control.
PASSWORD = "ovx-Lab.pw#1"
UNPROTECTED = {"evpn_bgp_password": "", "evpn_ttl_security_hops": 0, "evpn_bgp_listen": [], "evpn_inbound_policy": False}
# The attacker: a lab host in no group of the overlay, its own underlay address, the routes it
# injects (a VM MAC+IP and a flood-list entry, both at its own address).
ROGUE = {"rogue": "192.168.1.66"}
ROGUE_VTEP = ROGUE["rogue"]
ROGUE_MAC, ROGUE_VM_IP = "de:ad:be:ef:00:01", "100.0.0.66"
FRR_HOSTS = dict(VTEPS, **REFLECTORS)


def lab_nsenter(lab, host: str) -> list[str]:
    return _lab.nsenter_argv(lab.name, host)


def vm(address: str, namespace: str = "ns1", host_if: str = "tap1", vm_if: str = "tap2") -> str:
    return "{network: blue, namespace: %s, host_if: %s, vm_if: %s, address: %s/24}" % (namespace, host_if, vm_if, address)


def write_inventory(path: Path, lab_name: str, endpoints: dict[str, list[str]]) -> Path:
    """inventories/lab with a second route reflector, the BGP password and lab host `rogue` (group
    outsider: in the lab, not in the overlay); `endpoints`: host -> its VMs."""
    lines = ["all:", "  vars:", "    ansible_connection: overlay.vxlan.lab",
             "    ansible_python_interpreter: \"{{ ansible_playbook_python }}\"",
             "    lab_name: %s" % lab_name, "    lab_underlay_prefix: 24",
             "    evpn_bgp_password: %s" % json.dumps(PASSWORD), "  children:",
             "    lab:", "      children:", "        overlay:", "        controller:", "        outsider:",
             "    outsider:", "      hosts:"]
    lines += ["        %s: {vxlan_underlay_ip: %s}" % item for item in ROGUE.items()]
    lines += ["    controller:", "      hosts:"]
    lines += ["        %s: {vxlan_underlay_ip: %s}" % item for item in REFLECTORS.items()]
    lines += ["    overlay:", "      vars:", "        vxlan_mode: static", "        vxlan_underlay_dev: eth0",
              "        vxlan_networks:", "          - {name: blue, vni: 100, bridge: br1, vxlan_dev: vxlan0, dstport: 4789}",
              "      hosts:"]
    for host, ip in VTEPS.items():
        vms = endpoints.get(host, [])
        lines += ["        %s:" % host, "          vxlan_underlay_ip: %s" % ip, "          vxlan_endpoints:%s" % ("" if vms else " []")]
        lines += ["            - %s" % e for e in vms]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


SOURCE_VMS = {"h1": [vm("100.0.0.2")], "h2": [vm("100.0.0.3")], "h3": [vm("100.0.0.4")]}
# 100.0.0.4 (MAC 02:00:64:00:00:04) leaves h3 for h2.
MOVED_VMS = {"h1": [vm("100.0.0.2")], "h2": [vm("100.0.0.3"), vm("100.0.0.4", "ns2", "tap3", "tap4")], "h3": []}


def arp_probe(lab, host: str, *args: str, netns: str = "ns1") -> str:
    return lab.enter(host, "python3", "-", *args, netns=netns, input=ARP_PROBE.read_text()).stdout.strip()


def arp_crosses(lab, asker: str, target_host: str, target_ip: str) -> tuple[str, int]:
    """One ARP request from `asker`'s VM for `target_ip`: (the MAC of the answer or 'none', how
    many requests for it arrived at the VM of `target_host`)."""
    listener = subprocess.Popen(lab_nsenter(lab, target_host) + ["ip", "netns", "exec", "ns1", "python3", "-", "count", "tap2", target_ip, "3"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    listener.stdin.write(ARP_PROBE.read_text())
    listener.stdin.close()
    assert listener.stdout.readline().strip() == "listening"
    answer = arp_probe(lab, asker, "ask", "tap2", VM_IPS[asker], target_ip)
    arrived = int(listener.stdout.read().strip())
    listener.wait(timeout=10)
    return answer, arrived


def frr_processes(lab) -> list[str]:
    names = []
    for pid in lab.processes():
        try:
            names.append(Path("/proc/%d/comm" % pid).read_text().strip())
        except OSError:
            continue
    return [n for n in names if n in FRR_DAEMONS]


def assert_no_frr_left(lab):
    assert frr_processes(lab) == []
    for host in list(VTEPS) + list(REFLECTORS):
        assert not os.path.exists("/run/overlay-vxlan-lab/%s/%s/frr" % (lab.name, host))
        assert lab.enter(host, "mountpoint", "-q", "/etc/frr", check=False).returncode != 0
        assert lab.enter(host, "mountpoint", "-q", "/run/frr", check=False).returncode != 0
    for host in VTEPS:
        assert extern_learn(lab, host) == {}


# --- BGP sessions, as FRR and the kernel have them ----------------------------------------------

# A TCP connection to (address, 179) from `source`: exit 0 once the handshake is done (the peer's
# bgpd may close it at once), 1 if no answer came within `timeout` seconds.
TCP_CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 179), timeout=float(sys.argv[3]), source_address=(sys.argv[2], 0)).close()
except OSError as exc:
    print(exc)
    sys.exit(1)
"""


def bridge_link_mac(lab, host: str) -> str:
    return json.loads(lab.enter(host, "ip", "-j", "link", "show", "dev", "br1").stdout)[0]["address"]


def peers_of(host: str) -> list[str]:
    """The host's BGP peers' addresses, sorted as text: a VTEP's route reflectors, a route
    reflector's clients and the other route reflector."""
    peers = set(FRR_HOSTS.values()) - {FRR_HOSTS[host]} if host in REFLECTORS else set(REFLECTORS.values())
    return sorted(peers)


def rr_record(lab, host: str):
    """The allow-list in a route reflector's record (role persist), None without a record."""
    path = Path("/run/overlay-vxlan-lab/%s/%s/state/state.json" % (lab.name, host))
    if not path.exists():
        return None
    resources = json.loads(path.read_text())["resources"]
    assert {name for name, items in resources.items() if items} <= {"vtep_allowlist"}, resources
    return resources.get("vtep_allowlist")


def has_allowlist(lab, host: str) -> bool:
    return lab.enter(host, "nft", "list", "table", "inet", "overlay_vxlan", check=False).returncode == 0


def rogue_connects(lab, host: str, timeout: float) -> bool:
    """Whether the rogue, from its own address, completes a TCP handshake with `host`'s port 179.
    `host`'s neighbour entry for the rogue's address goes first: it may still point at the MAC the
    rogue took over earlier (a route reflector's, back on the segment), which would lose the answer."""
    lab.enter(host, "ip", "neigh", "flush", "to", ROGUE_VTEP, check=False)
    probe = lab.enter("rogue", "python3", "-", FRR_HOSTS[host], ROGUE_VTEP, str(timeout), input=TCP_CONNECT, check=False)
    return probe.returncode == 0


def rogue_traces(lab, stopped: tuple[str, ...] = ()) -> list[str]:
    """What of the rogue's routes got anywhere: bgpd's l2vpn evpn table on every FRR host (but the
    `stopped` ones), the vxlan device's fdb (its MAC, any entry at its address) and br1's neighbour
    table on every VTEP."""
    found = []
    for host in (h for h in FRR_HOSTS if h not in stopped):
        table = vtysh(lab, host, "show bgp l2vpn evpn")
        found += ["%s: bgpd: %s" % (host, line.strip()) for line in table.splitlines() if ROGUE_MAC in line or ROGUE_VTEP in line]
    for host in VTEPS:
        found += ["%s: fdb %s" % (host, e) for e in fdb(lab, host) if e["mac"] == ROGUE_MAC or e.get("dst") == ROGUE_VTEP]
        neigh = lab.enter(host, "ip", "neigh", "show", "dev", "br1").stdout
        found += ["%s: neigh %s" % (host, line) for line in neigh.splitlines() if ROGUE_VM_IP + " " in line or ROGUE_MAC in line]
    return found


@contextmanager
def off_the_segment(lab, reflector: str = "ctl"):
    """Route reflector `reflector` stopped (bgpd's Cease ends its sessions at once) and its underlay
    down: its address is free for the rogue. Back up and running afterwards, even on failure."""
    lab.enter(reflector, "/usr/lib/frr/frrinit.sh", "stop")
    lab.enter(reflector, "ip", "link", "set", "eth0", "down")
    try:
        yield REFLECTORS[reflector]
    finally:
        lab.enter(reflector, "ip", "link", "set", "eth0", "up", check=False)
        lab.enter(reflector, "/usr/lib/frr/frrinit.sh", "start", check=False)


def gobgpd_config(router_id: str, neighbors: list[dict]) -> str:
    """gobgpd's TOML: AS 65000, not listening (every session is the rogue's own connection, with
    the TTL given per neighbour), l2vpn-evpn with each neighbour."""
    lines = ["[global.config]", "  as = 65000", '  router-id = "%s"' % router_id, "  port = -1"]
    for n in neighbors:
        lines += ["[[neighbors]]", "  [neighbors.config]", '    neighbor-address = "%s"' % n["peer"], "    peer-as = 65000"]
        if n.get("password"):
            lines += ['    auth-password = "%s"' % n["password"]]
        lines += ["  [neighbors.transport.config]", '    local-address = "%s"' % n["local"],
                  "  [neighbors.timers.config]", "    connect-retry = 1"]
        if n.get("ttl255"):  # GTSM on the rogue's side too: it sends with TTL 255
            lines += ["  [neighbors.ttl-security.config]", "    enabled = true", "    ttl-min = 255"]
        lines += ["  [[neighbors.afi-safis]]", "    [neighbors.afi-safis.config]", '      afi-safi-name = "l2vpn-evpn"']
    return "\n".join(lines) + "\n"


@contextmanager
def rogue_speaker(lab, directory: Path, impersonate: str):
    """Debian's gobgpd on lab host `rogue`, with `impersonate`'s underlay address and MAC besides its
    own (a host on the segment that took over a configured peer's address), trying each VTEP and
    ctl2 - h1 without the password (TTL 255), h2 with the right password from 64 hops (the
    default TTL), ctl2 with a wrong password (TTL 255), h3 from the rogue's own address (TTL 255,
    no password) - and announcing a VM MAC+IP and a flood-list entry at its own address (VNI 100,
    the overlay's route target). gobgpd is killed and the addresses given back afterwards, even on
    failure (lab_destroy.yml kills whatever is left in the lab's namespaces too)."""
    neighbors = [{"peer": VTEPS["h1"], "local": impersonate, "ttl255": True},
                 {"peer": VTEPS["h2"], "local": impersonate, "password": PASSWORD},
                 {"peer": REFLECTORS["ctl2"], "local": impersonate, "password": "not-" + PASSWORD, "ttl255": True},
                 {"peer": VTEPS["h3"], "local": ROGUE_VTEP, "ttl255": True}]
    config = directory / "gobgpd.toml"
    config.write_text(gobgpd_config(impersonate, neighbors))
    log = open(directory / "gobgpd.log", "w")
    lab.enter("rogue", "ip", "link", "set", "eth0", "address", underlay_mac(impersonate))
    lab.enter("rogue", "ip", "addr", "add", impersonate + "/24", "dev", "eth0")
    speaker = None
    try:
        speaker = subprocess.Popen(lab_nsenter(lab, "rogue") + ["gobgpd", "-f", str(config), "-p", "--pprof-disable",
                                                              "--api-hosts", "127.0.0.1:50051"],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        assert wait_for(lambda: lab.enter("rogue", "gobgp", "global", check=False).returncode == 0, timeout=15), \
            (directory / "gobgpd.log").read_text()[-2000:]
        common = ["rd", ROGUE_VTEP + ":100", "rt", "65000:100", "encap", "vxlan", "nexthop", ROGUE_VTEP]
        lab.enter("rogue", "gobgp", "global", "rib", "-a", "evpn", "add", "macadv", ROGUE_MAC, ROGUE_VM_IP,
                  "etag", "0", "label", "100", *common)
        lab.enter("rogue", "gobgp", "global", "rib", "-a", "evpn", "add", "multicast", ROGUE_VTEP, "etag", "0",
                  "pmsi", "ingress-repl", "100", ROGUE_VTEP, *common)
        yield speaker
    finally:
        if speaker is not None:
            speaker.kill()
            speaker.wait(timeout=10)
        log.close()
        lab.enter("rogue", "ip", "addr", "del", impersonate + "/24", "dev", "eth0", check=False)
        lab.enter("rogue", "ip", "link", "set", "eth0", "address", underlay_mac(ROGUE_VTEP), check=False)


def remote_vteps(lab, host: str) -> list[str]:
    """zebra's remote VTEPs of VNI 100 on `host` (from type-3 routes, and from type-2 next hops)."""
    return vtysh_json(lab, host, "show evpn vni 100 json").get("numRemoteVteps", [])


@contextmanager
def lying_client(lab, host: str = "h3", next_hop: str = ROGUE_VTEP, restart_stale: bool = True):
    """A VTEP that announces its routes with another next hop (an outbound route-map of the test's
    on `host`: a compromised VTEP, or one misconfigured); taken away afterwards, even on failure.

    A lie that got in leaves its next hop in zebra's list of remote VTEPs for good (FRR 8.4: the
    entry a type-2 next hop creates goes only with a type-3 route of that address, which never
    comes; no fdb entry of it): FRR is restarted on the VTEPs that have it, so the next test starts
    clean (`restart_stale=False`: a teardown follows, which stops FRR anyway)."""
    sessions = ["neighbor %s route-map OVX-TEST-LIE out" % rr for rr in REFLECTORS.values()]
    vtysh(lab, host, "configure terminal", "route-map OVX-TEST-LIE permit 10", "set ip next-hop " + next_hop, "exit",
          "router bgp 65000", "address-family l2vpn evpn", *sessions, "end", "clear bgp l2vpn evpn * soft out")
    try:
        yield
    finally:
        vtysh(lab, host, "configure terminal", "router bgp 65000", "address-family l2vpn evpn",
              *("no " + line for line in sessions), "exit", "exit", "no route-map OVX-TEST-LIE", "end",
              "clear bgp l2vpn evpn * soft out")
        stale = [h for h in VTEPS if restart_stale and next_hop in remote_vteps(lab, h)]
        for stale_host in stale:
            lab.enter(stale_host, "/usr/lib/frr/frrinit.sh", "restart")
        assert not stale or sessions_established(lab), "FRR restarted on %s, its sessions did not come back" % stale


def advertised_next_hops(lab, host: str, peer: str) -> set[str]:
    """The next hops `host` sends `peer` (its adj-rib-out, after its outbound policy)."""
    table = vtysh_json(lab, host, "show bgp l2vpn evpn neighbors %s advertised-routes json" % peer)["advertisedRoutes"]
    return {route["nextHop"] for entry in table.values() if isinstance(entry, dict)
            for route in entry.values() if isinstance(route, dict) and "nextHop" in route}


def updates_received(lab, host: str, peer: str) -> int:
    return bgp_neighbors(lab, host)[peer]["messageStats"]["updatesRecv"]


def sessions_established(lab, timeout: float = 30) -> bool:
    """Every FRR host's every session Established (after a route reflector came back)."""
    return wait_for(lambda: all(n["bgpState"] == "Established" for host in FRR_HOSTS
                                for n in bgp_neighbors(lab, host).values()), timeout=timeout, step=0.5)


# --- the lab of this module ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def evpn_lab(tmp_path_factory):
    """The lab, created and converged once (--diff, to see that no password shows); destroyed at the
    end even on failure. The last test of the module tears it down itself."""
    root_before = root_netns_snapshot()
    directory = tmp_path_factory.mktemp("evpn")
    name = unique_lab_name()
    inventory = write_inventory(directory / "source.yml", name, SOURCE_VMS)
    lab = Lab(name, inventory, dict(FRR_HOSTS, **ROGUE))
    try:
        lab.create()
        first = lab.playbook(EVPN, "--diff")
        yield SimpleNamespace(lab=lab, first=first, inventory=inventory, directory=directory, root_before=root_before)
    finally:
        if lab.exists():
            proc = lab.destroy(check=False)
            assert proc.returncode == 0 and not lab.exists(), proc.stdout[-2000:]


def test_evpn_bgp_sessions_are_signed_ttl_checked_and_bound_to_the_underlay(evpn_lab):
    lab, first = evpn_lab.lab, evpn_lab.first
    assert_ok(first, list(FRR_HOSTS))
    # The converge wrote frr.conf, with the password, on every host and ran with --diff: no line shows it.
    assert PASSWORD not in first.stdout + first.stderr
    for host, ip in FRR_HOSTS.items():
        # bgpd listens on the peering address alone (not on 0.0.0.0, [::] or the bridge's address).
        assert listening(lab, host) == {ip}, (host, listening(lab, host))
        neighbors = bgp_neighbors(lab, host)
        peers = sorted(set(FRR_HOSTS.values()) - {ip}) if host in REFLECTORS else sorted(REFLECTORS.values())
        assert sorted(neighbors) == peers
        sessions = md5_sessions(lab, host)
        running = vtysh(lab, host, "show running-config")
        for peer, state in neighbors.items():
            assert state["bgpState"] == "Established", (host, peer, state["bgpState"])
            # TCP-MD5: FRR says so, and the kernel holds the inventory's key for the session.
            assert state.get("authenticationEnabled") == 1, (host, peer)
            assert "md5keys:%s/32=" % peer in sessions, (host, peer, sessions)
            assert "neighbor %s password %s" % (peer, PASSWORD) in running
            # GTSM: one hop.
            assert state.get("internalBgpNbrMaxHopsAway") == 1, (host, peer)
            # Inbound policy: a route reflector's client gets the route-map that sets its next hop.
            client = host in REFLECTORS and peer in VTEPS.values()
            wanted = "OVX-EVPN-FROM-%s" % next(h for h, i in VTEPS.items() if i == peer) if client else "OVX-EVPN-IN"
            assert state["addressFamilyInfo"]["l2VpnEvpn"].get("routeMapForIncomingAdvertisements") == wanted, (host, peer)
        assert PASSWORD in sessions, (host, "the kernel's key is not the inventory's")
    # The allow-list on each FRR host (vxlan_mode=evpn): TCP 179 only from the peers bgpd has (the
    # sessions above came up through it, those the host opened and those it accepted): a VTEP's
    # route reflectors, a route reflector's clients and the other route reflector; anybody else
    # dropped and counted. A route reflector's table has no VXLAN port and no member, and is in
    # its record for the boot-time restore (role persist), alone.
    for host in FRR_HOSTS:
        table = allowlist(lab, host)
        assert (table["sets"]["bgp_ports"], table["sets"]["bgp4"], table["sets"]["bgp6"]) == (["179"], peers_of(host), [])
        assert table["input"] == ["udp dport @ports jump vxlan", "tcp dport @bgp_ports jump bgp"]
        assert table["bgp"] == ['iifname "lo" counter name "bgp_foreign" drop', "ip saddr @bgp4 accept",
                                "ip6 saddr @bgp6 accept", 'counter name "bgp_foreign" drop']
        assert sorted(table["sets"]["bgp4"]) == sorted(bgp_neighbors(lab, host))
    for host in REFLECTORS:
        table = allowlist(lab, host)
        assert (table["sets"]["ports"], table["sets"]["members4"], table["sets"]["unbound4"]) == ([], [], []), table
        assert rr_record(lab, host) == [{"table": "overlay_vxlan", "state": "present", "bind_mac": False, "ports": [],
                                         "members": [], "bgp_filter": True, "bgp_peers": peers_of(host), "netns": None}]
    # frr.conf holds the password: frr:frr 0640, like the directory's other FRR files.
    for host in FRR_HOSTS:
        conf = os.stat("/run/overlay-vxlan-lab/%s/%s/frr/etc/frr.conf" % (lab.name, host))
        assert (conf.st_mode & 0o777, conf.st_uid, conf.st_gid) == (0o640, pwd.getpwnam("frr").pw_uid, grp.getgrnam("frr").gr_gid)

    # maximum-prefix: FRR 8.4 has no such command in address-family l2vpn evpn; asked for, the role
    # stops before frr.conf (check mode, the route reflector ctl alone) and names the version.
    started = time.monotonic()
    refused = lab.playbook(EVPN, "--check", "--limit", "ctl", "-e", "evpn_maximum_prefix=1000", check=False)
    print("evpn_maximum_prefix refused in %.1f s" % (time.monotonic() - started))
    assert recap(refused.stdout)["ctl"]["failed"] == 1, refused.stdout[-3000:]
    assert "evpn_maximum_prefix=1000 needs FRR 10.1 or later" in " ".join(refused.stdout.split()), refused.stdout[-3000:]
    assert "maximum-prefix" not in vtysh(lab, "ctl", "show running-config")


def test_evpn_route_reflectors_point_a_clients_routes_at_its_own_vtep(evpn_lab):
    """h3 announces its VM with the rogue's address as next hop (a compromised or misconfigured
    VTEP): the route reflectors set it back to h3's VTEP, and h1 keeps sending to h3."""
    lab = evpn_lab.lab
    h3_mac = mac_of(VM_IPS["h3"])
    before = {rr: updates_received(lab, rr, VTEPS["h3"]) for rr in REFLECTORS}
    with lying_client(lab, "h3", ROGUE_VTEP):
        # h3 does send the lie, and both route reflectors got it.
        assert wait_for(lambda: advertised_next_hops(lab, "h3", REFLECTORS["ctl"]) == {ROGUE_VTEP}, timeout=10)
        assert wait_for(lambda: all(updates_received(lab, rr, VTEPS["h3"]) > before[rr] for rr in REFLECTORS), timeout=10)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for rr in REFLECTORS:
                assert best_next_hops(lab, rr, h3_mac) == {VTEPS["h3"]}, rr
            assert best_next_hops(lab, "h1", h3_mac) == {VTEPS["h3"]}
            assert extern_learn(lab, "h1").get(h3_mac) == VTEPS["h3"]
            assert all(ROGUE_VTEP not in remote_vteps(lab, h) for h in ("h1", "h2")), [remote_vteps(lab, h) for h in ("h1", "h2")]
            time.sleep(0.3)
    assert extern_learn(lab, "h1").get(h3_mac) == VTEPS["h3"]


def test_evpn_rogue_speaker_gets_no_session_and_no_route_in(evpn_lab):
    """ctl goes off the segment and the rogue takes its address and MAC: without the password
    (h1), with a wrong one (ctl2), with the right one but from afar (h2, TTL 64), and as an unknown
    peer (h3, its own address) it never gets a session, and none of its routes reaches any FRR
    or kernel table. The kernels' counters show each attempt dropped by the protection meant for it;
    h3's allow-list drops the rogue's own address before TCP answers it (no connection accepted)."""
    lab = evpn_lab.lab
    ctl = REFLECTORS["ctl"]
    targets = ("h1", "h2", "h3", "ctl2")
    with off_the_segment(lab, "ctl"):
        assert wait_for(lambda: all(bgp_neighbors(lab, h)[ctl]["bgpState"] != "Established" for h in targets), timeout=15)
        established = {h: bgp_neighbors(lab, h)[ctl].get("connectionsEstablished", 0) for h in targets}
        counters = {h: tcp_ext(lab, h) for h in targets}
        h3_dropped, h3_accepted = bgp_dropped(lab, "h3"), passive_opens(lab, "h3")

        def dropped() -> dict[str, int]:
            now = {h: tcp_ext(lab, h) for h in ("h1", "h2", "ctl2")}
            return {"h1 TCPMD5NotFound": now["h1"]["TCPMD5NotFound"] - counters["h1"]["TCPMD5NotFound"],
                    "h2 TCPMinTTLDrop": now["h2"]["TCPMinTTLDrop"] - counters["h2"]["TCPMinTTLDrop"],
                    "ctl2 TCPMD5Failure": now["ctl2"]["TCPMD5Failure"] - counters["ctl2"]["TCPMD5Failure"],
                    "h3 allow-list bgp_foreign": bgp_dropped(lab, "h3") - h3_dropped}

        with rogue_speaker(lab, evpn_lab.directory, ctl):
            started = time.monotonic()
            # Until each protection has dropped at least 2 of the rogue's segments (gobgpd connects
            # 5-10 s after it starts, its connect-retry floor; unprotected, that first connection gets
            # in: the control in the last test), and at least 8 s.
            while True:
                for h in targets:
                    assert bgp_neighbors(lab, h)[ctl]["bgpState"] != "Established", h
                    assert ROGUE_VTEP not in bgp_neighbors(lab, h), h
                if time.monotonic() - started >= 8 and min(dropped().values()) >= 2:
                    break
                assert time.monotonic() - started < 40, dropped()
                time.sleep(0.5)
            print("rogue refused for %.1f s, segments dropped: %s" % (time.monotonic() - started, dropped()))
            # Its SYNs to h3 never got an answer: h3's kernel accepted no connection meanwhile.
            assert passive_opens(lab, "h3") == h3_accepted
            assert {h: bgp_neighbors(lab, h)[ctl].get("connectionsEstablished", 0) for h in targets} == established
            assert rogue_traces(lab, stopped=("ctl",)) == []
    # Nor does a plain TCP connection from the rogue's own address (without the allow-list it
    # does: the control in the last test); the allow-list counts its SYNs.
    for host in ("h3", "ctl2"):
        before = bgp_dropped(lab, host)
        assert not rogue_connects(lab, host, timeout=3), host
        assert bgp_dropped(lab, host) - before >= 2, host
    # ctl back: every session up again, nothing of the rogue anywhere.
    assert sessions_established(lab)
    assert rogue_traces(lab) == []


def test_evpn_converges_follows_a_move_survives_a_reflector_and_switches_cleanly(evpn_lab, tmp_path):
    lab, inventory, name = evpn_lab.lab, evpn_lab.inventory, evpn_lab.lab.name
    everyone = list(VTEPS) + list(REFLECTORS)

    # Converge (the module's first): verify (in the playbook) waited for the flood list, pinged
    # every pair, found the type-2/type-3 routes and zebra's entries.
    first = evpn_lab.first
    assert_ok(first, everyone)
    assert ("EVPN: 6 type-2 (3 with an IP) and 3 type-3 routes, 2 extern_learn entries, 2 remote MAC+IP on the bridges"
            in " ".join(first.stdout.split())), first.stdout[-3000:]
    # Read back from the kernel and from FRR, not from the playbook.
    for host, ip in VTEPS.items():
        others = {h: i for h, i in VTEPS.items() if h != host}
        macs = {"02:00:64:00:00:%02x" % int(i.rsplit(".", 1)[1]): i for i in others.values()}
        assert extern_learn(lab, host) == macs
        flood = sorted(e["dst"] for e in fdb(lab, host) if e["mac"] == "00:00:00:00:00:00")
        assert flood == sorted(others.values())
        # No entry of ours: every unicast MAC on vxlan0 with a dst is zebra's.
        assert [e for e in fdb(lab, host) if e.get("dst") and e["mac"] != "00:00:00:00:00:00"
                and "extern_learn" not in e.get("flags", [])] == []
        port = json.loads(lab.enter(host, "ip", "-d", "-j", "link", "show", "vxlan0").stdout)[0]["linkinfo"]
        assert (port["info_slave_data"]["learning"], port["info_slave_data"]["neigh_suppress"]) == (False, True)
        assert port["info_data"]["learning"] is False
        vni = vtysh_json(lab, host, "show evpn vni 100 json")
        assert vni["vtepIp"] == ip and sorted(vni["numRemoteVteps"]) == sorted(others.values())
        macip = vtysh_json(lab, host, "show bgp l2vpn evpn route type macip json")
        # One MAC-only and one MAC+IP route per VM: the bridge's address (SVI) lets zebra learn the IPs.
        assert macip["numPrefix"] == 6
        assert bridge_addresses(lab, host) == [SVIS[host]]
        # The bridge's MAC is pinned (per host and bridge), not its smallest port's.
        assert bridge_link_mac(lab, host) == bridge_mac(ip, "br1"), host
        assert macip_routes(lab, host) == {(mac_of(i), i, VTEPS[h]) for h, i in VM_IPS.items()}
        # zebra's remote MAC+IP on the bridge (from which it answers ARP), and in its ARP cache.
        remote = {VM_IPS[h]: mac_of(VM_IPS[h]) for h in VTEPS if h != host}
        assert zebra_neighbours(lab, host) == remote
        cache = vtysh_json(lab, host, "show evpn arp-cache vni 100 json")
        assert {ip: (e["type"], e["mac"], e.get("remoteVtep")) for ip, e in cache.items() if isinstance(e, dict)} == dict(
            {VM_IPS[h]: ("remote", mac_of(VM_IPS[h]), VTEPS[h]) for h in VTEPS if h != host},
            **{VM_IPS[host]: ("local", mac_of(VM_IPS[host]), None)})
    for rr, rr_ip in REFLECTORS.items():
        # Its clients (every VTEP) and the other route reflector.
        summary = vtysh_json(lab, rr, "show bgp l2vpn evpn summary json")
        peers = set(VTEPS.values()) | set(REFLECTORS.values()) - {rr_ip}
        assert {p: s["state"] for p, s in summary["peers"].items()} == dict.fromkeys(peers, "Established")

    # ARP suppression: h2's VM asks for h1's VM; h2's bridge answers with the right MAC and the
    # request never reaches h1's VM. A request for an address no one advertised is flooded and
    # does reach it (the listener sees what crosses).
    assert arp_crosses(lab, "h2", "h1", "100.0.0.2") == (mac_of("100.0.0.2"), 0)
    assert arp_crosses(lab, "h2", "h1", "100.0.0.99") == ("none", 1)

    # Idempotent: nothing changes on any host, FRR's running configuration included.
    assert_ok(lab.playbook(EVPN), everyone, changed=0)

    # A VM moves from h3 to h2 (inventory change + converge): h1 reaches it at its new VTEP.
    lab.inventory = write_inventory(tmp_path / "moved.yml", name, MOVED_VMS)
    moved = lab.playbook(EVPN)
    converged_at = time.monotonic()
    assert_ok(moved, everyone)
    followed = wait_for(lambda: extern_learn(lab, "h1").get("02:00:64:00:00:04") == VTEPS["h2"], timeout=10)
    follow_seconds = time.monotonic() - converged_at
    assert followed, extern_learn(lab, "h1")
    lab.ping("h1", "100.0.0.4", netns="ns1")
    print("moved VM followed %.1f s after the converge" % follow_seconds)
    # A VM came to h2 (its bridge's MAC did not change) and h3, left without a VM, has no bridge.
    assert {h: bridge_link_mac(lab, h) for h in ("h1", "h2")} == {h: bridge_mac(VTEPS[h], "br1") for h in ("h1", "h2")}

    # One of the two route reflectors is lost (its underlay goes down): once its hold time
    # passed and its routes are gone, every VM still reaches every other.
    lab.enter("ctl", "ip", "link", "set", "eth0", "down")
    try:
        lost = wait_for(lambda: vtysh_json(lab, "h1", "show bgp l2vpn evpn summary json")["peers"]["192.168.1.10"]["state"]
                        != "Established", timeout=20, step=0.5)
        assert lost, "h1 still has an Established session with the lost route reflector"
        for src, dst in (("h1", "100.0.0.3"), ("h1", "100.0.0.4"), ("h2", "100.0.0.2")):
            lab.ping(src, dst, netns="ns1")
        assert extern_learn(lab, "h1") == {"02:00:64:00:00:03": VTEPS["h2"], "02:00:64:00:00:04": VTEPS["h2"]}
    finally:
        lab.enter("ctl", "ip", "link", "set", "eth0", "up")

    # Back to the source's VMs, then static: FRR stopped everywhere (zebra removed its entries),
    # its directories and mounts gone, the bridge port back to its defaults.
    lab.inventory = inventory
    assert_ok(lab.playbook(STATIC), everyone)
    assert_no_frr_left(lab)
    for host in VTEPS:
        port = json.loads(lab.enter(host, "ip", "-d", "-j", "link", "show", "vxlan0").stdout)[0]["linkinfo"]["info_slave_data"]
        assert (port["learning"], port["neigh_suppress"]) == (True, False)
        # The bridge's address (evpn's SVI) is gone, and zebra's MAC+IP entries with it.
        assert bridge_addresses(lab, host) == []
        assert zebra_neighbours(lab, host) == {}
        # No BGP in static mode: the allow-list leaves TCP 179 alone (its sets emptied in place).
        assert (allowlist(lab, host)["sets"]["bgp_ports"], allowlist(lab, host)["sets"]["bgp4"]) == ([], [])
    # The route reflectors' tables and records are gone with their FRR.
    assert [(h, has_allowlist(lab, h), rr_record(lab, h)) for h in REFLECTORS] == [(h, False, None) for h in REFLECTORS]
    lab.ping("h1", "100.0.0.4", netns="ns1")

    # And evpn again: static's permanent MAC and neighbour entries are gone, zebra's are there.
    assert_ok(lab.playbook(EVPN), everyone)
    for host in VTEPS:
        assert [e for e in fdb(lab, host) if e.get("dst") and e["mac"] != "00:00:00:00:00:00"
                and "extern_learn" not in e.get("flags", [])] == []
        assert lab.enter(host, "ip", "neigh", "show", "dev", "vxlan0", "nud", "permanent").stdout.strip() == ""
        assert len(extern_learn(lab, host)) == 2
        assert bridge_addresses(lab, host) == [SVIS[host]]
        assert len(zebra_neighbours(lab, host)) == 2
        assert (allowlist(lab, host)["sets"]["bgp_ports"], allowlist(lab, host)["sets"]["bgp4"]) == (["179"], sorted(REFLECTORS.values()))
    for host in REFLECTORS:
        assert allowlist(lab, host)["sets"]["bgp4"] == peers_of(host) and rr_record(lab, host), host

    # evpn_svi=false: no bridge address, type-2 routes with MACs only, no MAC+IP on the bridges.
    # In the same converge every BGP protection goes (the control below), with --diff: the
    # password's lines go away and the output shows none of them.
    no_svi = lab.playbook(EVPN, "--diff", "-e", json.dumps(dict(UNPROTECTED, evpn_svi=False, vxlan_vtep_allowlist=False)))
    assert_ok(no_svi, everyone)
    assert PASSWORD not in no_svi.stdout + no_svi.stderr
    # (Read back from the kernel and FRR below, not from verify's summary.)
    for host in VTEPS:
        assert bridge_addresses(lab, host) == []
        assert wait_for(lambda host=host: zebra_neighbours(lab, host) == {} and macip_routes(lab, host) == set(), timeout=10), \
            (zebra_neighbours(lab, host), macip_routes(lab, host))

    # The control: with the protections off (as before they existed) the lying VTEP and the
    # rogue speaker of the tests above do get in, so those tests can see it when they do.
    for host in FRR_HOSTS:
        assert listening(lab, host) == {"0.0.0.0", "[::]"}, listening(lab, host)
        assert "md5keys" not in md5_sessions(lab, host)
        running = vtysh(lab, host, "show running-config")
        assert not any(word in running for word in ("password", "ttl-security", "route-map")), running
    assert not any(has_allowlist(lab, h) for h in FRR_HOSTS) and not any(rr_record(lab, h) for h in REFLECTORS)
    # Without the allow-list the rogue's own address completes a TCP handshake with h3 (whose
    # bgpd, with no neighbour for it, then closes the connection).
    assert rogue_connects(lab, "h3", timeout=10)
    control = time.monotonic()
    with off_the_segment(lab, "ctl") as ctl:
        with rogue_speaker(lab, tmp_path, ctl):
            started = time.monotonic()
            landed = wait_for(lambda: extern_learn(lab, "h1").get(ROGUE_MAC) == ROGUE_VTEP
                              and ROGUE_VTEP in [e["dst"] for e in fdb(lab, "h1") if e["mac"] == "00:00:00:00:00:00"], timeout=30)
            print("unprotected, the rogue's routes were in h1's fdb %.1f s after gobgpd started" % (time.monotonic() - started))
            assert landed, fdb(lab, "h1")
            assert bgp_neighbors(lab, "h1")[ctl]["bgpState"] == "Established"
            assert any(ROGUE_MAC in trace for trace in rogue_traces(lab, stopped=("ctl",)) if trace.startswith("h1: bgpd"))
    assert sessions_established(lab)
    assert wait_for(lambda: rogue_traces(lab) == [], timeout=15), rogue_traces(lab)
    # Last, as teardown follows at once and stops FRR (zebra's stale remote VTEP with it).
    h3_mac = mac_of(VM_IPS["h3"])
    with lying_client(lab, "h3", ROGUE_VTEP, restart_stale=False):
        assert wait_for(lambda: extern_learn(lab, "h1").get(h3_mac) == ROGUE_VTEP, timeout=20), extern_learn(lab, "h1")
    print("the control took %.1f s" % (time.monotonic() - control))

    # Teardown stops FRR on the VTEPs and the route reflectors.
    assert_ok(lab.playbook(TEARDOWN), everyone)
    assert frr_processes(lab) == []
    assert not any(os.path.exists("/run/overlay-vxlan-lab/%s/%s/frr" % (lab.name, h)) for h in everyone)
    assert not any(has_allowlist(lab, h) for h in FRR_HOSTS) and not any(rr_record(lab, h) for h in REFLECTORS)

    lab.destroy()
    assert root_netns_snapshot() == evpn_lab.root_before
