"""benchmarks/modes_bench.py without a lab: the moved inventory, the rendering of the section
(evpn and move columns, rows of an earlier run kept) and the merge of several runs' results."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import modes_bench  # noqa: E402

OLD_SECTION = """
Measured by `benchmarks/modes_bench.py` on an old day. Load average 1 / 1 / 1.

| mode | hosts | first converge | no-change re-run | module processes | h1 fdb / neigh after the converge | after traffic | first ping |
|---|---:|---:|---:|---:|---:|---:|---:|
| static | 3 | 36.9 s (20.3 CPU) | 27.2 s (14.5 CPU) | 15 / 11 | 2 / 2 | 2 / 2 | 0.12 ms |
| dove | 8 | 108.3 s (94.1 CPU) | 131.5 s (87.6 CPU) | 20.67 / 19.67 | 0 / 0 | 7 / 7 | 11.50 ms |
"""


def run(wall: float, rc: int = 0) -> dict:
    return {"wall": wall, "cpu": wall / 2, "rc": rc, "hosts_failed": 1 if rc else 0, "module_runs_per_host": 25}


def row(mode: str, hosts: int, **extra) -> dict:
    return dict({"mode": mode, "hosts": hosts, "first": run(30.0), "rerun": run(20.0), "tables_converged": {"fdb": 4, "neigh": 0},
                 "tables_after_traffic": {"fdb": 4, "neigh": 0}, "first_ping_ms": 0.13, "first_ping_wall": 0.01,
                 "bgp": None, "move": None, "load": "1.0 / 2.0 / 3.0"}, **extra)


def test_moved_inventory_moves_the_last_hosts_vm_to_h2(tmp_path):
    inventory = modes_bench.write_moved_inventory(tmp_path, "bnx", 4)
    hosts = yaml.safe_load(inventory.read_text())["all"]["children"]["overlay"]["hosts"]
    assert hosts["h4"]["vxlan_endpoints"] == []
    moved = hosts["h2"]["vxlan_endpoints"][1]
    assert (moved["namespace"], moved["host_if"], moved["vm_if"], moved["address"]) == ("ns2", "tap3", "tap4", "100.0.0.5/24")
    assert moved["mac"] == modes_bench.vm_mac(4)
    assert "ctl" in yaml.safe_load(inventory.read_text())["all"]["children"]["controller"]["hosts"]


def test_render_has_the_evpn_and_move_columns_and_keeps_earlier_rows():
    evpn = row("evpn", 3, bgp={"extern_learn_at_return": 1, "extern_learn": 2, "expected": 2, "complete": True,
                               "seconds_after_playbook": 1.5},
               move={"playbook": run(22.1), "followed_s": 22.9, "old_gone_s": 21.8, "pings": 2})
    failed = row("dove", 3, move={"playbook": run(40.0, rc=2), "followed_s": None, "old_gone_s": None, "pings": 0})
    text = modes_bench.render([evpn, failed], {"command": "modes_bench.py --sizes 3"}, OLD_SECTION)
    lines = text.splitlines()
    assert "| evpn | 3 |" in text and "2 (1 at return), +1.5 s" in text
    assert "22.9 s (playbook 22.1 s, old VM gone at 21.8 s)" in text
    assert "the moving converge failed (rc=2, 1 host(s))" in text
    # static 3 was not measured again: kept, marked, in the new layout; dove 3 replaced the old row.
    kept = [line for line in lines if line.startswith("| static † | 3 |")]
    assert len(kept) == 1 and kept[0].count("|") == modes_bench.HEADER[0].count("|")
    assert any(line.startswith("| dove † | 8 |") for line in lines)
    assert any(line.startswith(modes_bench.EARLIER + "Measured by") for line in lines)
    assert "`modes_bench.py --sizes 3`" in text


def test_merge_joins_runs():
    first = {"meta": {"date": "d1", "load_before": "1", "load_after": "2", "command": "a"}, "results": [row("evpn", 3)]}
    second = {"meta": {"date": "d2", "load_before": "3", "load_after": "4", "command": "b"}, "results": [row("evpn", 8), row("evpn", 3)]}
    merged = modes_bench.merge([first, second])
    assert sorted((r["mode"], r["hosts"]) for r in merged["results"]) == [("evpn", 3), ("evpn", 8)]
    assert merged["meta"]["date"] == "d1 (evpn 3); d2 (evpn 3, evpn 8)"
    assert merged["meta"]["command"] == "`a`; `b`"
