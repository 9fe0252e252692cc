"""site.yml on the simulated lab: converge, idempotence, teardown, and the machine left alone.

Each test builds a lab of its own (random lab_name) from a real inventory of the repository and
destroys it at the end, also on failure.
"""

from __future__ import annotations

import json

from lab_fixtures import DEFAULT_INVENTORY, ROOT, _strip, recap, root_netns_snapshot

SITE = ROOT / "site.yml"
TEARDOWN = ROOT / "playbooks" / "teardown.yml"
MULTI_INVENTORY = ROOT / "inventories" / "multi"
SOURCE_HOSTS = {"h1": "192.168.1.2", "h2": "192.168.1.3", "h3": "192.168.1.4"}


def host_snapshot(lab, host: str) -> dict:
    """A lab host's own network state: links, addresses, routes and its named namespaces."""
    def ip(*args):
        out = lab.enter(host, "ip", "-j", *args).stdout
        state = _strip(json.loads(out) if out.strip() else [])
        for link in state:  # IPv6 duplicate address detection finishing is a timer, not a change
            for addr in link.get("addr_info", []):
                addr.pop("tentative", None)
        return state

    return {"links": ip("link"), "addrs": ip("addr"), "routes": ip("route"), "routes6": ip("-6", "route"),
            "netns": lab.enter(host, "ip", "netns", "list").stdout.split()}


def assert_converged(proc, hosts, changed=None):
    stats = recap(proc.stdout)
    assert set(stats) >= set(hosts), proc.stdout[-3000:]
    for host in hosts:
        assert stats[host]["failed"] == 0 and stats[host]["unreachable"] == 0, proc.stdout[-3000:]
        if changed is not None:
            assert stats[host]["changed"] == changed, "%s changed=%d\n%s" % (host, stats[host]["changed"], proc.stdout[-3000:])


def test_site_converges_is_idempotent_and_teardown_restores_the_hosts(lab_factory):
    root_before = root_netns_snapshot()
    lab = lab_factory(SOURCE_HOSTS, inventory=DEFAULT_INVENTORY)
    hosts_before = {host: host_snapshot(lab, host) for host in SOURCE_HOSTS}

    first = lab.playbook(SITE)
    assert_converged(first, SOURCE_HOSTS)
    assert all(recap(first.stdout)[h]["changed"] > 0 for h in SOURCE_HOSTS)
    assert "2 pairs reachable" in first.stdout and "overlay MTU 1450 proven" in first.stdout
    # The source's topology really is there: ns1/tap2 with its address, vxlan0 in br1.
    assert "100.0.0.2/24" in lab.enter("h1", "ip", "-o", "addr", "show", "tap2", netns="ns1").stdout
    assert "master br1" in lab.enter("h1", "ip", "link", "show", "vxlan0").stdout
    lab.ping("h3", "100.0.0.2", netns="ns1")
    assert root_netns_snapshot() == root_before

    second = lab.playbook(SITE)
    assert_converged(second, SOURCE_HOSTS, changed=0)
    # Converged hosts skip the vxlan role's change task (overlay_plan found nothing). The endpoint
    # role has no plan since its change task is one process (overlay_apply): it ran, changing nothing.
    assert "TASK [overlay.vxlan.vxlan : VXLAN devices (multicast" not in second.stdout, second.stdout[-3000:]
    assert "TASK [overlay.vxlan.endpoint : Bridges (brctl" in second.stdout, second.stdout[-3000:]

    # Hand drift on h2 (a full-mesh fdb entry gone) and h3 (br1 down): only they change, and are repaired.
    lab.enter("h2", "bridge", "fdb", "del", "02:00:64:00:00:04", "dev", "vxlan0", "dst", "192.168.1.4")
    lab.enter("h3", "ip", "link", "set", "br1", "down")
    third = lab.playbook(SITE)
    assert_converged(third, SOURCE_HOSTS)
    assert {h: recap(third.stdout)[h]["changed"] > 0 for h in SOURCE_HOSTS} == {"h1": False, "h2": True, "h3": True}, third.stdout[-3000:]
    assert "02:00:64:00:00:04 dst 192.168.1.4" in lab.enter("h2", "bridge", "fdb", "show", "dev", "vxlan0").stdout
    assert "state UP" in lab.enter("h3", "ip", "link", "show", "br1").stdout
    assert_converged(lab.playbook(SITE), SOURCE_HOSTS, changed=0)

    # A mode that does not exist is named, and nothing is changed.
    wrong = lab.playbook(SITE, "-e", "vxlan_mode=bgp", check=False)
    assert wrong.returncode != 0 and "vxlan_mode=bgp: choose one of multicast, flood, static, dove, evpn" in wrong.stdout + wrong.stderr
    assert "changed=0" in wrong.stdout and "TASK [overlay.vxlan.vxlan : Anything to do?" not in wrong.stdout

    teardown = lab.playbook(TEARDOWN)
    assert_converged(teardown, SOURCE_HOSTS)
    assert {host: host_snapshot(lab, host) for host in SOURCE_HOSTS} == hosts_before
    assert_converged(lab.playbook(TEARDOWN), SOURCE_HOSTS, changed=0)

    lab.destroy()
    assert not lab.exists()
    assert root_netns_snapshot() == root_before


def test_two_overlays_on_the_same_subnet_never_cross(lab_factory):
    lab = lab_factory(SOURCE_HOSTS, inventory=MULTI_INVENTORY)
    proc = lab.playbook(SITE)
    assert_converged(proc, SOURCE_HOSTS)
    # verify probed the other VNI's addresses and none answered (a leak fails the play).
    assert not [line for line in proc.stdout.splitlines() if "LEAK-FAIL" in line and " = " not in line]
    assert "3 pairs reachable, 5 isolated" in proc.stdout
    lab.ping("h1", "100.0.0.13", netns="ns2")   # red to red, across hosts
    lab.ping("h1", "100.0.0.3", netns="ns1")    # blue to blue
    blue_to_red = lab.enter("h1", "ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", "100.0.0.13", netns="ns1", check=False)
    assert blue_to_red.returncode != 0, blue_to_red.stdout
    vnis = {line.split()[1]: line for line in lab.enter("h2", "ip", "-o", "-d", "link", "show", "type", "vxlan").stdout.splitlines()}
    assert "id 100 " in vnis["vxlan0:"] and "id 200 " in vnis["vxlan1:"]
