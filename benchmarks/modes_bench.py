#!/usr/bin/env python3
"""Where each mode stops being the right choice: converge time and table sizes against N.

For each mode and lab size N (3, 8, 16, 32 hosts by default; one VM per host, the inventory of
converge_bench.py plus a controller host `ctl` for DOVE's etcd), on a fresh lab:

- the converge as a user runs it: `site.yml -e vxlan_mode=<mode> --skip-tags verify`
  (`playbooks/dove.yml` for dove, which starts etcd on ctl first), then the same again (no-change
  re-run, must report changed=0);
- h1's tables on vxlan0 right after the converge: remote fdb entries (`bridge fdb` lines with a
  `dst`, the all-zero flood entries included) and neighbour entries;
- the first ping from h1's VM to the last host's VM (the reply time ping prints: ARP, a miss
  answered by an agent, or a learned flood, whatever the mode needs), then a sweep from h1's VM
  to every other VM, and h1's tables again: what traffic makes a host hold.

Static holds every remote entry from the start and every host changes when any VM is added (the
controller's work and each host's tables grow with N); flood holds N-1 flood entries and learns
the rest from traffic, but every broadcast is sent N-1 times; multicast needs a multicast
underlay; DOVE holds only what its VMs talk to, at the price of an agent and a controller.

    .venv/bin/python benchmarks/modes_bench.py                       # all modes, 3 8 16 32, JSON on stdout
    .venv/bin/python benchmarks/modes_bench.py --modes static dove --sizes 3 8 --output /tmp/m.json
    .venv/bin/python benchmarks/modes_bench.py --render /tmp/m.json   # docs/benchmarks.md from saved results

A markdown table of the figures goes to stderr as each run ends; with --write-docs (benchmarks/run
--only modes) the section "## Modes against N" of docs/benchmarks.md is rewritten from them. Labs
are named bench<hex>, made with playbooks/lab.yml and always destroyed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from converge_bench import ROOT, bench_lab_name, check, run_playbook, vm_address, write_inventory, write_results  # noqa: E402
from lab_fixtures import Lab  # noqa: E402

MODES = ("static", "flood", "multicast", "dove")
SIZES = (3, 8, 16, 32)
PLAYBOOK = {"dove": ROOT / "playbooks" / "dove.yml"}
_RTT = re.compile(r"time=([0-9.]+) ms")


def tables(lab: Lab, host: str = "h1") -> dict[str, int]:
    """Remote fdb entries (with a dst) and neighbour entries on the host's vxlan0."""
    fdb = lab.enter(host, "bridge", "fdb", "show", "dev", "vxlan0").stdout.splitlines()
    neigh = lab.enter(host, "ip", "neigh", "show", "dev", "vxlan0").stdout.splitlines()
    return {"fdb": sum(1 for line in fdb if " dst " in line), "neigh": len([line for line in neigh if line.strip()])}


def first_ping_ms(lab: Lab, target: str) -> float | None:
    proc = lab.enter("h1", "ping", "-n", "-c", "1", "-W", "3", target, netns="ns1", check=False)
    found = _RTT.search(proc.stdout)
    return float(found.group(1)) if found else None


def sweep(lab: Lab, size: int) -> int:
    """One ping from h1's VM to every other VM; the number answered."""
    answered = 0
    for index in range(2, size + 1):
        proc = lab.enter("h1", "ping", "-n", "-c", "1", "-W", "2", vm_address(index), netns="ns1", check=False)
        answered += proc.returncode == 0
    return answered


def bench_mode(mode: str, size: int, tmp: Path) -> dict:
    name = bench_lab_name()
    inventory, hosts = write_inventory(tmp / name, name, size, controller=True)
    lab = Lab(name, inventory, hosts)
    playbook = PLAYBOOK.get(mode, ROOT / "site.yml")
    extra = ("--skip-tags", "verify", "-e", "vxlan_mode=%s" % mode)
    try:
        lab.create()
        first = run_playbook(lab, playbook, *extra)
        check(first, "%s converge, %d hosts" % (mode, size))
        rerun = run_playbook(lab, playbook, *extra)
        check(rerun, "%s re-run, %d hosts" % (mode, size), changed_zero=True)
        after_converge = tables(lab)
        start = time.perf_counter()
        ping = first_ping_ms(lab, vm_address(size))
        first_ping_wall = time.perf_counter() - start
        answered = sweep(lab, size)
        after_traffic = tables(lab)
    finally:
        if lab.exists():
            lab.destroy(check=False)
    if answered != size - 1:
        raise SystemExit("%s, %d hosts: h1's VM reached %d of %d VMs" % (mode, size, answered, size - 1))
    result = {"mode": mode, "hosts": size, "first": first, "rerun": rerun, "tables_converged": after_converge,
              "tables_after_traffic": after_traffic, "first_ping_ms": ping, "first_ping_wall": round(first_ping_wall, 3)}
    print("| %s | %d | %.1f s (%.1f CPU) | %.1f s | %d / %d | %d / %d | %s |" % (
        mode, size, first["wall"], first["cpu"], rerun["wall"], after_converge["fdb"], after_converge["neigh"],
        after_traffic["fdb"], after_traffic["neigh"], "%.2f ms" % ping if ping is not None else "lost (%.1f s)" % first_ping_wall),
        file=sys.stderr, flush=True)
    return result


SECTION = "## Modes against N"

