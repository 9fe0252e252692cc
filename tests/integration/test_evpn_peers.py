"""evpn_peers proven against a BGP speaker that is not FRR: Debian's gobgpd on lab host `tor`
(192.168.1.20, in no group of the overlay) is the fabric's route reflector, the overlay hosts'
evpn_route_reflector_group is empty and evpn_peers points at the ToR.

One lab (name `peers` + random), made once for the module; gobgpd is started in `tor` before the
converge and killed afterwards, the lab destroyed, even on failure:

1. bad evpn_peers (a letter in the AS, a duplicate, an address that is the host's own) stop the
   run in validate.yml, naming host, variable and value, before any host changed (no FRR, no
   frr.conf, the kernel's links as before);
2. the converge: each VTEP's session with gobgpd Established (TCP-MD5, GTSM) and routes flow both
   ways - the VTEPs' own type-2/3 routes in gobgpd's RIB and reflected to the other VTEP (the
   playbook's verify waited for them), the routes gobgpd injects for a VTEP built by hand on
   `tor` (`ip link add ... type vxlan`, a bridge and a VM namespace) land as `extern_learn` fdb
   entries, and the inventory's VMs ping the hand-built one; a second run changes nothing;
3. evpn_vnis: a VTEP's own RD and route targets in force (imported from the other VTEP, the
   hand-built VTEP's routes with the automatic RT no longer), a mismatch isolating, auto back;
4. BFD: with FRR route reflector `ctl` added (group spare_rr, evpn_bfd) bfdd has an up session with each VTEP;
   gobgpd does no BFD, so the ToR's session (bfd: true) stays down in bfdd while BGP stays up.
5. per-host AS (RFC 7938): h1, h2 and ctl each in their own AS, every session eBGP through ctl,
   the next hop unchanged, the VMs reach each other; teardown.

The hand-built VTEP is not an inventory host, so the VTEP allow-list (which admits the overlay's
VTEPs only) is off in this lab: vxlan_vtep_allowlist: false.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from evpn_helpers import assert_ok, extern_learn, fdb, mac_of, vtysh_json, wait_for
from lab_fixtures import ROOT, Lab, recap, root_netns_snapshot, unique_lab_name

from ansible_collections.overlay.vxlan.plugins.module_utils import _lab

EVPN = ROOT / "playbooks" / "evpn.yml"
TEARDOWN = ROOT / "playbooks" / "teardown.yml"
VTEPS = {"h1": "192.168.1.2", "h2": "192.168.1.3"}
VM_IPS = {"h1": "100.0.0.2", "h2": "100.0.0.3"}
TOR, TOR_IP = "tor", "192.168.1.20"
CTL, CTL_IP = "ctl", "192.168.1.10"
PASSWORD = "tor-Lab.pw#2"
# The VTEP built by hand on `tor`, and its VM.
HAND_VM_IP, HAND_VM_MAC = "100.0.0.50", "02:00:64:00:00:32"
ZERO = "00:00:00:00:00:00"


def write_inventory(path: Path, lab_name: str, peers: list[dict]) -> Path:
    lines = ["all:", "  vars:", "    ansible_connection: overlay.vxlan.lab",
             "    ansible_python_interpreter: \"{{ ansible_playbook_python }}\"",
             "    lab_name: %s" % lab_name, "    lab_underlay_prefix: 24", "  children:",
             "    lab:", "      children:", "        overlay:", "        fabric:", "        spare_rr:",
             "    fabric:", "      hosts:", "        %s: {vxlan_underlay_ip: %s}" % (TOR, TOR_IP),
             "    spare_rr:", "      hosts:", "        %s: {vxlan_underlay_ip: %s}" % (CTL, CTL_IP),
             "    overlay:", "      vars:", "        vxlan_mode: static", "        vxlan_underlay_dev: eth0",
             "        vxlan_vtep_allowlist: false",
             "        evpn_route_reflector_group: \"\"",
             "        evpn_peers: %s" % json.dumps(peers),
             "        vxlan_networks:", "          - {name: blue, vni: 100, bridge: br1, vxlan_dev: vxlan0, dstport: 4789}",
             "      hosts:"]
    for host, ip in VTEPS.items():
        lines += ["        %s:" % host, "          vxlan_underlay_ip: %s" % ip, "          vxlan_endpoints:",
                  "            - {network: blue, namespace: ns1, host_if: tap1, vm_if: tap2, address: %s/24}" % VM_IPS[host]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


TOR_PEER = {"address": TOR_IP, "remote_as": "internal", "password": PASSWORD, "ttl_security_hops": 1,
            "description": "gobgpd ToR", "bfd": True}


def flood_list(lab, host: str) -> list[str]:
    return sorted(e["dst"] for e in fdb(lab, host) if e["mac"] == ZERO and e.get("dst"))


def sessions(lab, host: str) -> dict[str, str]:
    return {p: s["state"] for p, s in vtysh_json(lab, host, "show bgp l2vpn evpn summary json").get("peers", {}).items()}


def gobgpd_config(bfd_less_peers: dict[str, str]) -> str:
    """gobgpd as the fabric's iBGP route reflector (AS 65000), listening on the ToR's address,
    every VTEP a route-reflector-client, TCP-MD5 and GTSM (TTL 255) as the VTEPs have them."""
    lines = ["[global.config]", "  as = 65000", '  router-id = "%s"' % TOR_IP, "  port = 179",
             '  local-address-list = ["%s"]' % TOR_IP]
    for address in bfd_less_peers.values():
        lines += ["[[neighbors]]", "  [neighbors.config]", '    neighbor-address = "%s"' % address, "    peer-as = 65000",
                  '    auth-password = "%s"' % PASSWORD,
                  "  [neighbors.transport.config]", '    local-address = "%s"' % TOR_IP,
                  "  [neighbors.timers.config]", "    connect-retry = 1", "    hold-time = 9", "    keepalive-interval = 3",
                  "  [neighbors.ttl-security.config]", "    enabled = true", "    ttl-min = 255",
                  "  [neighbors.route-reflector.config]", "    route-reflector-client = true",
                  '    route-reflector-cluster-id = "%s"' % TOR_IP,
                  "  [[neighbors.afi-safis]]", "    [neighbors.afi-safis.config]", '      afi-safi-name = "l2vpn-evpn"']
    return "\n".join(lines) + "\n"


def build_hand_vtep(lab) -> None:
    """On `tor`: vxlan100 (VNI 100, port 4789, local the ToR's address, learning) in bridge brx,
    a VM namespace `hand` behind a veth, and the VTEPs in vxlan100's flood list."""
    steps = [["ip", "link", "add", "brx", "type", "bridge"],
             ["ip", "link", "add", "vxlan100", "type", "vxlan", "id", "100", "dstport", "4789", "local", TOR_IP, "dev", "eth0"],
             ["ip", "link", "set", "vxlan100", "master", "brx", "up"],
             ["ip", "netns", "add", "hand"],
             ["ip", "link", "add", "vethx", "type", "veth", "peer", "name", "eth0", "netns", "hand"],
             ["ip", "link", "set", "vethx", "master", "brx", "up"],
             ["ip", "link", "set", "brx", "up"],
             ["ip", "-n", "hand", "link", "set", "eth0", "address", HAND_VM_MAC, "up"],
             ["ip", "-n", "hand", "addr", "add", HAND_VM_IP + "/24", "dev", "eth0"]]
    steps += [["bridge", "fdb", "append", ZERO, "dev", "vxlan100", "dst", ip] for ip in VTEPS.values()]
    for step in steps:
        lab.enter(TOR, *step)


def gobgp(lab, *args: str) -> subprocess.CompletedProcess:
    return lab.enter(TOR, "gobgp", *args)


def tor_rib(lab) -> str:
    """gobgpd's global l2vpn-evpn RIB, as JSON text."""
    return gobgp(lab, "global", "rib", "-a", "evpn", "-j").stdout


def frr_files(lab, host: str) -> bool:
    return Path("/run/overlay-vxlan-lab/%s/%s/frr" % (lab.name, host)).exists()


@pytest.fixture(scope="module")
def peers_lab(tmp_path_factory):
    root_before = root_netns_snapshot()
    directory = tmp_path_factory.mktemp("peers")
    name = unique_lab_name()
    inventory = write_inventory(directory / "peers.yml", name, [TOR_PEER])
    lab = Lab(name, inventory, dict(VTEPS, **{TOR: TOR_IP, CTL: CTL_IP}))
    speaker, log = None, open(directory / "gobgpd.log", "w")
    try:
        lab.create()
        (directory / "gobgpd.toml").write_text(gobgpd_config(VTEPS))
        speaker = subprocess.Popen(_lab.nsenter_argv(name, TOR) + ["gobgpd", "-f", str(directory / "gobgpd.toml"), "-p",
                                                                  "--pprof-disable", "--api-hosts", "127.0.0.1:50051"],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        assert wait_for(lambda: lab.enter(TOR, "gobgp", "global", check=False).returncode == 0, timeout=15), \
            (directory / "gobgpd.log").read_text()[-2000:]
        build_hand_vtep(lab)
        yield SimpleNamespace(lab=lab, inventory=inventory, directory=directory, root_before=root_before)
    finally:
        if speaker is not None:
            speaker.kill()
            speaker.wait(timeout=10)
        log.close()
        if lab.exists():
            proc = lab.destroy(check=False)
            assert proc.returncode == 0 and not lab.exists(), proc.stdout[-2000:]


def test_bad_evpn_peers_stop_the_run_before_any_host_changes(peers_lab, tmp_path):
    lab = peers_lab.lab
    links_before = {h: lab.enter(h, "ip", "-br", "link").stdout for h in VTEPS}
    bad = [{"address": TOR_IP, "remote_as": "6500O"}, {"address": TOR_IP, "remote_as": 65000},
           {"address": VTEPS["h1"], "remote_as": "external", "bfd": "maybe", "password": "has blank"}]
    lab.inventory = write_inventory(tmp_path / "bad.yml", lab.name, bad)
    try:
        proc = lab.playbook(EVPN, check=False)
    finally:
        lab.inventory = peers_lab.inventory
    assert proc.returncode != 0
    out = " ".join(proc.stdout.split())
    for host in VTEPS:
        assert recap(proc.stdout)[host]["failed"] == 1, proc.stdout[-3000:]
        assert "host %s: evpn_peers[0].remote_as='6500O': must be an AS number 1..4294967295, internal or external" % host in out
        assert "host %s: evpn_peers[1]: address='%s': the same neighbour as evpn_peers[0]" % (host, TOR_IP) in out
        assert "host %s: evpn_peers[2].bfd='maybe': must be a boolean" % host in out
        assert "host %s: evpn_peers[2].password (9 characters)" % host in out
    assert "host h1: evpn_peers[2].address='192.168.1.2': is this host's peering address" in out
    assert "has blank" not in proc.stdout + proc.stderr
    # Nothing changed: no play after validate ran, no FRR directory, the kernel's links as before.
    assert "Build the VXLAN overlay" not in proc.stdout
    for host in VTEPS:
        assert not frr_files(lab, host)
        assert lab.enter(host, "ip", "-br", "link").stdout == links_before[host]


def test_evpn_with_a_gobgpd_tor_as_route_reflector(peers_lab):
    lab = peers_lab.lab
    started = time.monotonic()
    first = lab.playbook(EVPN)
    print("converge with the gobgpd ToR: %.1f s" % (time.monotonic() - started))
    assert_ok(first, list(VTEPS))
    # ctl is in no play: site.yml's route reflector play is group controller, which this inventory lacks.
    assert CTL not in recap(first.stdout)
    for host in VTEPS:
        assert sessions(lab, host) == {TOR_IP: "Established"}, sessions(lab, host)
        neighbor = vtysh_json(lab, host, "show bgp neighbors %s json" % TOR_IP)[TOR_IP]
        assert neighbor.get("authenticationEnabled") == 1 and neighbor.get("internalBgpNbrMaxHopsAway") == 1, neighbor
        assert neighbor.get("nbrDesc") == "gobgpd ToR"
        assert neighbor["addressFamilyInfo"]["l2VpnEvpn"].get("routeMapForIncomingAdvertisements") == "OVX-EVPN-IN"
        # The other VTEP's routes, reflected by gobgpd: zebra's entries (verify waited for them too).
        other = next(h for h in VTEPS if h != host)
        assert wait_for(lambda host=host, other=other: extern_learn(lab, host).get(mac_of(VM_IPS[other])) == VTEPS[other], 15), \
            fdb(lab, host)
        assert VTEPS[other] in flood_list(lab, host)
    # The VTEPs' own type-2 (MAC, MAC+IP) and type-3 routes are in gobgpd's RIB.
    rib = wait_for(lambda: (lambda text: text if all(mac_of(ip) in text for ip in VM_IPS.values()) else "")(tor_rib(lab)), 15)
    assert rib, tor_rib(lab)
    text = gobgp(lab, "global", "rib", "-a", "evpn").stdout
    for host, ip in VTEPS.items():
        assert "[type:macadv][rd:%s:" % ip in text and "[mac:%s]" % mac_of(VM_IPS[host]) in text, text
        assert "[ip:%s]" % VM_IPS[host] in text
        assert "[type:multicast][rd:%s:" % ip in text, text

    # gobgpd injects a MAC/IP (type-2) and a flood-list (type-3) route for the VTEP built by hand.
    common = ["rd", TOR_IP + ":100", "rt", "65000:100", "encap", "vxlan", "nexthop", TOR_IP]
    gobgp(lab, "global", "rib", "-a", "evpn", "add", "macadv", HAND_VM_MAC, HAND_VM_IP, "etag", "0", "label", "100", *common)
    gobgp(lab, "global", "rib", "-a", "evpn", "add", "multicast", TOR_IP, "etag", "0", "pmsi", "ingress-repl", "100", TOR_IP, *common)
    for host in VTEPS:
        assert wait_for(lambda host=host: extern_learn(lab, host).get(HAND_VM_MAC) == TOR_IP and TOR_IP in flood_list(lab, host), 20), \
            fdb(lab, host)
        neigh = lab.enter(host, "ip", "neigh", "show", "dev", "br1", HAND_VM_IP).stdout
        assert HAND_VM_MAC in neigh and "extern_learn" in neigh, neigh
        # An inventory VM reaches the hand-built VM behind the hand-built VTEP.
        lab.ping(host, HAND_VM_IP, netns="ns1")
    lab.enter(TOR, "ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "2", VM_IPS["h1"], netns="hand")

    # Idempotent: a second run changes nothing (FRR's running configuration included).
    assert_ok(lab.playbook(EVPN), list(VTEPS), changed=0)
    for host in VTEPS:
        assert extern_learn(lab, host).get(HAND_VM_MAC) == TOR_IP


def evpn_vni(lab, host: str) -> dict:
    """bgpd's view of VNI 100 on `host`: its RD and route targets."""
    return vtysh_json(lab, host, "show bgp l2vpn evpn vni 100 json")


def with_vnis(text: str, vnis: dict[str, list]) -> str:
    """The inventory text with evpn_vnis set per host."""
    for host, items in vnis.items():
        text = text.replace("        %s:\n" % host, "        %s:\n          evpn_vnis: %s\n" % (host, json.dumps(items)))
    return text


def test_per_vni_rd_and_route_targets(peers_lab, tmp_path):
    """evpn_vnis: h1 with its own RD, both VTEPs with route target 65000:1100 instead of FRR's
    automatic 65000:100. bgpd has them, the VTEPs import each other's routes, and no longer the
    hand-built VTEP's (gobgpd tags them 65000:100): the override is in force. Then h2 exports
    another RT and h1 drops h2's VM; without evpn_vnis the automatic RD/RT are back, the hand-built
    VM with them."""
    lab = peers_lab.lab
    h1_rd, rt = "192.168.1.2:1100", "65000:1100"
    same = {"h1": [{"vni": 100, "rd": h1_rd, "route_targets": [rt]}], "h2": [{"vni": 100, "route_targets": [rt]}]}
    lab.inventory = tmp_path / "vnis.yml"
    try:
        lab.inventory.write_text(with_vnis(peers_lab.inventory.read_text(), same))
        assert_ok(lab.playbook(EVPN), list(VTEPS))
        for host in VTEPS:
            vni = evpn_vni(lab, host)
            assert (vni.get("importRts"), vni.get("exportRts")) == ([rt], [rt]), vni
            other = next(h for h in VTEPS if h != host)
            assert wait_for(lambda host=host, other=other: extern_learn(lab, host).get(mac_of(VM_IPS[other])) == VTEPS[other], 20), \
                fdb(lab, host)
            assert wait_for(lambda host=host: HAND_VM_MAC not in extern_learn(lab, host), 20), extern_learn(lab, host)
            lab.ping(host, VM_IPS[other], netns="ns1")
        assert evpn_vni(lab, "h1")["rd"] == h1_rd
        assert evpn_vni(lab, "h2")["rd"].startswith(VTEPS["h2"] + ":"), evpn_vni(lab, "h2")
        assert " route-target import %s\n" % rt in lab.enter("h1", "vtysh", "-c", "show running-config").stdout
        assert_ok(lab.playbook(EVPN), list(VTEPS), changed=0)

        # h2 exports another route target: h1 no longer imports h2's VM (verify, which would
        # find exactly that, is skipped).
        lab.inventory.write_text(with_vnis(peers_lab.inventory.read_text(), dict(
            same, h2=[{"vni": 100, "route_targets_import": [rt], "route_targets_export": ["65000:2200"]}])))
        assert_ok(lab.playbook(EVPN, "--skip-tags", "verify"), list(VTEPS))
        assert evpn_vni(lab, "h2")["exportRts"] == ["65000:2200"], evpn_vni(lab, "h2")
        assert wait_for(lambda: mac_of(VM_IPS["h2"]) not in extern_learn(lab, "h1"), 20), extern_learn(lab, "h1")
    finally:
        lab.inventory = peers_lab.inventory
    # No evpn_vnis: FRR's automatic RD and route targets, the hand-built VM imported again.
    assert_ok(lab.playbook(EVPN), list(VTEPS))
    for host in VTEPS:
        vni = evpn_vni(lab, host)
        assert (vni["rd"].startswith(VTEPS[host] + ":"), vni.get("importRts"), vni.get("exportRts")) == (True, ["65000:100"], ["65000:100"]), vni
        assert "vni 100" not in lab.enter(host, "vtysh", "-c", "show running-config").stdout
        assert wait_for(lambda host=host: extern_learn(lab, host).get(HAND_VM_MAC) == TOR_IP, 20), extern_learn(lab, host)
        lab.ping(host, VM_IPS[next(h for h in VTEPS if h != host)], netns="ns1")


def test_bfd_between_frr_hosts_and_none_with_gobgpd(peers_lab):
    """evpn_bfd with FRR route reflector ctl added (group spare_rr): bfdd's sessions between ctl
    and each VTEP come up. The ToR peer asks for BFD too (bfd: true): gobgpd has none, so bfdd's
    session with it stays down and BGP with it stays Established (BFD takes a session down only
    after it was up)."""
    lab = peers_lab.lab
    extra = ["-e", "evpn_route_reflector_group=spare_rr", "-e", "evpn_bfd=true", "-e", "evpn_graceful_restart=true"]
    assert_ok(lab.playbook(EVPN, *extra), list(VTEPS) + [CTL])
    for host in list(VTEPS) + [CTL]:
        assert " bgp graceful-restart\n" in lab.enter(host, "vtysh", "-c", "show running-config").stdout, host

    def bfd_peers(host):
        return {p["peer"]: p["status"] for p in json.loads(lab.enter(host, "vtysh", "-c", "show bfd peers json").stdout or "[]")}

    for host in VTEPS:
        assert wait_for(lambda host=host: bfd_peers(host).get(CTL_IP) == "up", 20), bfd_peers(host)
        assert bfd_peers(host).get(TOR_IP) in ("down", "init"), bfd_peers(host)
        assert sessions(lab, host) == {TOR_IP: "Established", CTL_IP: "Established"}, sessions(lab, host)
        assert "bfdd=yes" in lab.enter(host, "cat", "/etc/frr/daemons").stdout
    assert wait_for(lambda: {p: s for p, s in bfd_peers(CTL).items()} == dict.fromkeys(VTEPS.values(), "up"), 20), bfd_peers(CTL)
    assert_ok(lab.playbook(EVPN, *extra), list(VTEPS) + [CTL], changed=0)


def test_per_host_asn_ebgp_through_an_frr_route_server(peers_lab, tmp_path):
    """RFC 7938: evpn_asn per host (h1 65001, h2 65002, ctl 65100), no external peer: every session
    is eBGP, ctl passes each VTEP's routes on with the next hop unchanged (the VTEP's own address),
    and the auto-derived route targets (AS:VNI, matched on the VNI for eBGP) import them."""
    lab = peers_lab.lab
    text = peers_lab.inventory.read_text()
    for host, asn in (("h1", 65001), ("h2", 65002)):
        text = text.replace("        %s:\n" % host, "        %s:\n          evpn_asn: %d\n" % (host, asn))
    text = text.replace("%s: {vxlan_underlay_ip: %s}" % (CTL, CTL_IP), "%s: {vxlan_underlay_ip: %s, evpn_asn: 65100}" % (CTL, CTL_IP))
    lab.inventory = write_path = tmp_path / "asn.yml"
    write_path.write_text(text)
    extra = ["-e", "evpn_route_reflector_group=spare_rr", "-e", '{"evpn_peers": []}']
    try:
        assert_ok(lab.playbook(EVPN, *extra), list(VTEPS) + [CTL])
        for host in VTEPS:
            assert sessions(lab, host) == {CTL_IP: "Established"}, sessions(lab, host)
            running = lab.enter(host, "vtysh", "-c", "show running-config").stdout
            assert "neighbor %s remote-as 65100" % CTL_IP in running
            assert "neighbor %s route-map OVX-EVPN-OUT out" % CTL_IP in running
            # (frr.conf has `attribute-unchanged next-hop` too; FRR 8.4 does not show it in its running
            # configuration: the proof is the next hop below, the other VTEP's own address.)
            other = next(h for h in VTEPS if h != host)
            assert wait_for(lambda host=host, other=other: extern_learn(lab, host).get(mac_of(VM_IPS[other])) == VTEPS[other], 20), \
                fdb(lab, host)
            lab.ping(host, VM_IPS[other], netns="ns1")
        ctl_running = lab.enter(CTL, "vtysh", "-c", "show running-config").stdout
        assert "route-reflector-client" not in ctl_running and "route-map OVX-EVPN-OUT out" in ctl_running
        assert_ok(lab.playbook(EVPN, *extra), list(VTEPS) + [CTL], changed=0)
    finally:
        lab.inventory = peers_lab.inventory

    # Teardown stops FRR everywhere; the machine's own namespace is untouched after the lab goes.
    assert_ok(lab.playbook(TEARDOWN, *extra[:2]), list(VTEPS) + [CTL])
    assert not any(frr_files(lab, h) for h in list(VTEPS) + [CTL])
    # ctl's BGP allow-list (site.yml's route reflector play gave it one) is gone with its record.
    assert lab.enter(CTL, "nft", "list", "table", "inet", "overlay_vxlan", check=False).returncode != 0
    assert not Path("/run/overlay-vxlan-lab/%s/%s/state/state.json" % (lab.name, CTL)).exists()
    lab.destroy()
    assert root_netns_snapshot() == peers_lab.root_before
