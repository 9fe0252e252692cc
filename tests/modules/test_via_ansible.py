"""The modules through the real `ansible` CLI: collection resolved by ansible.cfg, AnsiballZ
packaging, check and diff rendering, and the result as the controller prints it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from _assertions import assert_unchanged, stable_dump
from helpers import ROOT, bridge_json, ip_json, ns_exec

BIN = Path(sys.executable).parent


def ansible(module: str, args: dict, *flags: str, result_format: str = "json") -> tuple[subprocess.CompletedProcess, dict | None]:
    """`ansible localhost -c local -m overlay.vxlan.<module> -a '<json>'` run at the repository
    root with no ANSIBLE_* variables, so only ansible.cfg makes overlay.vxlan.* resolvable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CALLBACK_RESULT_FORMAT=result_format, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [str(BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=%s" % sys.executable,
         "-m", "overlay.vxlan.%s" % module, "-a", json.dumps(args), *flags],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    match = re.search(r"^localhost \| (CHANGED|SUCCESS|FAILED!) => ", proc.stdout, re.M)
    assert match, proc.stdout + proc.stderr
    result = None
    if result_format == "json":
        result, _end = json.JSONDecoder().raw_decode(proc.stdout[match.end():])
        result["_status"] = match.group(1)
    for text in (proc.stdout, proc.stderr):
        assert "Traceback" not in text, text
    return proc, result


def test_bridge_fdb_check_diff_apply_idempotent(vxlan):
    ns = vxlan.name
    params = {"netns": ns, "dev": "vxlan0", "entries": [
        {"mac": "00:00:00:00:00:00", "dst": "192.168.1.3"}, {"mac": "36:AE:ED:9D:22:AA", "dst": "192.168.1.4"}]}
    before = stable_dump(ns)

    # The human output: the diff is rendered as a unified diff of the table.
    proc, _ = ansible("bridge_fdb", params, "--check", "--diff", result_format="yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--- before: vxlan0 fdb" in proc.stdout and "+++ after: vxlan0 fdb" in proc.stdout
    assert "+00:00:00:00:00:00 dst 192.168.1.3" in proc.stdout and "+36:ae:ed:9d:22:aa dst 192.168.1.4" in proc.stdout
    assert "localhost | CHANGED =>" in proc.stdout
    assert_unchanged(ns, before)

    proc, result = ansible("bridge_fdb", params, "--diff")
    assert (proc.returncode, result["_status"], result["changed"]) == (0, "CHANGED", True)
    assert sorted(result["added"]) == ["00:00:00:00:00:00 dst 192.168.1.3", "36:ae:ed:9d:22:aa dst 192.168.1.4"]
    assert sorted((e["mac"], e["dst"]) for e in bridge_json(ns, "fdb", "show", "dev", "vxlan0") if "dst" in e) == [
        ("00:00:00:00:00:00", "192.168.1.3"), ("36:ae:ed:9d:22:aa", "192.168.1.4")]

    proc, result = ansible("bridge_fdb", params, "--check", "--diff")
    assert (result["_status"], result["changed"]) == ("SUCCESS", False)
    proc, result = ansible("bridge_fdb", params)
    assert (result["_status"], result["changed"]) == ("SUCCESS", False)


def test_vxlan_link_recreate_is_announced_in_the_diff(underlay):
    ns = underlay.name
    ns_exec(ns, "ip", "link", "add", "br1", "type", "bridge")
    params = {"netns": ns, "name": "vxlan0", "vni": 100, "local": "192.168.1.2", "dev": "eth0", "master": "br1"}
    proc, result = ansible("vxlan_link", params)
    assert (result["_status"], result["changed"], result["link"]["mtu"], result["link"]["master"]) == ("CHANGED", True, 1450, "br1")
    before = stable_dump(ns)

    proc, _ = ansible("vxlan_link", dict(params, vni=200), "--check", "--diff", result_format="yaml")
    assert proc.returncode == 0
    assert "vxlan0 (recreated: vni cannot change in place)" in proc.stdout
    assert re.search(r"^-\s+\"?vni\"?: 100", proc.stdout, re.M) and re.search(r"^\+\s+\"?vni\"?: 200", proc.stdout, re.M), proc.stdout
    assert_unchanged(ns, before)

    proc, result = ansible("vxlan_link", dict(params, vni=200))
    assert (result["changed"], result["recreated"]) == (True, True)
    assert ip_json(ns, "-d", "link", "show", "vxlan0")[0]["linkinfo"]["info_data"]["id"] == 200


def test_bad_input_fails_cleanly_through_the_controller(vxlan):
    ns = vxlan.name
    before = stable_dump(ns)
    params = {"netns": ns, "dev": "vxlan0", "entries": [{"ip": "100.0.0.3", "lladdr": "01:00:5e:00:00:01"}]}
    proc, result = ansible("ip_neigh", params)
    assert proc.returncode == 2
    assert result["_status"] == "FAILED!" and result["changed"] is False
    assert result["msg"].startswith("entries[0].lladdr='01:00:5e:00:00:01': is a multicast/broadcast MAC")
    assert result["field"] == "entries[0].lladdr"
    assert_unchanged(ns, before)


def test_missing_namespace_is_not_created_through_the_controller():
    name = "ovxt-cli-missing"
    proc, result = ansible("ip_neigh", {"netns": name, "dev": "vxlan0", "entries": []})
    assert proc.returncode == 2 and result["msg"] == "netns='%s': network namespace does not exist" % name
    assert not os.path.exists("/run/netns/" + name)
