"""The verify role through ansible-playbook on a real lab: it passes on every valid set-up, and on
broken state it fails with sentences that name the host, the device, the entry or attribute, what
was expected and what was found.

One lab for the whole file (the repository's lab inventory, so DOVE's controller ctl is there),
under a random lab name; each test first converges the state it needs, so the order of the tests
does not matter. The lab is destroyed at the end, also on failure.
"""

from __future__ import annotations

import re

import pytest
from lab_fixtures import DEFAULT_INVENTORY, ROOT, Lab, _destroy_all, _lab, recap, root_netns_snapshot, unique_lab_name

SITE = ROOT / "site.yml"
VERIFY = ROOT / "playbooks" / "verify.yml"
DOVE = ROOT / "playbooks" / "dove.yml"
HOSTS = {"h1": "192.168.1.2", "h2": "192.168.1.3", "h3": "192.168.1.4"}
OVERLAY = sorted(HOSTS)


@pytest.fixture(scope="module")
def vlab():
    root_before = root_netns_snapshot()
    lab = Lab(unique_lab_name(), DEFAULT_INVENTORY, dict(HOSTS, ctl="192.168.1.10"))
    try:
        lab.create()
        yield lab
    finally:
        _destroy_all([lab])
    assert root_netns_snapshot() == root_before, "the lab left something in the machine's own namespace"


def words(proc) -> str:
    """Everything the run printed, whitespace collapsed: the callback wraps long messages."""
    return re.sub(r"\s+", " ", proc.stdout + "\n" + proc.stderr)


def passes(proc, *expected: str) -> None:
    stats = recap(proc.stdout)
    tail = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    for host in OVERLAY:
        assert stats[host]["failed"] == 0 and stats[host]["unreachable"] == 0, tail
    for text in expected:
        assert text in words(proc), "%r not in\n%s" % (text, tail)


def fails(proc, *expected: str) -> str:
    text = words(proc)
    tail = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode != 0, tail
    assert "Unknown error" not in text, tail
    for sentence in expected:
        assert sentence in text, "%r not in\n%s" % (sentence, tail)
    return text


def static(lab) -> None:
    passes(lab.playbook(SITE, "-e", "vxlan_mode=static"), "tables as converge sets them")


@pytest.mark.parametrize("mode", ["static", "flood", "multicast"])
def test_every_mode_verifies(vlab, mode):
    passes(vlab.playbook(SITE, "-e", "vxlan_mode=%s" % mode),
           "2 pairs reachable, 0 isolated, overlay MTU 1450 proven, tables as converge sets them")
    # The standalone playbook agrees with the converge, and changes nothing.
    alone = vlab.playbook(VERIFY, "-e", "vxlan_mode=%s" % mode)
    passes(alone, "overlay MTU 1450 proven, tables as converge sets them")
    assert all(recap(alone.stdout)[h]["changed"] == 0 for h in OVERLAY), alone.stdout[-3000:]


def test_underlay_mtu_1400_verifies(vlab):
    # The lab's underlay is 1500; a smaller declared underlay is valid (overlay 1350 everywhere).
    try:
        passes(vlab.playbook(SITE, "-e", "vxlan_underlay_mtu=1400"),
               "overlay MTU 1350 proven, tables as converge sets them")
        passes(vlab.playbook(VERIFY, "-e", "vxlan_underlay_mtu=1400"), "overlay MTU 1350 proven")
        assert "mtu 1350 " in vlab.enter("h2", "ip", "link", "show", "vxlan0").stdout
    finally:
        static(vlab)


def test_missing_and_extra_fdb_entries_are_named(vlab):
    static(vlab)
    vlab.enter("h2", "bridge", "fdb", "del", "02:00:64:00:00:04", "dev", "vxlan0", "dst", "192.168.1.4")
    vlab.enter("h1", "bridge", "fdb", "append", "02:00:64:00:00:09", "dev", "vxlan0", "dst", "192.168.1.9")
    vlab.enter("h3", "ip", "neigh", "del", "100.0.0.2", "dev", "vxlan0")
    fails(vlab.playbook(VERIFY, check=False),
          'h2: vxlan0 fdb entry "02:00:64:00:00:04 dst 192.168.1.4" is missing',
          'h1: vxlan0 fdb entry "02:00:64:00:00:09 dst 192.168.1.9" is extra (converge would remove it)',
          'h3: vxlan0 neighbour entry "100.0.0.2 lladdr 02:00:64:00:00:02" is missing',
          # Without its entry h2 cannot reach h3's VM (h3's VM still has h1's MAC in its ARP cache,
          # so the missing neighbour entry alone does not cut a path).
          "h2: VM 100.0.0.3 (namespace ns1, network blue) cannot ping 100.0.0.4 (VM on h3)")
    static(vlab)  # converge repairs exactly that, and verify agrees