# Read with the figures: what each mode's tables and converge grow with, and where that stops
# being the right trade. The figures above it are this run's; the reasoning is the kernel's.
ADVICE = """Where each mode stops being the right choice, from these figures and from what grows:

- **static**: every host holds an fdb and a neighbour entry for every remote VM from the start
  (h1's tables above: N-1 of each with one VM per host; 9,990 each with 1,000 hosts x 10 VMs, see
  "Fleet scale"), and adding one VM changes every host. The first ping needs no ARP across the
  underlay and no broadcast is ever flooded. Right while the whole inventory is known to
  Ansible and changes at Ansible's pace; past a few thousand hosts x VMs per network the table on
  every host, and the converge that touches every host for each change, are the cost.
- **flood** (unicast flood list): N-1 all-zero entries per host, the rest learned from traffic;
  every broadcast, unknown unicast and ARP request is copied N-1 times by the sender. Fine for
  small meshes; the replication grows with N on every host for every broadcast.
- **multicast**: no per-peer state at all (one group entry), learning from traffic; the underlay
  must route multicast (PIM or one L2 domain). The cheapest tables; only where the underlay
  offers multicast.
- **dove**: a host holds only what its VMs talk to (0 entries after the converge, the peers of
  its traffic after it); the price is an agent per host and a controller (etcd), and a first
  packet that waits for a miss to be answered (the first-ping column). The choice once static
  tables or flood replication get too big and VMs come and go faster than a converge.

In flood and multicast mode h1's fdb count includes what it learned (every MAC seen from the
other hosts: VMs, and the bridges' and veths' own IPv6 neighbour discovery at link-up), which is
why it exceeds N-1. Through site.yml a host runs 15 module processes on its first converge and 11
on a no-change re-run (validate's pyroute2 probe and interface read, each role's plan, the
allow-list and the persisted record); DOVE runs its agent's and controller's tasks every time
(18-21), so its re-run is not cheaper than its first converge: the next place to cut.
"""


def render(results: list[dict], meta: dict) -> str:
    """The section's body: one row per (mode, N), then the reading."""
    lines = ["Measured by `benchmarks/modes_bench.py` (`benchmarks/run --only modes`) on %s, %s. One VM per host; "
             "converge = `site.yml --skip-tags verify` (`playbooks/dove.yml` for dove: etcd on a controller host "
             "first), the no-change re-run reports changed=0 (checked); h1's tables are the remote entries on its "
             "vxlan0 (fdb lines with a `dst`, all-zero flood entries included; neighbour entries), after the "
             "converge and after one ping from h1's VM to every other VM; first ping = the reply time of the "
             "first ping from h1's VM to the last host's VM. Elapsed (CPU of ansible-playbook and all it ran). "
             "Load average %s before, %s after: the machine was shared, compare CPU and ratios within a size."
             % (meta.get("machine", "?"), meta.get("date", "?"), meta.get("load_before", "?"), meta.get("load_after", "?")),
             "",
             "| mode | hosts | first converge | no-change re-run | module processes per host, first / re-run "
             "| h1 fdb / neigh after the converge | after traffic | first ping |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in sorted(results, key=lambda r: (r["hosts"], MODES.index(r["mode"]))):
        ping = "%.2f ms" % row["first_ping_ms"] if row["first_ping_ms"] is not None else "lost"
        lines.append("| %s | %d | %.1f s (%.1f CPU) | %.1f s (%.1f CPU) | %g / %g | %d / %d | %d / %d | %s |" % (
            row["mode"], row["hosts"], row["first"]["wall"], row["first"]["cpu"], row["rerun"]["wall"], row["rerun"]["cpu"],
            row["first"]["module_runs_per_host"], row["rerun"]["module_runs_per_host"],
            row["tables_converged"]["fdb"], row["tables_converged"]["neigh"],
            row["tables_after_traffic"]["fdb"], row["tables_after_traffic"]["neigh"], ping))
    return "\n".join(lines) + "\n\n" + ADVICE


def load_average() -> str:
    return " / ".join("%.1f" % value for value in os.getloadavg())


def write_docs(results: list[dict], meta: dict) -> None:
    from report import DOCS, replace_section

    DOCS.write_text(replace_section(DOCS.read_text(), SECTION, render(results, meta)))
    print("modes_bench: wrote %s" % DOCS.relative_to(ROOT), file=sys.stderr)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--output", type=Path, help="write the JSON results here (default: stdout)")
    parser.add_argument("--write-docs", action="store_true", help="rewrite the section '%s' of docs/benchmarks.md" % SECTION)
    parser.add_argument("--render", type=Path, metavar="JSON", help="no measuring: the section from saved results")
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads(args.render.read_text())
        write_docs(saved["results"], saved["meta"])
        return 0
    meta = {"date": datetime.datetime.now().isoformat(timespec="minutes"), "load_before": load_average(),
            "machine": "%s, %d CPUs, kernel %s, Python %s" % (platform.machine(), os.cpu_count(), platform.release(), platform.python_version())}
    print("| mode | hosts | first converge | no-change re-run | h1 fdb / neigh after converge | after a sweep from h1 | first ping |\n"
          "|---|---:|---:|---:|---:|---:|---:|", file=sys.stderr, flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="modes-bench-") as tmp:
        for size in args.sizes:
            for mode in args.modes:
                results.append(bench_mode(mode, size, Path(tmp)))
    meta["load_after"] = load_average()
    write_results({"meta": meta, "results": results}, args.output)
    if args.write_docs:
        write_docs(results, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
