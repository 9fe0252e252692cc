"""vxlan_endpoint_map_file and vxlan_host_share (plugins/filter/overlay_check.py), as plain functions:
the file gives the same map as the host variables, its mistakes are problems like any other,
and a host's share equals what the vxlan_mesh filter computes."""

from __future__ import annotations

import json

import pytest
import yaml

from ansible_collections.overlay.vxlan.plugins.filter.mesh import compute_mesh
from ansible_collections.overlay.vxlan.plugins.filter.overlay_check import vxlan_host_share, vxlan_overlay_check

BLUE = {"name": "blue", "vni": 100, "bridge": "br1", "vxlan_dev": "vxlan0", "dstport": 4789, "group": "239.1.1.1"}


def endpoints(n: int) -> list[dict]:
    return [{"network": "blue", "namespace": "ns%d" % vm, "host_if": "tap%d" % vm, "vm_if": "vm%d" % vm,
             "address": "100.0.%d.%d/16" % (vm, n + 1)} for vm in (1, 2)]


def hostvars(count: int = 4, with_endpoints: bool = True) -> dict:
    return {"h%d" % n: dict({"vxlan_underlay_ip": "192.168.1.%d" % (n + 1), "vxlan_networks": [dict(BLUE)]},
                            **({"vxlan_endpoints": endpoints(n)} if with_endpoints else {})) for n in range(1, count + 1)}


@pytest.mark.parametrize("suffix", [".json", ".yml"])
def test_the_file_gives_the_same_map_as_host_variables(tmp_path, suffix):
    listed = vxlan_overlay_check(hostvars(), sorted(hostvars()))
    data = {"h%d" % n: {"vxlan_endpoints": endpoints(n)} for n in range(1, 5)}
    path = tmp_path / ("endpoints" + suffix)
    path.write_text(json.dumps(data) if suffix == ".json" else yaml.safe_dump(data))
    from_file = vxlan_overlay_check(hostvars(with_endpoints=False), sorted(hostvars()), str(path))
    # The same networks, endpoints and hosts; only the record of which host variables were read
    # differs (the file's vxlan_endpoints are not host variables).
    assert from_file["problems"] == [] and without_read(from_file["map"]) == without_read(listed["map"])
    # The file wins over a host's own vxlan_endpoints (read instead of them, not merged).
    stale = hostvars()
    stale["h1"]["vxlan_endpoints"] = []
    assert without_read(vxlan_overlay_check(stale, sorted(stale), str(path))["map"]) == without_read(listed["map"])


def without_read(built: dict) -> dict:
    return {key: value for key, value in built.items() if key != "read"}


def test_the_share_equals_the_mesh_filter_and_local_only_keeps_the_host_endpoints():
    hosts = hostvars()
    built = vxlan_overlay_check(hosts, sorted(hosts))["map"]
    plain = {h: {"vxlan_underlay_ip": v["vxlan_underlay_ip"], "vxlan_endpoints": v["vxlan_endpoints"]} for h, v in hosts.items()}
    for host in hosts:
        share = vxlan_host_share(built, host)
        # The same share, bridge addresses (EVPN's SVIs) included: the filter builds the same map.
        assert share == compute_mesh(plain, [BLUE], host), host
        local = vxlan_host_share(built, host, remote=False)
        assert [net["endpoints"] for net in local] == [net["endpoints"] for net in share]
        assert all(net["fdb"] == net["neigh"] == net["remote_endpoints"] == [] for net in local)
    with pytest.raises(Exception, match="host h9 is not one of the overlay hosts"):
        vxlan_host_share(built, "h9")


def test_mistakes_in_the_file_are_problems_naming_host_and_file(tmp_path):
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps({"h1": {"vxlan_endpoints": endpoints(1)}, "h9": {"vxlan_endpoints": []},
                                "h2": {"vxlan_endpoints": [], "vxlan_mode": "flood"},
                                "h3": {"vxlan_endpoints": [dict(endpoints(3)[0], address="100.0.1.2/16")]}}))
    problems = vxlan_overlay_check(hostvars(with_endpoints=False), sorted(hostvars()), str(path))["problems"]
    text = "\n".join(problems)
    assert "host h9: is not in the overlay group" in text
    assert "host h2: must be a dict with only vxlan_underlay_ip and vxlan_endpoints" in text
    assert "VM address 100.0.1.2 is also h1's" in text  # the usual checks judge the file's endpoints
    missing = vxlan_overlay_check(hostvars(), sorted(hostvars()), str(tmp_path / "nope.json"))["problems"]
    assert len(missing) == 1 and "nope.json" in missing[0] and "cannot be read" in missing[0]
    path.write_text("[1, 2]")
    assert "must map host names" in vxlan_overlay_check(hostvars(), sorted(hostvars()), str(path))["problems"][0]


def test_a_share_of_a_map_older_than_the_host_variables_fails_naming_host_and_variable():
    hosts = hostvars()
    built = vxlan_overlay_check(hosts, sorted(hosts))["map"]
    # Unchanged variables: the share is handed out as before.
    assert vxlan_host_share(built, "h2", current=hosts["h2"]) == vxlan_host_share(built, "h2")
    # A VM added by a set_fact after the map was built, a new underlay address, a mode given mid-run.
    later = dict(hosts["h3"], vxlan_endpoints=endpoints(3) + [dict(endpoints(3)[0], namespace="ns9", address="100.0.9.4/16")])
    with pytest.raises(Exception, match=r"host h3: vxlan_endpoints=\[.*100.0.9.4/16.*\] changed after this run's endpoint map was built"):
        vxlan_host_share(built, "h3", current=later)
    with pytest.raises(Exception, match=r'host h1: vxlan_mode="flood"; vxlan_underlay_ip="192.168.1.9" changed'):
        vxlan_host_share(built, "h1", current=dict(hosts["h1"], vxlan_underlay_ip="192.168.1.9", vxlan_mode="flood"))
    # Another host's change is that host's to report: h1's share is still handed out.
    assert vxlan_host_share(built, "h1", current=hosts["h1"])


def test_variables_read_from_the_endpoint_map_file_are_not_compared_with_the_host_variables(tmp_path):
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps({"h%d" % n: {"vxlan_endpoints": endpoints(n)} for n in range(1, 5)}))
    hosts = hostvars(with_endpoints=False)
    built = vxlan_overlay_check(hosts, sorted(hosts), str(path))["map"]
    # The host has no vxlan_endpoints of its own (the file has them): not a change.
    assert vxlan_host_share(built, "h1", current=hosts["h1"])
    assert "vxlan_endpoints" not in built["read"]["h1"] and "vxlan_underlay_ip" in built["read"]["h1"]
