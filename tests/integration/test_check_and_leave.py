"""Check mode through the roles, and endpoints that leave the inventory, on the simulated lab.

- `site.yml --check --diff` on fresh hosts exits 0, shows what it would create, creates nothing;
  on converged hosts with a pending change (hand drift, a new VM) it shows exactly that change,
  exits 0 and changes nothing.
- a VM removed from the inventory leaves its host on the next converge (the record of what the
  collection created there), and a VM teardown no longer knows of is still removed by it.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from lab_fixtures import DEFAULT_INVENTORY, ROOT, recap, root_netns_snapshot
from test_site import SOURCE_HOSTS, assert_converged, host_snapshot

SITE = ROOT / "site.yml"
STATE_ROOT = Path("/run/overlay-vxlan-lab")  # role persist's record, per lab host
TEARDOWN = ROOT / "playbooks" / "teardown.yml"


def endpoint(n: int, namespace: str = "ns1", host_if: str = "tap1", vm_if: str = "tap2") -> dict:
    return {"network": "blue", "namespace": namespace, "host_if": host_if, "vm_if": vm_if, "address": "100.0.0.%d/24" % n}


def inventory_override(path, host_vars: dict) -> list[str]:
    """A second inventory source whose host variables win over inventories/lab's."""
    path.write_text(yaml.safe_dump({"all": {"children": {"overlay": {"hosts": host_vars}}}}))
    return ["-i", str(path)]


def test_check_mode_fresh_then_pending_change(lab_factory, tmp_path):
    root_before = root_netns_snapshot()
    lab = lab_factory(SOURCE_HOSTS, inventory=DEFAULT_INVENTORY)
    fresh = {host: host_snapshot(lab, host) for host in SOURCE_HOSTS}

    check = lab.playbook(SITE, "--check", "--diff")
    assert_converged(check, SOURCE_HOSTS)
    for line in ("+02:00:64:00:00:03 dst 192.168.1.3", "+100.0.0.4 lladdr 02:00:64:00:00:04"):
        assert line in check.stdout, check.stdout[-3000:]
    assert "ping from \\ to" not in check.stdout  # nothing was built to ping: verify is skipped
    assert {host: host_snapshot(lab, host) for host in SOURCE_HOSTS} == fresh

    assert_converged(lab.playbook(SITE), SOURCE_HOSTS)
    # Pending: a fdb entry gone by hand on h2, and a second VM for h3 in the inventory.
    lab.enter("h2", "bridge", "fdb", "del", "02:00:64:00:00:04", "dev", "vxlan0", "dst", "192.168.1.4")
    converged = {host: host_snapshot(lab, host) for host in SOURCE_HOSTS}
    h2_fdb = lab.enter("h2", "bridge", "fdb", "show", "dev", "vxlan0").stdout
    more = inventory_override(tmp_path / "more.yml", {"h3": {"vxlan_endpoints": [endpoint(4), endpoint(5, "ns2", "tap3", "tap4")]}})
    pending = lab.playbook(SITE, *more, "--check", "--diff")
    assert_converged(pending, SOURCE_HOSTS)
    stats = recap(pending.stdout)
    assert stats["h2"]["changed"] > 0 and stats["h3"]["changed"] > 0, pending.stdout[-3000:]
    assert "+02:00:64:00:00:04 dst 192.168.1.4" in pending.stdout  # h2's repair
    assert "+02:00:64:00:00:05 dst 192.168.1.4" in pending.stdout  # the new VM, on h1 and h2
    assert {host: host_snapshot(lab, host) for host in SOURCE_HOSTS} == converged
    assert lab.enter("h2", "bridge", "fdb", "show", "dev", "vxlan0").stdout == h2_fdb
    assert root_netns_snapshot() == root_before


def test_a_vm_that_leaves_the_inventory_leaves_its_host(lab_factory, tmp_path):
    lab = lab_factory(SOURCE_HOSTS, inventory=DEFAULT_INVENTORY)
    fresh = {host: host_snapshot(lab, host) for host in SOURCE_HOSTS}
    two = inventory_override(tmp_path / "two.yml", {"h3": {"vxlan_endpoints": [endpoint(4), endpoint(5, "ns2", "tap3", "tap4")]}})
    assert_converged(lab.playbook(SITE, *two), SOURCE_HOSTS)
    assert "ns2" in lab.enter("h3", "ip", "netns", "list").stdout
    lab.ping("h1", "100.0.0.5", netns="ns1")

    # ns2 leaves the inventory: gone from h3 (namespace and veth pair) and from every peer's tables.
    back = lab.playbook(SITE)
    assert_converged(back, SOURCE_HOSTS)
    assert "ns2" not in lab.enter("h3", "ip", "netns", "list").stdout.split()
    assert "tap3" not in lab.enter("h3", "ip", "-o", "link").stdout
    vxlan_entries = [line for line in lab.enter("h1", "bridge", "fdb", "show", "dev", "vxlan0").stdout.splitlines() if " self" in line]
    assert not [line for line in vxlan_entries if "02:00:64:00:00:05" in line], vxlan_entries  # (br1 may still have it learned)
    assert_converged(lab.playbook(SITE), SOURCE_HOSTS, changed=0)

    # Teardown with an inventory that has forgotten h3's VM still removes it: the record knows.
    lab.playbook(SITE, *two)
    none = inventory_override(tmp_path / "none.yml", {"h3": {"vxlan_endpoints": []}})
    assert_converged(lab.playbook(TEARDOWN, *none), SOURCE_HOSTS)
    assert {host: host_snapshot(lab, host) for host in SOURCE_HOSTS} == fresh
    for host in SOURCE_HOSTS:  # the record went with it
        assert not (STATE_ROOT / lab.name / host / "state").exists()
