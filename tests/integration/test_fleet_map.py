"""The roles take each host's share from the endpoint map built once per run, and a fleet may
keep its endpoints in one file (vxlan_endpoint_map_file): on the simulated lab, the converge
equals what the vxlan_mesh filter (the roles' former source) computes, host by host, and the
file form is the very same overlay as the host_vars lists of inventories/lab's format.
"""

from __future__ import annotations

import json

from lab_fixtures import ROOT, recap
from test_site import assert_converged

from ansible_collections.overlay.vxlan.plugins.filter.mesh import compute_mesh

SITE = ROOT / "site.yml"
ROLES_ALONE = ROOT / "molecule" / "resources" / "converge.yml"
HOSTS = {"h1": "192.168.1.2", "h2": "192.168.1.3", "h3": "192.168.1.4"}
NETWORKS = [{"name": "blue", "vni": 100, "bridge": "br1", "vxlan_dev": "vxlan0", "dstport": 4789, "group": "239.1.1.1"}]
# Two VMs per host: the endpoint role's one process builds both veth pairs.
ENDPOINTS = {
    host: [{"network": "blue", "namespace": "ns%d" % vm, "host_if": "tap%d" % vm, "vm_if": "vm%d" % vm,
            "address": "100.0.%d.%d/16" % (vm, i + 2)} for vm in (1, 2)]
    for i, host in enumerate(HOSTS)
}

GROUP_VARS = """---
vxlan_mode: static
vxlan_underlay_dev: eth0
vxlan_networks: %s
""" % json.dumps(NETWORKS)


def write_inventory(directory, lab_name: str, map_file: bool):
    """inventories/lab's shape (groups lab > overlay); endpoints as host_vars lists or in a file."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["---", "all:", "  children:", "    lab:", "      vars:",
             "        ansible_connection: overlay.vxlan.lab",
             '        ansible_python_interpreter: "{{ ansible_playbook_python }}"',
             "        lab_name: %s" % lab_name, "        lab_underlay_prefix: 24",
             "      children:", "        overlay:", "    overlay:", "      hosts:"]
    for host, ip in HOSTS.items():
        lines.append("        %s:" % host)
        lines.append("          vxlan_underlay_ip: %s" % ip)
        if not map_file:
            lines.append("          vxlan_endpoints: %s" % json.dumps(ENDPOINTS[host]))
    (directory / "hosts.yml").write_text("\n".join(lines) + "\n")
    (directory / "group_vars").mkdir(exist_ok=True)
    overlay = GROUP_VARS
    if map_file:
        (directory / "endpoints.json").write_text(json.dumps({h: {"vxlan_endpoints": e} for h, e in ENDPOINTS.items()}))
        overlay += "vxlan_endpoint_map_file: %s\n" % (directory / "endpoints.json")
    (directory / "group_vars" / "overlay.yml").write_text(overlay)
    return directory / "hosts.yml"


def tables(lab, host: str) -> dict:
    fdb = {"%s dst %s" % (w[0], w[w.index("dst") + 1])
           for w in map(str.split, lab.enter(host, "bridge", "fdb", "show", "dev", "vxlan0").stdout.splitlines())
           if "permanent" in w and "dst" in w}
    neigh = {"%s lladdr %s" % (w[0], w[w.index("lladdr") + 1])
             for w in map(str.split, lab.enter(host, "ip", "neigh", "show", "dev", "vxlan0", "nud", "permanent").stdout.splitlines())}
    return {"fdb": fdb, "neigh": neigh, "netns": sorted(lab.enter(host, "ip", "netns", "list").stdout.split()[::3])}


def expected(host: str) -> dict:
    """What the vxlan_mesh filter computes for the host (the roles' former per-host source)."""
    mesh = compute_mesh({h: {"vxlan_underlay_ip": ip, "vxlan_endpoints": ENDPOINTS[h]} for h, ip in HOSTS.items()}, NETWORKS, host)
    return {"fdb": {"%s dst %s" % (e["mac"], e["dst"]) for net in mesh for e in net["fdb"]},
            "neigh": {"%s lladdr %s" % (e["ip"], e["lladdr"]) for net in mesh for e in net["neigh"]},
            "netns": ["ns1", "ns2"]}


def test_map_converge_equals_the_mesh_and_the_file_form_is_the_same_overlay(lab_factory, tmp_path):
    lab = lab_factory(HOSTS, create=False)
    lab.inventory = write_inventory(tmp_path / "lists", lab.name, map_file=False)
    lab.create()

    first = lab.playbook(SITE)
    assert_converged(first, HOSTS)
    assert "pairs reachable" in first.stdout, first.stdout[-3000:]
    for host in HOSTS:
        assert tables(lab, host) == expected(host), host
        assert len(expected(host)["fdb"]) == 4  # 2 remote hosts x 2 VMs
    assert_converged(lab.playbook(SITE), HOSTS, changed=0)

    # The same overlay with the endpoints in one file: nothing to change, with site.yml (map from
    # validate.yml) and with the roles alone (the roles build the map themselves, once).
    lab.inventory = write_inventory(tmp_path / "file", lab.name, map_file=True)
    assert_converged(lab.playbook(SITE), HOSTS, changed=0)
    alone = lab.playbook(ROLES_ALONE)
    assert_converged(alone, HOSTS, changed=0)
    assert alone.stdout.count("TASK [overlay.vxlan.endpoint : The overlay's endpoint map, once") == 1, alone.stdout[-3000:]

    # A VM removed from the file leaves every peer's tables (exact) on the next converge.
    gone = ENDPOINTS["h3"].pop()
    try:
        write_inventory(tmp_path / "file", lab.name, map_file=True)
        changed = lab.playbook(SITE)
    finally:
        ENDPOINTS["h3"].append(gone)
    assert_converged(changed, HOSTS)
    assert all(recap(changed.stdout)[h]["changed"] > 0 for h in HOSTS), changed.stdout[-3000:]
    for host in ("h1", "h2"):
        assert not any(gone["address"].split("/")[0] + " " in n for n in tables(lab, host)["neigh"])
        assert len(tables(lab, host)["fdb"]) == 3


def test_a_bad_map_file_is_refused_before_any_change(lab_factory, tmp_path):
    lab = lab_factory(HOSTS, create=False)
    lab.inventory = write_inventory(tmp_path / "file", lab.name, map_file=True)
    (tmp_path / "file" / "endpoints.json").write_text(json.dumps({"h9": {"vxlan_endpoints": []},
                                                                  "h1": {"vxlan_endpoints": [], "vxlan_mode": "x"}}))
    proc = lab.playbook(SITE, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "host h9: is not in the overlay group" in out and "host h1: must be a dict with only" in out, out[-3000:]
    assert "changed=0" in out
