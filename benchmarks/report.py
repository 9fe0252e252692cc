#!/usr/bin/env python3
"""Run every benchmark of the overlay (issue 6) and write docs/benchmarks.md and docs/img/*.png.

Called by `benchmarks/run` (which checks root and the set-up first). Steps, each writing its raw
results under benchmarks/results/ (not committed):

- converge: benchmarks/converge_bench.py (collection vs the ip/bridge baseline, 3 8 16 32 hosts);
- modules:  benchmarks/modules_bench.py --write-docs (its own section, "## Programming throughput (modules)");
- dataplane: benchmarks/dataplane_bench.py (iperf3 overlay vs underlay, MTU, first ping per mode);
- dove:     benchmarks/dove_latency.py --json (miss-to-entry latency and DOVE's first ping);
- fleet:    benchmarks/fleet_bench.py (its own section, "## Fleet scale", and docs/img/fleet_scaling.png);
- modes:    benchmarks/modes_bench.py --write-docs (its own section, "## Modes against N": static, flood,
            multicast, dove, evpn; evpn's wait for BGP and the time to follow a moved VM).

Then this script replaces its three sections of docs/benchmarks.md ("## Converge scaling",
"## Data plane", "## DOVE vs static first ping"), leaving every other section as it is, and draws
docs/img/converge_scaling.png, dataplane.png and first_ping.png.

    benchmarks/run                          # everything (about 20 minutes on 2 CPUs)
    benchmarks/run --only converge          # one step (repeatable), the others' last results are reused
    benchmarks/run --render                 # no measuring: docs and plots from benchmarks/results/
    benchmarks/run --full                   # the baseline on every host at 16 and 32 too (much longer)
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from plots import IMG, base_time, plot_converge, plot_dataplane
from quiet import load_text, noisy, refuse_noisy

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
# The roles measured as "before" the re-run fix: the last commit without overlay_plan.
BEFORE_FIX = "e136b4d"
PYTHON = sys.executable
STEPS = ("converge", "modules", "dataplane", "dove", "fleet", "modes")
SECTIONS = ("## Converge scaling", "## Data plane", "## DOVE vs static first ping")
SUMMARY = "## Summary"
MODULES_SECTION = "## Programming throughput (modules)"  # benchmarks/modules_bench.py's own
HEADER = """# Benchmarks