def test_changed_attribute_and_mtu_proof_are_named(vlab):
    static(vlab)
    vlab.enter("h3", "ip", "link", "set", "vxlan0", "mtu", "1400")
    fails(vlab.playbook(VERIFY, check=False),
          "h3: VXLAN device vxlan0: mtu is 1400, expected 1450",
          # h3's replies of 1450 bytes no longer fit its vxlan0: the full-MTU proof fails.
          "h1: VM 100.0.0.2 (namespace ns1, network blue) to 100.0.0.4 (VM on h3): overlay MTU 1450 not proven, "
          "the full-MTU don't-fragment ping (1450 bytes) got no reply")
    static(vlab)


def test_one_byte_more_not_refused_is_named(vlab):
    static(vlab)
    # Claim an overlay MTU one byte below the real one: the "one byte more" probe then gets through.
    fails(vlab.playbook(VERIFY, "-e", "verify_underlay_mtu=1499", "-e", "verify_tables=false", check=False),
          "h1: VM 100.0.0.2 (namespace ns1, network blue) to 100.0.0.3 (VM on h2): overlay MTU 1449 not proven, "
          "a don't-fragment ping of one byte more (1450 bytes) was not refused")


def test_vm_veth_down_is_named(vlab):
    static(vlab)
    vlab.enter("h1", "ip", "link", "set", "tap2", "down", netns="ns1")
    fails(vlab.playbook(VERIFY, check=False),
          "h1: VM veth tap1 (peer tap2 in namespace ns1): up is false, expected true",
          "h1: VM 100.0.0.2 (namespace ns1, network blue) cannot ping 100.0.0.3 (VM on h2)",
          "h2: VM 100.0.0.3 (namespace ns1, network blue) cannot ping 100.0.0.2 (VM on h1)")
    static(vlab)


def test_site_refuses_dove_before_any_change(vlab):
    static(vlab)
    proc = vlab.playbook(SITE, "-e", "vxlan_mode=dove", check=False)
    fails(proc, "vxlan_mode=dove needs the etcd controller started first: run playbooks/dove.yml "
                "(with the same -e options) instead of site.yml.")
    assert "TASK [overlay.vxlan.endpoint" not in proc.stdout, proc.stdout[-3000:]
    assert all(stats["changed"] == 0 for stats in recap(proc.stdout).values()), proc.stdout[-3000:]


def test_dove_verifies_and_a_down_store_is_one_sentence(vlab):
    try:
        passes(vlab.playbook(DOVE))
        passes(vlab.playbook(VERIFY, "-e", "vxlan_mode=dove"),
               "tables as converge sets them, DOVE agent: etcd store connected")
        vlab.ansible("ctl", "ansible.builtin.include_role", "name=overlay.vxlan.controller", "-e", "controller_state=absent")
        text = fails(vlab.playbook(VERIFY, "-e", "vxlan_mode=dove", check=False),
                     *["%s: DOVE store etcd at https://192.168.1.10:2379 is down or unreachable (agent store state down): "
                       "start it with playbooks/dove.yml, which runs etcd on group controller, or point "
                       "dove_agent_etcd_endpoints at a running etcd" % host for host in OVERLAY])
        assert '"counters"' not in text, "the agent's JSON was dumped"
    finally:
        static(vlab)  # stops the agents


def agents_in(lab, host: str) -> list[int]:
    """PIDs of DOVE agents running inside one lab host (its network namespace)."""
    found = []
    for pid in _lab.processes_in(_lab.ns_ids([lab.pins(host)["net"]])):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                if b"overlay_vxlan_agent" in handle.read():
                    found.append(pid)
        except OSError:
            continue
    return found


def test_dove_host_left_without_vms_stops_its_agent_and_the_rest_verifies(vlab, tmp_path):
    """A move can leave a host without VMs: it has no network to serve, so its agent stops
    (the agent refuses to run with none) and the converge and checks pass on the others."""
    empty = tmp_path / "h3_empty.yml"
    empty.write_text("all:\n  hosts:\n    h3:\n      vxlan_endpoints: []\n")
    try:
        passes(vlab.playbook(DOVE))
        assert agents_in(vlab, "h3"), "no agent on h3 after the dove converge"
        passes(vlab.playbook(DOVE, "-i", str(empty)), "tables as converge sets them")
        assert agents_in(vlab, "h3") == [], "h3 has no VM left and still runs an agent"
        assert agents_in(vlab, "h1") and agents_in(vlab, "h2")
    finally:
        static(vlab)  # stops the agents

