"""Every playbook passes --syntax-check against every inventory, and the inventories parse into
the groups the roles expect (the example inventory is for real hosts: it is only checked here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
INVENTORIES = ["inventories/lab", "inventories/machines", "inventories/example", "inventories/multi"]
PLAYBOOKS = ["site.yml"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "playbooks").glob("*.yml"))


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_inventory_has_the_source_topology(inventory):
    proc = run("ansible-inventory", "-i", inventory, "--list")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    overlay = data["overlay"]["hosts"]
    assert overlay[:3] == ["h1", "h2", "h3"]
    hostvars = data["_meta"]["hostvars"]
    assert [hostvars[h]["vxlan_underlay_ip"] for h in ("h1", "h2", "h3")] == ["192.168.1.2", "192.168.1.3", "192.168.1.4"]
    assert hostvars["h1"]["vxlan_endpoints"][0]["address"] == "100.0.0.2/24"
    assert hostvars["h1"]["vxlan_networks"][0]["vni"] == 100


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_every_playbook_passes_syntax_check(inventory):
    proc = run("ansible-playbook", "-i", inventory, "--syntax-check", *PLAYBOOKS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