Everything here is produced by one command, `benchmarks/run` (as root, on the simulated lab;
see each section for what it measures). Timings are benchmarks only: no test fails on a time.
The machine is a small shared VM, so absolute times move with its load; the ratios measured in
the same run are the figures to compare. Since 2026-12-05 a figure is written here only when the
load average was 1.5 or less when its measurement started (`benchmarks/quiet.py`; the writers
refuse otherwise and keep the raw results).
"""


# --- running the steps ---------------------------------------------------------------------------

def load() -> str:
    return load_text()


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    return "%s, %d CPUs, kernel %s, Python %s" % (cpu, os.cpu_count(), platform.release(), platform.python_version())


def run_step(name: str, argv: list[str], stdout_file: Path | None = None) -> float:
    print("benchmarks/run: %s: %s (load %s)" % (name, " ".join(str(a) for a in argv[1:]), load()), file=sys.stderr, flush=True)
    start = time.perf_counter()
    out = open(stdout_file, "w") if stdout_file else subprocess.DEVNULL
    try:
        proc = subprocess.run([str(a) for a in argv], cwd=ROOT, stdout=out, check=False)
    finally:
        if stdout_file:
            out.close()
    elapsed = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit("benchmarks/run: step %s failed (rc=%d)" % (name, proc.returncode))
    print("benchmarks/run: %s done in %.0f s" % (name, elapsed), file=sys.stderr, flush=True)
    return elapsed


def measure(steps: list[str], full: bool) -> dict:
    RESULTS.mkdir(exist_ok=True)
    if not DOCS.exists():
        DOCS.write_text(HEADER)
    meta_path = RESULTS / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    for step in steps:
        info = {"date": datetime.datetime.now().isoformat(timespec="minutes"), "load_before": load(), "machine": machine()}
        if noisy({step: info["load_before"]}):
            print("benchmarks/run: %s starts at load %s: measured, but its figures will not be published (quiet.py)"
                  % (step, info["load_before"]), file=sys.stderr, flush=True)
        if step == "converge":
            argv = [PYTHON, BENCH / "converge_bench.py", "--output", RESULTS / "converge.json", "--before", BEFORE_FIX]
            if full:
                argv += ["--baseline-sample", "0", "--asis-sizes", "3", "8", "16", "32"]
            info["seconds"] = run_step(step, argv)
        elif step == "modules":
            # Its defaults (5 repeats, a 200-task loop) take longer than this whole run may; the
            # per-entry cost of a task loop is the same from a 50-task loop.
            argv = [PYTHON, BENCH / "modules_bench.py", "--write-docs"] + ([] if full else ["--repeat", "3", "--loop", "50"])
            info["seconds"] = run_step(step, argv, RESULTS / "modules.txt")
        elif step == "dataplane":
            info["seconds"] = run_step(step, [PYTHON, BENCH / "dataplane_bench.py", "--output", RESULTS / "dataplane.json"])
        elif step == "dove":
            info["seconds"] = run_step(step, [PYTHON, BENCH / "dove_latency.py", "--json"], RESULTS / "dove.json")
            info["seconds"] += run_step(step, [PYTHON, BENCH / "dove_latency.py", "--json", "--backend", "etcd"], RESULTS / "dove_etcd.json")
        elif step == "fleet":  # writes its own section (benchmarks/fleet_report.py)
            info["seconds"] = run_step(step, [PYTHON, BENCH / "fleet_bench.py"])
        elif step == "modes":  # writes its own section
            info["seconds"] = run_step(step, [PYTHON, BENCH / "modes_bench.py", "--write-docs", "--output", RESULTS / "modes.json"])
        info["load_after"] = load()
        meta[step] = info
        meta_path.write_text(json.dumps(meta, indent=1))
    return meta


# --- helpers for the report ----------------------------------------------------------------------

def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def fit_power(sizes: list[int], times: list[float]) -> float | None:
    """Exponent k of t ~ N^k, least squares on log-log."""
    points = [(math.log(n), math.log(t)) for n, t in zip(sizes, times, strict=True) if t and t > 0]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else None


def fit_line(sizes: list[int], times: list[float]) -> tuple[float, float] | None:
    """(a, b) of t = a + b N, least squares."""
    if len(sizes) < 2:
        return None
    mean_x, mean_y = sum(sizes) / len(sizes), sum(times) / len(times)
    var = sum((x - mean_x) ** 2 for x in sizes)
    b = sum((x - mean_x) * (y - mean_y) for x, y in zip(sizes, times, strict=True)) / var
    return mean_y - b * mean_x, b


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def replace_section(text: str, heading: str, body: str, insert_before: str | None = None) -> str:
    """Replace the section `heading` (up to the next "## ") with `body`; a new one goes before the
    section `insert_before` if there is one, else at the end. Other sections stay as they are."""
    section = heading + "\n\n" + body.strip() + "\n"
    if heading in text:
        start = text.index(heading)
        end = text.find("\n## ", start + len(heading))
        return text[:start] + section + ("\n" + text[end + 1:] if end != -1 else "")
    if insert_before and insert_before in text:
        at = text.index(insert_before)
        return text[:at] + section + "\n" + text[at:]
    return text.rstrip("\n") + "\n\n" + section


def when(meta: dict, step: str) -> str:
    info = meta.get(step, {})
    return "%s (load average before: %s; after: %s)" % (info.get("date", "?"), info.get("load_before", "?"), info.get("load_after", "?"))


# --- converge --------------------------------------------------------------------------------------

def converge_section(rows: list[dict], meta: dict) -> str:
    sizes = [r["hosts"] for r in rows]
    col_first = [r["collection"]["first"]["wall"] for r in rows]
    col_rerun = [r["collection"]["rerun"]["wall"] for r in rows]
    have_base = all("baseline" in r for r in rows)
    lines = [
        "Measured by `benchmarks/converge_bench.py` (run by `benchmarks/run`) on %s, %s." % (meta.get("converge", {}).get("machine", machine()),
                                                                                            when(meta, "converge")),
        "",
        "- **Topology**: static mode (`nolearning proxy`, full-mesh fdb + ARP-proxy entries) on labs of N hosts, "
        "one VM (`ns1`, `tap1`/`tap2`, 100.0.0.x/24 with its MAC) per host, network blue / VNI 100 / `br1` / `vxlan0`, "
        "inventory shaped like `inventories/lab` (groups lab > overlay), one fresh lab per measurement.",
        "- **Collection**: the roles `endpoint` + `vxlan` (`molecule/resources/converge.yml`, i.e. `site.yml` without the "
        "verify play). *First* = on the fresh lab; *re-run* = the same playbook again on the converged lab (reports "
        "`changed=0`, checked).",
        "- **Baseline**: [`benchmarks/baseline/static.yml`](../benchmarks/baseline/static.yml), the source's mode-3 commands "
        "(`ip netns add`, `ip link add ... type veth`, `ip link add vxlan0 ... nolearning proxy`, one `bridge fdb append` and "
        "one `ip neigh add` per remote VM, ...) through `ansible.builtin.command` in loops, plus the MTU and MAC the "
        "collection sets, so that `playbooks/verify.yml` (tables, ping matrix, MTU proof) passes on what it builds. "
        "Its *re-run* is the guarded variant a user writes to make it re-runnable (`baseline_guarded=true`: \"File exists\" "
        "and the like are not failures, only rc=0 is a change): every command runs again.",
        "- **Wall** = the whole `ansible-playbook` process (forks 16, pipelining on, the lab connection). *Tasks* per host "
        "from the recap (a loop is one task); *module runs* per host = processes started on the host (one per loop item; "
        "set_fact/assert/include run on the controller). *CPU* = user + system seconds of `ansible-playbook` and everything it ran.",
        "",
        "| hosts | collection first | collection re-run | re-run / first | baseline first | baseline re-run (guarded) "
        "| collection / baseline, first | collection / baseline, re-run |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    sampled_note = False
    for r in rows:
        c = r["collection"]
        cells = ["%d" % r["hosts"], "%.1f s" % c["first"]["wall"], "%.1f s" % c["rerun"]["wall"], "%.2f" % (c["rerun"]["wall"] / c["first"]["wall"])]
        if "baseline" in r:
            b = r["baseline"]
            approx = "≈" if b["first"].get("hosts_run", r["hosts"]) < r["hosts"] else ""
            sampled_note |= bool(approx)
            bf, br = base_time(b["first"]), base_time(b["rerun"])
            cells += ["%s%.1f s" % (approx, bf), "%s%.1f s" % (approx, br), "%.2f" % (c["first"]["wall"] / bf), "%.2f" % (c["rerun"]["wall"] / br)]
        else:
            cells += ["-"] * 4
        lines.append("| " + " | ".join(cells) + " |")
    if sampled_note:
        sample = next(r["baseline"]["first"]["hosts_run"] for r in rows if "baseline" in r and r["baseline"]["first"].get("hosts_run", r["hosts"]) < r["hosts"])
        lines += ["", "≈: to keep `benchmarks/run` near 20 minutes, above %d hosts the baseline runs on h1..h%d only (`--limit`; each of "
                  "them still builds its complete tables towards the whole lab) and its time is scaled by N/%d. Every host does the "
                  "same work and the run is CPU-bound, so time is linear in the hosts run. `benchmarks/run --full` runs it on every "
                  "host." % (sample, sample, sample)]

    lines += ["", "Work per host and CPU:", "",
              "| hosts | collection first: tasks / module runs | collection re-run: tasks / module runs | baseline: tasks / module runs "
              "| CPU collection first | CPU collection re-run | CPU baseline first | CPU baseline re-run |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        c = r["collection"]
        cells = ["%d" % r["hosts"], "%g / %g" % (c["first"]["tasks_per_host"], c["first"]["module_runs_per_host"]),
                 "%g / %g" % (c["rerun"]["tasks_per_host"], c["rerun"]["module_runs_per_host"])]
        if "baseline" in r:
            b = r["baseline"]
            cells.append("%g / %g" % (b["first"]["tasks_per_host"], b["first"]["module_runs_per_host"]))
        else:
            cells.append("-")
        cells += ["%.0f s" % c["first"]["cpu"], "%.0f s" % c["rerun"]["cpu"]]
        cells += ["%.0f s" % base_time(r["baseline"]["first"], "cpu"), "%.0f s" % base_time(r["baseline"]["rerun"], "cpu")] if "baseline" in r else ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")

    asis = [(r["hosts"], r["baseline"]["rerun_unguarded"]) for r in rows if "baseline" in r and "rerun_unguarded" in r["baseline"]]
    if asis:
        lines += ["", "**The baseline re-run as is** (no guards) is not a no-op: `ip netns add ns1` answers `File exists` and every "
                  "host fails on its first task (the loop still runs its other commands, most of which fail the same way), so "
                  "the playbook can never be re-run to converge or repair anything: " + "; ".join(
                      "%d hosts: rc=%d, %d of %d hosts failed, %.1f s" % (n, run["rc"], run["hosts_failed"], run.get("hosts_run", n), run["wall"])
                      for n, run in asis) + ". The guarded variant above re-runs every command and reports the ones that "
                  "return 0 (`ip link set ... up`, `master`) as changes on every run (%s, counted on the hosts that ran it)." % ", ".join(
                      "%d hosts: changed=%d" % (r["hosts"], r["baseline"]["rerun"]["changed_total"]) for r in rows if "baseline" in r)]

    verify = [(r["hosts"], r["collection"].get("verify"), r.get("baseline", {}).get("verify")) for r in rows]
    verify = [(n, c, b) for n, c, b in verify if c or b]
    if verify:
        lines += ["", "`playbooks/verify.yml` (tables checked in check mode, all-pairs ping matrix, MTU proof) passed after both: " + "; ".join(
            "%d hosts: %s%s" % (n, "collection %.1f s" % c["wall"] if c else "", ", baseline %.1f s" % b["wall"] if b else "") for n, c, b in verify) + "."]

    # growth
    lines += ["", "### How each grows with N", ""]
    series = [("collection first", col_first), ("collection re-run", col_rerun)]
    if have_base:
        series += [("baseline first", [base_time(r["baseline"]["first"]) for r in rows]),
                   ("baseline re-run", [base_time(r["baseline"]["rerun"]) for r in rows])]
    lines += ["| series | " + " | ".join("T(%d)/T(%d)" % (b, a) for a, b in zip(sizes, sizes[1:], strict=False))
              + " | t ~ N^k, k (8..%d) | linear fit t = a + b·N |" % sizes[-1],
              "|---|" + "---:|" * (len(sizes) - 1) + "---:|---|"]
    for name, times in series:
        big = [(n, t) for n, t in zip(sizes, times, strict=True) if n >= 8]
        k = fit_power([n for n, _ in big], [t for _, t in big])
        line = fit_line(sizes, times)
        lines.append("| %s | %s | %s | %s |" % (
            name, " | ".join("%.2f" % (b / a) for a, b in zip(times, times[1:], strict=False)), "%.2f" % k if k is not None else "-",
            "%.1f s + %.2f s/host" % line if line else "-"))
    runs = [r["collection"]["first"]["module_runs_per_host"] for r in rows]
    lines += ["", "The collection starts the same %s module processes per host at every size on a fresh host, and 2 on a "
              "converged one (a table of any length is one module call), so its time grows linearly in N at most "
              "(k below 1 while the 2 CPUs are not saturated by the "
              "smaller labs). The baseline runs 13 + 2(N-1) commands on each host, N(2N + 11) in all (%s at %s hosts): its "
              "time grows faster than linearly and tends to N²." % (
                  "/".join("%g" % v for v in sorted(set(runs))), ", ".join("%d" % (n * (2 * n + 11)) for n in sizes),
                  ", ".join("%d" % n for n in sizes))]

    # goals
    last = rows[-1]
    ratio = last["collection"]["rerun"]["wall"] / last["collection"]["first"]["wall"]
    lines += ["", "### Goals", "",
              "- No-change re-run at %d hosts under a third of the first converge: %.1f s / %.1f s = %.2f (%s); CPU %.0f s / %.0f s = %.2f%s."
              % (last["hosts"], last["collection"]["rerun"]["wall"], last["collection"]["first"]["wall"], ratio, verdict(ratio < 1 / 3),
                 last["collection"]["rerun"]["cpu"], last["collection"]["first"]["cpu"],
                 last["collection"]["rerun"]["cpu"] / last["collection"]["first"]["cpu"],
                 "" if ratio < 1 / 3 else ". Why: below")]
    if have_base:
        cmp = [(r["hosts"], r["collection"]["first"]["wall"] / base_time(r["baseline"]["first"]),
                r["collection"]["rerun"]["wall"] / base_time(r["baseline"]["rerun"])) for r in rows if r["hosts"] >= 8]
        ok = all(f < 1 and rr < 1 for _, f, rr in cmp)
        lines.append("- Collection faster than the baseline at every size from 8 up: %s (%s)." % (
            "; ".join("%d hosts: first %.2fx, re-run %.2fx of the baseline's time" % c for c in cmp), verdict(ok)))
        small = [r for r in rows if r["hosts"] < 8 and "baseline" in r]
        for r in small:
            lines.append("- At %d hosts (no goal): first %.2fx, re-run %.2fx of the baseline's time." % (
                r["hosts"], r["collection"]["first"]["wall"] / base_time(r["baseline"]["first"]),
                r["collection"]["rerun"]["wall"] / base_time(r["baseline"]["rerun"])))

    lines += ["", "![converge time against the number of hosts](img/converge_scaling.png)"]
    lines += ["", profile_and_fix(rows)]
    return "\n".join(lines)


def profile_and_fix(rows: list[dict]) -> str:
    """Why the re-run used to cost as much as the first converge, the fix, and before / after."""
    with_before = [r for r in rows if "before" in r]
    lines = ["### Profile, and the fix: a converged host skips its change tasks", "",
             "Before the fix (the roles at commit %s) a no-change re-run cost as much as the first converge. Profiled with "
             "`converge_bench.py --profile` (cProfile of `ansible-playbook`), the per-task times of "
             "`benchmarks/callback_plugins/bench_count.py`, and an interpreter wrapper timing every module process on the hosts:"
             % (with_before[0]["before"]["commit"] if with_before else "?"),
             "",
             "- the controller spends most of its time waiting for its workers (`time.sleep` in `_wait_on_pending_results`); "
             "its own work (forking workers, templating, callbacks, the mesh filter over `hostvars`) is a small part;",
             "- each task on each host starts one module process on the host: about 0.3 s of CPU for an `ansible.builtin` module "
             "(interpreter, AnsiballZ, `ansible.module_utils.basic` compiled from the zip) and 0.5-0.6 s for ours (+ pyroute2), "
             "whether it changes anything or not; the work on the kernel is a few milliseconds of it;",
             "- a host ran 7 of them on every converge, first or not (`linux_bridge`, `netns_veth`, `vxlan_link`, `bridge_fdb`, "
             "`ip_neigh`, and the DOVE clean-up's `stat` and `file` in every non-dove mode).",
             "",
             "Forks (16) and pipelining were already on, and each table was already one module call per device (not a loop per "
             "entry), so the only lever left was to start fewer module processes on a converged host. The fix "
             "(`overlay.vxlan.overlay_plan`): each role first runs one module process that puts every task's parameters "
             "through the modules' own code in check mode (the modules' work moved to `plugins/module_utils` for it, so "
             "there is one comparison, not a second copy in Jinja), and runs its change tasks only if anything would change "
             "(then all of them); the DOVE clean-up is entered only where something differs (a switch from dove always does). "
             "The task parameters come from one filter, given both to the plan and to the tasks. A converged host now runs 2 "
             "module processes, a fresh one %s." % (
                 "/".join("%g" % v for v in sorted({r["collection"]["first"]["module_runs_per_host"] for r in rows}))),
             "",
             "An earlier attempt that compared an `overlay_info` read in Jinja templates was reverted: it was a second "
             "normalisation of the modules' comparisons, and any divergence would silently skip a repair."]
    if with_before:
        lines += ["", "Before and after, measured in this run on the same labs' shape (the *before* roles from a git worktree "
                  "of %s):" % with_before[0]["before"]["commit"], "",
                  "| hosts | before: first | before: re-run | before: re-run / first | after: first | after: re-run "
                  "| after: re-run / first | re-run, after / before | module runs per host (first / re-run): before | after |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for r in with_before:
            b, c = r["before"], r["collection"]
            lines.append("| %d | %.1f s | %.1f s | %.2f | %.1f s | %.1f s | %.2f | %.2f | %g / %g | %g / %g |" % (
                r["hosts"], b["first"]["wall"], b["rerun"]["wall"], b["rerun"]["wall"] / b["first"]["wall"],
                c["first"]["wall"], c["rerun"]["wall"], c["rerun"]["wall"] / c["first"]["wall"], c["rerun"]["wall"] / b["rerun"]["wall"],
                b["first"]["module_runs_per_host"], b["rerun"]["module_runs_per_host"],
                c["first"]["module_runs_per_host"], c["rerun"]["module_runs_per_host"]))
        r = with_before[-1]
        lines += ["", "The price: on a host with work to do, each role's plan is one more module process, so the first converge "
                  "costs %.2fx what it did at %d hosts (%.1f s against %.1f s); every later run of a converged fleet (a CI "
                  "check, a nightly drift repair, adding one host) costs %.2fx. The change tasks are in `apply.yml` of each "
                  "role, included only where the plan found something to do, so a converged host also skips their templating "
                  "(one skipped include instead of a skipped task per resource)." % (
                      r["collection"]["first"]["wall"] / r["before"]["first"]["wall"], r["hosts"], r["collection"]["first"]["wall"],
                      r["before"]["first"]["wall"], r["collection"]["rerun"]["wall"] / r["before"]["rerun"]["wall"])]
    return "\n".join(lines)


# --- data plane and first ping ---------------------------------------------------------------------

def dataplane_section(modes: list[dict], meta: dict) -> str:
    lines = [
        "Measured by `benchmarks/dataplane_bench.py` (run by `benchmarks/run`) on %s, %s." % (meta.get("dataplane", {}).get("machine", machine()),
                                                                                             when(meta, "dataplane")),
        "",
        "One 3-host lab converged in turn to each mode (roles endpoint + vxlan; dove with the file backend). iperf3 TCP, %s s per test after 1 s "
        "omitted, from h1's VM (`ns1`, 100.0.0.2) to h2's VM (100.0.0.3) over the overlay, and from h1 to h2 over the underlay "
        "(192.168.1.2 -> .3, the hosts' `eth0`), alternated test by test so both see the same load; median of %d each. Both "
        "paths run on the same two CPUs (every packet is handled by the kernel on both ends), so the ratio, not the absolute "
        "rate, is the result: it is the cost of the VXLAN encapsulation, the bridge `br1` and the VM's veth, and of the 50 "
        "bytes less of MTU." % ("%g" % modes[0].get("iperf_seconds", 3) if modes else 3, len(modes[0]["overlay_samples"]) if modes else 0),
        "",
        "| mode | overlay TCP | underlay TCP | overlay / underlay | retransmits (overlay / underlay) "
        "| largest DF ping that passes | vxlan0 MTU | VM MTU | = overlay MTU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for m in modes:
        mtu = m["mtu"]
        lines.append("| %s | %.2f Gbit/s | %.2f Gbit/s | %.2f | %d / %d | %s bytes (payload %d + 28) | %d | %d | %s |" % (
            m["mode"], m["overlay_gbps"], m["underlay_gbps"], m["ratio"], m["overlay_retransmits"], m["underlay_retransmits"],
            mtu["largest_df_packet"], mtu["largest_df_payload"], mtu["vxlan0_mtu"], mtu["vm_mtu"], "yes" if mtu["equal"] else "**no**"))
    if modes:
        lines += ["", "MTU check: binary search of `ping -M do -s SIZE` from h1's VM to h2's VM (two tries per size); the largest "
                  "passing packet (payload + 8 ICMP + 20 IP) must equal vxlan0's MTU, the underlay's %d minus 50. Over the "
                  "underlay the same search gives %s bytes." % (modes[0]["mtu"]["underlay_mtu"], modes[0]["mtu"]["underlay_largest_df_packet"]),
                  "", "![TCP throughput, overlay against underlay, per mode](img/dataplane.png)"]
    return "\n".join(lines)


def dove_section(modes: list[dict], dove: list[dict] | None, meta: dict) -> str:
    lines = [
        "First ping: every VM's ARP cache is flushed, then one VM pings each remote VM once; the time to the first echo "
        "reply includes resolving the MAC. Every row uses the same raw-socket pinger (`MULTI_PING` of "
        "`benchmarks/dove_latency.py`).",
        "",
        "- lab rows: `benchmarks/dataplane_bench.py`, the 3-host lab converged by the roles to each mode, h1's VM -> the 2 "
        "others (%s). In static mode the VM's ARP request is answered by its own host's vxlan0 (proxy, entries "
        "pre-programmed): nothing crosses the underlay before the echo. In flood and multicast modes the request is "
        "flooded to every peer and answered by the remote VM. In dove mode (file backend) h1's vxlan0 tables are flushed "
        "too each round, so every first ping raises an l3miss and an l2miss that h1's agent answers; its miss-to-entry "
        "figures are the agent's own (notification read -> neighbour and fdb entries ACKed by the kernel), since it started." % when(meta, "dataplane"),
        "- `benchmarks/dove_latency.py` rows (%s): plain namespaces rather than the lab, N VMs per host, both backends, "
        "the same flush each round." % when(meta, "dove"),
        "",
        "| control plane | first ping p50 | first ping p99 | later pings p50 | miss-to-entry p50 | miss-to-entry p99 | samples |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in modes:
        fp = m["first_ping"]
        miss = m.get("miss_to_entry_us")
        lines.append("| %s (lab, 1 VM per host) | %.3f ms | %.3f ms | %.3f ms | %s | %s | %d first pings, %d lost |" % (
            m["mode"], fp["p50_ms"], fp["p99_ms"], fp["resolved_p50_ms"],
            "%.0f µs" % miss["p50"] if miss else "- (no miss)", "%.0f µs" % miss["p99"] if miss else "-", fp["samples"], fp["lost"]))
    for d in dove or []:
        lines.append("| DOVE, %s backend, %d VMs per host | %.3f ms | %.3f ms | %.3f ms | %.0f µs | %.0f µs | %d misses answered, %d lost |" % (
            d["backend"], d["endpoints_per_host"], d["first_ping_ms_p50"], d["first_ping_ms_p99"], d["resolved_ping_ms_p50"],
            d["latency_us_p50"], d["latency_us_p99"], d["samples"], d["pings_lost"]))
    static = next((m for m in modes if m["mode"] == "static"), None)
    lab_dove = next((m for m in modes if m["mode"] == "dove"), None)
    if static and lab_dove:
        lines += ["", "On the same lab, DOVE's first ping costs %.2f ms at p50 against %.3f ms in static mode (%.1fx): the price "
                  "of filling tables on demand instead of programming the full mesh in advance; once resolved, pings are alike "
                  "(%.3f against %.3f ms)." % (lab_dove["first_ping"]["p50_ms"], static["first_ping"]["p50_ms"],
                                              lab_dove["first_ping"]["p50_ms"] / static["first_ping"]["p50_ms"],
                                              lab_dove["first_ping"]["resolved_p50_ms"], static["first_ping"]["resolved_p50_ms"])]
    lines += ["", "![first-ping time per control plane](img/first_ping.png)"]
    return "\n".join(lines)


def modes_summary(modes: dict | None) -> list[str]:
    """evpn's BGP wait and the moved VM per mode, from benchmarks/modes_bench.py's results."""
    rows = (modes or {}).get("results", [])
    lines = []
    evpn = [r for r in rows if r["mode"] == "evpn" and r.get("bgp")]
    if evpn:
        lines.append("- EVPN (modes against N), seconds from the playbook's return until h1 had every remote VM's `extern_learn` "
                     "entry: %s; first converge %s (each row's load average in the section)." % (
                         ", ".join("%d hosts %.1f s" % (r["hosts"], r["bgp"]["seconds_after_playbook"]) if r["bgp"]["complete"]
                                   else "%d hosts: %d of %d after %.0f s" % (r["hosts"], r["bgp"]["extern_learn"], r["bgp"]["expected"],
                                                                            r["bgp"]["seconds_after_playbook"]) for r in evpn),
                         ", ".join("%d hosts %.1f s" % (r["hosts"], r["first"]["wall"]) for r in evpn)))
    moved = [r for r in rows if r.get("move")]
    if moved:
        lines.append("- A moved VM answering at its new VTEP, from the start of its converge (modes against N): %s." % ", ".join(
            "%s %d hosts %s" % (r["mode"], r["hosts"], "%.1f s" % r["move"]["followed_s"] if r["move"]["followed_s"] is not None
                                else "the moving converge failed" if r["move"]["playbook"]["rc"] else "not followed")
            for r in sorted(moved, key=lambda r: (r["hosts"], r["mode"]))))
    return lines


def summary_section(converge: list[dict] | None, dataplane: list[dict] | None, meta: dict, modes: dict | None = None) -> str:
    """The goals of the benchmarks, each with its figure and verdict (details in the sections below)."""
    lines = ["Goals and the figures of the last `benchmarks/run` (details and method in the sections below):", ""]
    if converge:
        last = converge[-1]
        c = last["collection"]
        ratio = c["rerun"]["wall"] / c["first"]["wall"]
        lines.append("- Converge, no-change re-run at %d hosts under a third of the first converge: %.1f s / %.1f s = %.2f (%s)." % (
            last["hosts"], c["rerun"]["wall"], c["first"]["wall"], ratio, verdict(ratio < 1 / 3)))
        cmp = [(r["hosts"], r["collection"]["first"]["wall"] / base_time(r["baseline"]["first"]),
                r["collection"]["rerun"]["wall"] / base_time(r["baseline"]["rerun"])) for r in converge if r["hosts"] >= 8 and "baseline" in r]
        if cmp:
            lines.append("- Converge, the collection faster than the `ip`/`bridge` command baseline at every size from 8 up: %s (%s)." % (
                "; ".join("%d hosts %.2fx first, %.2fx re-run" % row for row in cmp), verdict(all(f < 1 and rr < 1 for _, f, rr in cmp))))
        before = [r for r in converge if "before" in r]
        if before:
            r = before[-1]
            lines.append("- The fix for the re-run (`overlay_plan`), at %d hosts: re-run %.1f s before, %.1f s after (%.2fx); first converge "
                         "%.1f s before, %.1f s after." % (r["hosts"], r["before"]["rerun"]["wall"], r["collection"]["rerun"]["wall"],
                                                           r["collection"]["rerun"]["wall"] / r["before"]["rerun"]["wall"],
                                                           r["before"]["first"]["wall"], r["collection"]["first"]["wall"]))
    lines.append("- Programming throughput (`bridge_fdb`, `ip_neigh` at 10,000 entries against `bridge -batch` / `ip -batch`): "
                 "the targets and figures are in its section, written by `benchmarks/modules_bench.py`.")
    lines.append("- Fleet scale (10,000-entry tables through `ansible-playbook`, 1,000-3,000-host inventories): the targets and "
                 "figures are in its section, written by `benchmarks/fleet_bench.py`.")
    if dataplane:
        lines.append("- Data plane, overlay TCP / underlay TCP per mode: %s; the largest don't-fragment ping equals the overlay MTU in %s." % (
            ", ".join("%s %.2f" % (m["mode"], m["ratio"]) for m in dataplane),
            "every mode" if all(m["mtu"]["equal"] for m in dataplane) else "**not every mode** (%s)" % ", ".join(
                m["mode"] for m in dataplane if not m["mtu"]["equal"])))
        static = next((m for m in dataplane if m["mode"] == "static"), None)
        dove = next((m for m in dataplane if m["mode"] == "dove"), None)
        if static and dove:
            lines.append("- First ping, DOVE against static on the same lab: p50 %.2f ms against %.3f ms; DOVE miss-to-entry p50 %.0f µs, "
                         "p99 %.0f µs." % (dove["first_ping"]["p50_ms"], static["first_ping"]["p50_ms"],
                                           dove["miss_to_entry_us"]["p50"], dove["miss_to_entry_us"]["p99"]))
    lines += modes_summary(modes)
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------------

def render(meta: dict) -> None:
    """Rewrite this script's sections from benchmarks/results/; a step whose measurement started
    on a busy machine (quiet.py) is left out, its section kept as it was, and named at the end."""
    text = DOCS.read_text() if DOCS.exists() else HEADER
    if HEADER.split("\n\n")[1] not in text:  # an older file without the introduction
        text = text.replace("# Benchmarks\n", HEADER, 1)
    loads = {step: meta.get(step, {}).get("load_before") for step in ("converge", "dataplane", "dove")}
    refused = noisy({step: load for step, load in loads.items() if step in meta})
    converge = None if "converge" in refused else read_json(RESULTS / "converge.json")
    dataplane = None if {"dataplane", "dove"} & set(refused) else read_json(RESULTS / "dataplane.json")
    dove = (read_json(RESULTS / "dove.json") or []) + (read_json(RESULTS / "dove_etcd.json") or [])
    if converge:
        text = replace_section(text, SECTIONS[0], converge_section(converge, meta), insert_before=MODULES_SECTION)
        plot_converge(converge)
    if dataplane:
        text = replace_section(text, SECTIONS[1], dataplane_section(dataplane, meta))
        text = replace_section(text, SECTIONS[2], dove_section(dataplane, dove, meta))
        plot_dataplane(dataplane, dove)
    modes = read_json(RESULTS / "modes.json")
    if modes and noisy({"modes": modes.get("meta", {}).get("load_before")}):
        refused["modes"], modes = modes.get("meta", {}).get("load_before"), None
    first_section = next((h for h in (SECTIONS[0], MODULES_SECTION) if h in text), None)
    text = replace_section(text, SUMMARY, summary_section(converge, dataplane, meta, modes), insert_before=first_section)
    DOCS.write_text(text)
    print("benchmarks/run: wrote %s and %s/*.png" % (os.path.relpath(DOCS, ROOT), os.path.relpath(IMG, ROOT)), file=sys.stderr)
    refuse_noisy(refused, "the sections of %s" % ", ".join(sorted(refused)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=STEPS, help="run only this step (repeatable)")
    parser.add_argument("--render", action="store_true", help="measure nothing; rewrite the docs and plots from benchmarks/results/")
    parser.add_argument("--full", action="store_true", help="run the baseline on every host at every size (no sampling)")
    opts = parser.parse_args(argv)
    meta_path = RESULTS / "meta.json"
    if opts.render:
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    else:
        if os.geteuid() != 0:
            raise SystemExit("benchmarks/run: needs root (the lab)")
        start = time.perf_counter()
        meta = measure(opts.only or list(STEPS), opts.full)
        print("benchmarks/run: measured in %.1f min" % ((time.perf_counter() - start) / 60), file=sys.stderr)
    if not DOCS.exists():
        DOCS.write_text(HEADER)
    render(meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
