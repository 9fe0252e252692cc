#!/usr/bin/env python3
"""Where each mode stops being the right choice: converge time and table sizes against N.

For each mode and lab size N (3, 8, 16, 32 hosts by default; one VM per host, the inventory of
converge_bench.py plus a controller host `ctl`: DOVE's etcd, evpn's route reflector), on a fresh lab:

- the converge as a user runs it: `site.yml -e vxlan_mode=<mode> --skip-tags verify`
  (`playbooks/dove.yml` for dove, which starts etcd on ctl first), then the same again (no-change
  re-run, must report changed=0);
- evpn: the playbook returns once FRR runs, BGP converges after it. Between the first converge
  and the re-run, h1 is polled until zebra has an `extern_learn` entry for every remote VM: the
  count when the playbook returned and the seconds after it until all N-1 were there;
- h1's tables on vxlan0 right after the converge: remote fdb entries (`bridge fdb` lines with a
  `dst`, the all-zero flood entries included) and neighbour entries;
- the first ping from h1's VM to the last host's VM (the reply time ping prints: ARP, a miss
  answered by an agent, or a learned flood, whatever the mode needs), then a sweep from h1's VM
  to every other VM, and h1's tables again: what traffic makes a host hold;
- for the move modes (static, dove, evpn by default): the last host's VM moves to h2 (inventory
  change + the same converge, as tests/integration/test_evpn.py does), timed from the start of that
  converge to the first ping from h1's VM, sent once the old namespace is gone, that it answers at
  its new VTEP; h1's fdb dst for its MAC is recorded.

Static holds every remote entry from the start and every host changes when any VM is added (the
controller's work and each host's tables grow with N); flood holds N-1 flood entries and learns
the rest from traffic, but every broadcast is sent N-1 times; multicast needs a multicast
underlay; DOVE holds only what its VMs talk to, at the price of an agent and a controller; evpn
holds every remote VM (from BGP) and the flood list, at the price of FRR on every host and a
route reflector.

    .venv/bin/python benchmarks/modes_bench.py                       # all modes, 3 8 16 32, JSON on stdout
    .venv/bin/python benchmarks/modes_bench.py --modes static dove --sizes 3 8 --output /tmp/m.json
    .venv/bin/python benchmarks/modes_bench.py --modes evpn --sizes 3 --move-modes evpn
    .venv/bin/python benchmarks/modes_bench.py --render /tmp/m.json   # docs/benchmarks.md from saved results

A markdown table of the figures goes to stderr as each run ends (with the load average); with
--output the JSON is rewritten after every run. With --write-docs (benchmarks/run --only modes)
the section "## Modes against N" of docs/benchmarks.md is rewritten from them; rows of the section
this run did not measure are kept, marked †. Labs are named bench<hex> (or
$OVERLAY_VXLAN_LAB_PREFIX<hex>), made with playbooks/lab.yml and always destroyed (also on
Ctrl-C and SIGTERM).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from converge_bench import ROOT, bench_lab_name, check, run_playbook, vm_address, vm_mac, write_inventory, write_results  # noqa: E402
from lab_fixtures import Lab, unique_lab_name  # noqa: E402

MODES = ("static", "flood", "multicast", "dove", "evpn")
# The modes whose "time to follow a moved VM" is measured by default: evpn, and as baselines
# static (the converge rewrites every host's tables) and dove (the agents follow etcd's record).
MOVE_MODES = ("static", "dove", "evpn")
SIZES = (3, 8, 16, 32)
# How long to wait for BGP after the playbook returns (every remote VM's extern_learn entry on
# h1) and for a moved VM to answer at its new VTEP after the moving converge returns.
BGP_WAIT = 120.0
MOVE_WAIT = 120.0
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


def lab_name() -> str:
    """bench<hex>, or <OVERLAY_VXLAN_LAB_PREFIX><hex> (8 characters, as the tests name theirs)
    when engineers sharing the machine give their own prefix."""
    return unique_lab_name() if os.environ.get("OVERLAY_VXLAN_LAB_PREFIX") else bench_lab_name()


def extern_learn(lab: Lab, host: str = "h1") -> dict[str, str]:
    """mac -> dst of zebra's `extern_learn` entries on the host's vxlan0 (evpn's remote VMs)."""
    entries = json.loads(lab.enter(host, "bridge", "-j", "fdb", "show", "dev", "vxlan0").stdout or "[]")
    return {e["mac"]: e["dst"] for e in entries if "extern_learn" in e.get("flags", []) and e.get("dst")}


def wait_for_bgp(lab: Lab, size: int, returned: float) -> dict:
    """evpn: poll h1 until every remote VM's MAC has zebra's extern_learn entry (from the type-2
    routes BGP brought). `returned` = perf_counter() when the playbook returned; the seconds from
    there are what a user waits for after the playbook before every VM is reachable without flooding."""
    wanted = {vm_mac(index) for index in range(2, size + 1)}
    at_return = None
    while True:
        present = wanted & set(extern_learn(lab))
        now = time.perf_counter()
        if at_return is None:
            at_return = len(present)
        if present == wanted or now - returned > BGP_WAIT:
            return {"extern_learn_at_return": at_return, "extern_learn": len(present), "expected": len(wanted),
                    "complete": present == wanted, "seconds_after_playbook": round(now - returned, 3)}
        time.sleep(0.1)


def write_moved_inventory(directory: Path, name: str, size: int) -> Path:
    """The lab's inventory with the last host's VM (100.0.0.(N+1), the first ping's target) moved
    to h2 as its second VM (ns2, tap3/tap4; same address and MAC), the last host left with none:
    the move of tests/integration/test_evpn.py."""
    inventory, _ = write_inventory(directory, name, size, controller=True)
    data = yaml.safe_load(inventory.read_text())
    hosts = data["all"]["children"]["overlay"]["hosts"]
    moving = hosts["h%d" % size]["vxlan_endpoints"].pop()
    hosts["h2"]["vxlan_endpoints"].append(dict(moving, namespace="ns2", host_if="tap3", vm_if="tap4"))
    inventory.write_text("---\n" + yaml.safe_dump(data, default_flow_style=False, sort_keys=False))
    return inventory


class MoveWatch(threading.Thread):
    """While the moving converge runs (and up to MOVE_WAIT after it): whether the VM's old
    namespace on the last host is gone, and one ping at a time from h1's VM to the VM's address.
    The first answer to a ping sent once the old namespace was gone came from the VM at its new
    VTEP (the address exists nowhere else)."""

    def __init__(self, lab: Lab, size: int, start: float):
        super().__init__(daemon=True)
        self.lab, self.size, self.started = lab, size, start
        self.old_gone = None  # seconds from the start of the converge
        self.followed = None
        self.pings = 0
        self.stop_at = None  # set when the playbook returned
        self.halt = threading.Event()

    def _old_there(self) -> bool:
        proc = self.lab.enter("h%d" % self.size, "ip", "netns", "list", check=False)
        return proc.returncode == 0 and any(line.split()[0] == "ns1" for line in proc.stdout.splitlines() if line.strip())

    def run(self) -> None:
        target = vm_address(self.size)
        while not self.halt.is_set():
            if self.stop_at is not None and time.perf_counter() > self.stop_at:
                return
            if self.old_gone is None:
                if self._old_there():
                    time.sleep(0.1)
                    continue
                self.old_gone = time.perf_counter() - self.started
            proc = self.lab.enter("h1", "ping", "-n", "-c", "1", "-W", "1", target, netns="ns1", check=False)
            self.pings += 1
            if proc.returncode == 0:
                self.followed = time.perf_counter() - self.started
                return
            time.sleep(0.05)


def fdb_dst(lab: Lab, mac: str, host: str = "h1") -> list[str]:
    entries = json.loads(lab.enter(host, "bridge", "-j", "fdb", "show", "dev", "vxlan0").stdout or "[]")
    return sorted({e["dst"] for e in entries if e.get("mac") == mac and e.get("dst")})


def bench_move(lab: Lab, mode: str, size: int, tmp: Path, playbook: Path, extra: tuple[str, ...]) -> dict:
    """The last host's VM moves to h2: inventory change + the same converge. Timed from the start
    of the converge to the first ping from h1's VM that it answers at its new VTEP."""
    lab.inventory = write_moved_inventory(tmp / (lab.name + "-moved"), lab.name, size)
    start = time.perf_counter()
    watch = MoveWatch(lab, size, start)
    watch.start()
    try:
        moved = run_playbook(lab, playbook, *extra)
        failed = moved["rc"] != 0 or moved["hosts_failed"]
        # A failed moving converge is a figure of its own (recorded, printed), not the end of the row.
        watch.stop_at = time.perf_counter() + (5 if failed else MOVE_WAIT)
        if failed:
            print("modes_bench: %s %d hosts: the moving converge failed (rc=%d):\n%s" % (
                mode, size, moved["rc"], "\n".join(moved.get("failures") or [moved["tail"]])), file=sys.stderr, flush=True)
        watch.join(MOVE_WAIT + 10)
    finally:
        watch.halt.set()
    new_vtep = lab.hosts["h2"]
    print("modes_bench: %s %d hosts: move converge %.1f s, followed %s s, old namespace gone at %s s, %d pings (load %s)" % (
        mode, size, moved["wall"], watch.followed and round(watch.followed, 2), watch.old_gone and round(watch.old_gone, 2),
        watch.pings, load_average()), file=sys.stderr, flush=True)
    dst = fdb_dst(lab, vm_mac(size))
    result = {"playbook": moved, "followed_s": round(watch.followed, 3) if watch.followed is not None else None,
              "old_gone_s": round(watch.old_gone, 3) if watch.old_gone is not None else None, "pings": watch.pings,
              "h1_dst": dst, "new_vtep": new_vtep}
    if watch.followed is not None:
        result["after_playbook_s"] = round(watch.followed - moved["wall"], 3)
    return result


def bench_mode(mode: str, size: int, tmp: Path, move: bool) -> dict:
    name = lab_name()
    inventory, hosts = write_inventory(tmp / name, name, size, controller=True)
    lab = Lab(name, inventory, hosts)
    playbook = PLAYBOOK.get(mode, ROOT / "site.yml")
    extra = ("--skip-tags", "verify", "-e", "vxlan_mode=%s" % mode)
    try:
        lab.create()
        first = run_playbook(lab, playbook, *extra)
        returned = time.perf_counter()
        check(first, "%s converge, %d hosts" % (mode, size))
        # evpn: the playbook returns when FRR runs; the remote VMs' entries come when BGP has
        # converged, measured from here (before the re-run, which would hide the wait).
        bgp = wait_for_bgp(lab, size, returned) if mode == "evpn" else None
        print("modes_bench: %s %d hosts: converge %.1f s%s (load %s)" % (
            mode, size, first["wall"], ", BGP %s" % json.dumps(bgp) if bgp else "", load_average()), file=sys.stderr, flush=True)
        rerun = run_playbook(lab, playbook, *extra)
        check(rerun, "%s re-run, %d hosts" % (mode, size), changed_zero=True)
        after_converge = tables(lab)
        start = time.perf_counter()
        ping = first_ping_ms(lab, vm_address(size))
        first_ping_wall = time.perf_counter() - start
        answered = sweep(lab, size)
        after_traffic = tables(lab)
        moved = bench_move(lab, mode, size, tmp, playbook, extra) if move and answered == size - 1 else None
    finally:
        if lab.exists():
            proc = lab.destroy(check=False)
            if proc.returncode != 0 or lab.exists():
                print("WARNING: lab %s not removed:\n%s" % (lab.name, proc.stdout[-2000:]), file=sys.stderr)
    if answered != size - 1:
        raise SystemExit("%s, %d hosts: h1's VM reached %d of %d VMs" % (mode, size, answered, size - 1))
    result = {"mode": mode, "hosts": size, "first": first, "rerun": rerun, "tables_converged": after_converge,
              "tables_after_traffic": after_traffic, "first_ping_ms": ping, "first_ping_wall": round(first_ping_wall, 3),
              "bgp": bgp, "move": moved, "load": load_average()}
    print(row_text(result) + "  load %s" % result["load"], file=sys.stderr, flush=True)
    return result


def bgp_text(row: dict) -> str:
    bgp = row.get("bgp")
    if not bgp:
        return "–"
    if not bgp["complete"]:
        return "%d of %d after %.0f s" % (bgp["extern_learn"], bgp["expected"], bgp["seconds_after_playbook"])
    return "%d (%d at return), +%.1f s" % (bgp["extern_learn"], bgp["extern_learn_at_return"], bgp["seconds_after_playbook"])


def move_text(row: dict) -> str:
    move = row.get("move")
    if not move:
        return "–"
    gone = ", old VM gone at %.1f s" % move["old_gone_s"] if move.get("old_gone_s") is not None else ""
    if move["playbook"]["rc"] != 0 or move["playbook"]["hosts_failed"]:
        return "the moving converge failed (rc=%d, %d host(s)), see under the table" % (move["playbook"]["rc"], move["playbook"]["hosts_failed"])
    if move["followed_s"] is None:
        return "not followed in %.0f s (playbook %.1f s%s)" % (move["playbook"]["wall"] + MOVE_WAIT, move["playbook"]["wall"], gone)
    return "%.1f s (playbook %.1f s%s)" % (move["followed_s"], move["playbook"]["wall"], gone)


def row_text(row: dict, earlier: bool = False) -> str:
    ping = "%.2f ms" % row["first_ping_ms"] if row["first_ping_ms"] is not None else "lost"
    return "| %s | %d | %.1f s (%.1f CPU) | %.1f s (%.1f CPU) | %g / %g | %d / %d | %s | %d / %d | %s | %s |" % (
        row["mode"], row["hosts"], row["first"]["wall"], row["first"]["cpu"], row["rerun"]["wall"], row["rerun"]["cpu"],
        row["first"]["module_runs_per_host"], row["rerun"]["module_runs_per_host"],
        row["tables_converged"]["fdb"], row["tables_converged"]["neigh"], bgp_text(row),
        row["tables_after_traffic"]["fdb"], row["tables_after_traffic"]["neigh"], ping, move_text(row))


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
- **evpn**: every host holds the flood list (N-1 all-zero entries, from BGP's type-3 routes) and
  an `extern_learn` entry per remote VM (type-2 routes): 2(N-1) fdb lines on h1 with one VM per
  host, and no neighbour entry (ARP is flooded over the list: no MAC+IP routes without an SVI).
  The tables are as complete as static's, but they come from BGP rather than from the converge:
  a host's FRR advertises its own VMs and the route reflector tells the others, so adding or
  moving a VM needs no change on any other host. The price: FRR (watchfrr, zebra, bgpd) on every
  host and a route reflector, and a longer converge (FRR's files, `frr-reload.py`, more module
  processes per host than any other mode). A VM's route is MAC-only and comes from its host's
  bridge learning its MAC: a VM silent for longer than the bridge's ageing time (300 s by default)
  presumably loses its route until it speaks again (after the 32-host converge and re-run, 21
  minutes on the loaded machine, h1 held 28 of 31 entries; the sweep brought all 31 back).

The moved-VM column: in every mode the converge removes the VM's old namespace at the end of the
build play (role `persist` prunes what left the inventory, the play's last role), so most of the
time is the playbook's own; the time between
"old VM gone" and the first answer is what the mode itself needs to follow (static: h1 has been
rewritten by then or is rewritten by the same play; dove: the agents follow etcd's record; evpn:
the new host's bridge learns the MAC, bgpd advertises it with a higher MAC-mobility sequence
number, h1's zebra repoints its entry).

In flood and multicast mode h1's fdb count includes what it learned (every MAC seen from the
other hosts: VMs, and the bridges' and veths' own IPv6 neighbour discovery at link-up), which is
why it exceeds N-1. Through site.yml a host runs 15 module processes on its first converge and 11
on a no-change re-run (validate's pyroute2 probe and interface read, each role's plan, the
allow-list and the persisted record); DOVE runs its agent's and controller's tasks every time
(18-21), so its re-run is not cheaper than its first converge: the next place to cut.
"""


HEADER = ("| mode | hosts | first converge | no-change re-run | module processes per host, first / re-run "
          "| h1 fdb / neigh after the converge | evpn: h1's extern_learn entries (at the playbook's return), all there "
          "after the playbook | after traffic | first ping | moved VM answers at its new VTEP, from the converge's start "
          "(the converge) |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
EARLIER = "† Kept from an earlier run, measured before the evpn and move columns existed: "


def earlier_rows(section: str, measured: set[tuple[str, int]]) -> tuple[list[str], str]:
    """Rows of the section as it stands whose (mode, hosts) this run did not measure, in the
    current column layout (columns they predate: –), and the note on the run they come from."""
    rows, note = [], ""
    for line in section.splitlines():
        if line.startswith(EARLIER):
            note = line
        elif line.startswith("Measured by ") and not note:
            note = EARLIER + line
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| ") else []
        if len(cells) < 8 or not cells[1].isdigit():
            continue
        mode = cells[0].rstrip(" †")
        if (mode, int(cells[1])) in measured:
            continue
        if len(cells) == 8:  # the layout before the evpn and move columns
            cells = cells[:6] + ["–"] + cells[6:] + ["–"]
        cells[0] = mode + " †"
        rows.append((int(cells[1]), MODES.index(mode) if mode in MODES else 99, "| " + " | ".join(cells) + " |"))
    return rows, note


def render(results: list[dict], meta: dict, old_section: str = "") -> str:
    """The section's body: one row per (mode, N), then the reading."""
    measured = {(row["mode"], row["hosts"]) for row in results}
    kept, note = earlier_rows(old_section, measured)
    loads = "; ".join("%s %d: %s" % (row["mode"], row["hosts"], row["load"]) for row in results if row.get("load"))
    lines = ["Measured by `benchmarks/modes_bench.py` (`benchmarks/run --only modes`) on %s, %s. One VM per host; "
             "converge = `site.yml --skip-tags verify` (`-e vxlan_mode=evpn` for evpn: FRR, route reflector `ctl`; "
             "`playbooks/dove.yml` for dove: etcd on a controller host first), the no-change re-run reports changed=0 "
             "(checked); h1's tables are the remote entries on its vxlan0 (fdb lines with a `dst`, all-zero flood "
             "entries included; neighbour entries), after the converge and after one ping from h1's VM to every other "
             "VM; first ping = the reply time of the first ping from h1's VM to the last host's VM. evpn: the playbook "
             "returns once FRR runs; the column after it counts zebra's `extern_learn` entries on h1 (the remote VMs "
             "BGP brought) when the playbook returned, and the seconds after the return until all N-1 were there "
             "(polled every 0.1 s; a user waits that long too). Moved VM: the last host's VM moves to h2 "
             "(inventory change + the same converge, as in `tests/integration/test_evpn.py`); timed from the start "
             "of that converge to the first ping from h1's VM, sent once the VM's old namespace was gone, that it "
             "answers (one ping at a time, 1 s timeout); the converge's own time in brackets. Elapsed "
             "(CPU of ansible-playbook and all it ran). Load average %s before, %s after (1 / 5 / 15 min); at the end "
             "of each row: %s. The machine was shared, compare CPU and ratios within a size."
             % (meta.get("machine", "?"), meta.get("date", "?"), meta.get("load_before", "?"), meta.get("load_after", "?"),
                loads or "?"),
             "", *HEADER]
    rows = [(row["hosts"], MODES.index(row["mode"]), row_text(row)) for row in results] + kept
    lines += [text for _, _, text in sorted(rows)]
    for row in sorted(results, key=lambda r: (r["hosts"], MODES.index(r["mode"]))):
        move = row.get("move") or {}
        if move and (move["playbook"]["rc"] or move["playbook"]["hosts_failed"]):
            errors = [line.split("Task failed: ", 1)[-1] for text in move["playbook"].get("failures") or []
                      for line in text.splitlines() if line.startswith("[ERROR]")]
            hosts = sorted({m.group(1) for text in move["playbook"].get("failures") or []
                            for m in re.finditer(r"(?:fatal|failed): \[([^]]+)\]", text)})
            lines += ["", "The moving converge failed, %s at %d hosts%s: %s" % (
                row["mode"], row["hosts"], " (on %s)" % ", ".join(hosts) if hosts else "",
                "; ".join("`%s`" % e for e in errors[:2]) if errors else "rc=%d" % move["playbook"]["rc"])]
    if meta.get("command"):
        lines += ["", "Commands (as root, `OVERLAY_VXLAN_LAB_PREFIX=bn .venv/bin/python benchmarks/...`): %s." % (
            meta["command"] if meta["command"].startswith("`") else "`%s`" % meta["command"])]
    if kept and note:
        lines += ["", note]
    if meta.get("not_run"):
        lines += ["", "Coverage: %s." % meta["not_run"]]
    return "\n".join(lines) + "\n\n" + ADVICE


def load_average() -> str:
    return " / ".join("%.1f" % value for value in os.getloadavg())


def current_section(text: str) -> str:
    if SECTION not in text:
        return ""
    body = text.split(SECTION, 1)[1]
    following = re.search(r"^## ", body, flags=re.M)
    return body[:following.start()] if following else body


def write_docs(results: list[dict], meta: dict, loads: dict | None = None) -> None:
    """The section from `results`, unless a run of them started on a busy machine (`loads`:
    {run: load average at its start}, by default this run's)."""
    from quiet import refuse_noisy
    from report import DOCS, replace_section

    refuse_noisy(loads if loads is not None else {"this run": meta.get("load_before")}, "the section '%s'" % SECTION)
    text = DOCS.read_text()
    DOCS.write_text(replace_section(text, SECTION, render(results, meta, current_section(text))))
    print("modes_bench: wrote %s" % os.path.relpath(DOCS, ROOT), file=sys.stderr)


def merge(saved: list[dict]) -> dict:
    """Several runs' results as one (a later run's (mode, hosts) replaces an earlier one's); the
    meta of each run joined: dates, loads before and after."""
    if len(saved) == 1:
        return saved[0]
    results = {}
    for run in saved:
        results.update({(row["mode"], row["hosts"]): row for row in run["results"]})
    meta = dict(saved[0]["meta"])
    meta["command"] = "; ".join("`%s`" % run["meta"]["command"].strip("`") for run in saved if run["meta"].get("command"))
    for key in ("date", "load_before", "load_after"):
        meta[key] = "; ".join("%s (%s)" % (run["meta"].get(key, "?"), ", ".join(sorted({"%s %d" % (r["mode"], r["hosts"]) for r in run["results"]})))
                              for run in saved)
    return {"meta": meta, "results": list(results.values())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--move-modes", nargs="*", choices=MODES, default=list(MOVE_MODES),
                        help="modes (of --modes) in which a VM is also moved and followed (default: %s)" % " ".join(MOVE_MODES))
    parser.add_argument("--not-run", metavar="TEXT", help="a note for the docs on what this run left out")
    parser.add_argument("--output", type=Path, help="write the JSON results here (default: stdout)")
    parser.add_argument("--write-docs", action="store_true", help="rewrite the section '%s' of docs/benchmarks.md" % SECTION)
    parser.add_argument("--render", type=Path, nargs="+", metavar="JSON",
                        help="no measuring: the section from saved results (several files: their results together)")
    args = parser.parse_args(argv)
    if args.render:
        runs = {str(path): json.loads(path.read_text()) for path in args.render}
        saved = merge(list(runs.values()))
        if args.not_run:
            saved["meta"]["not_run"] = args.not_run
        write_docs(saved["results"], saved["meta"], {path: run["meta"].get("load_before") for path, run in runs.items()})
        return 0
    meta = {"date": datetime.datetime.now().isoformat(timespec="minutes"), "load_before": load_average(),
            "machine": "%s, %d CPUs, kernel %s, Python %s" % (platform.machine(), os.cpu_count(), platform.release(), platform.python_version())}
    if args.not_run:
        meta["not_run"] = args.not_run
    meta["command"] = "modes_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if os.geteuid() != 0:
        raise SystemExit("needs root (the lab)")
    # SIGTERM unwinds like Ctrl-C: every lab is destroyed by bench_mode's finally.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    print("\n".join(HEADER), file=sys.stderr, flush=True)
    results = []
    output = args.output
    with tempfile.TemporaryDirectory(prefix="modes-bench-") as tmp:
        for size in args.sizes:
            for mode in args.modes:
                results.append(bench_mode(mode, size, Path(tmp), mode in args.move_modes))
                if output:  # what was measured so far survives a later failure
                    write_results({"meta": dict(meta, load_after=load_average()), "results": results}, output)
    meta["load_after"] = load_average()
    write_results({"meta": meta, "results": results}, args.output)
    if args.write_docs:
        write_docs(results, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
