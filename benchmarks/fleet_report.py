"""Renders benchmarks/results/fleet.json (written by fleet_bench.py) into docs/benchmarks.md's
"Fleet scale" section and docs/img/fleet_scaling.png. Figures and ratios only; no timing is a
test. Kept apart from fleet_bench.py so a re-render needs no root and no lab."""

from __future__ import annotations

from pathlib import Path

from plots import plot_fleet
from quiet import refuse_noisy

TABLE_TARGET = 3.0  # x the iproute2 batch, the 1-entry run subtracted
RERUN_TARGET = 0.5  # s
INVENTORY_TARGET = 15.0  # s more for the 1,000-host inventory


def _t(pair) -> str:
    return "%.2f s (%.2f CPU)" % (pair[0], pair[1])


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def tables_text(rows: list[dict]) -> list[str]:
    out = ["### Big tables through ansible-playbook", "",
           "One `ansible-playbook` run (local connection) of one task, `state: exact`, on a fresh vxlan0 in a throwaway "
           "namespace, the table passed from a variable (an extra-vars file); the same run with 1 entry is subtracted, "
           "which leaves what the 10,000 entries cost: the controller templating them, the module's arguments, its "
           "validation, the kernel work and the result carried back. Big and 1-entry runs interleaved, the least elapsed and the least CPU of 6 samples "
           "for *rows, one string* (3 for the others); elapsed, CPU of everything in brackets. "
           "Forms: *rows, one string* (`rows: \"{{ table }}\"`, a string of 10,000 lines: what the vxlan role passes), "
           "*rows, list* (10,000 strings), *entries* (10,000 dicts, the form the issue measured).", "",
           "| module | form | apply, 1 entry | apply, 10,000 | 10,000 - 1 | no-change re-run, 10,000 - 1 "
           "| iproute2 `-batch`, 10,000 | (10,000 - 1) / batch, elapsed, CPU |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for row in rows:
        batch = row["batch"]
        for form, label in (("rows_text", "rows, one string"), ("rows_list", "rows, list"), ("entries", "entries (dicts)")):
            runs = row.get(form)
            if not runs:
                continue
            apply = [runs["apply"][i] - runs["apply_one"][i] for i in (0, 1)]
            rerun = [runs["rerun"][i] - runs["rerun_one"][i] for i in (0, 1)]
            out.append("| %s | %s | %s | %s | %s | %s | %s | %.1fx, %.1fx |" % (
                row["module"], label, _t(runs["apply_one"]), _t(runs["apply"]), _t(apply), _t(rerun), _t(batch),
                apply[0] / batch[0], apply[1] / batch[1]))
            if form == "rows_text":
                tool = "bridge -batch" if row["module"] == "bridge_fdb" else "ip -batch"
                verdicts.append("- %s, rows: 10,000 entries cost %.2f s elapsed (%.2f s CPU) more than 1, against %.3f s (%.3f s CPU) "
                                "for `%s`: %.1fx elapsed (%s), %.1fx CPU (%s); no-change re-run %.2f s (%.2f s CPU) more than "
                                "1 entry's (%s, under %.1f s). Load average %s before, %s after." % (
                                    row["module"], apply[0], apply[1], batch[0], batch[1], tool,
                                    apply[0] / batch[0], _verdict(apply[0] / batch[0] <= TABLE_TARGET),
                                    apply[1] / batch[1], _verdict(apply[1] / batch[1] <= TABLE_TARGET),
                                    rerun[0], rerun[1], _verdict(rerun[0] < RERUN_TARGET), RERUN_TARGET,
                                    row.get("load_before"), row.get("load_after")))
    return out + ["", "Targets (within %.0fx of the batch, re-run under %.1f s):" % (TABLE_TARGET, RERUN_TARGET), ""] + verdicts


def _run(result: dict, key: str = "first") -> str:
    run = result[key]
    return "%.1f s (%.1f CPU), %.0f MB" % (run["wall"], run["cpu"], run["maxrss_mb"])


def inventory_text(results: list[dict], before: dict | None = None) -> list[str]:
    small, big_lists, big_file = results
    out = ["### The lab's 3 hosts from a 1,000-host inventory", "",
           "A fresh 3-host lab (10 VMs per host, static mode) converged by `playbooks/validate.yml` + the roles endpoint, "
           "vxlan and persist (site.yml without verify, which would ping VMs that exist only in the inventory), `--limit lab`, "
           "from: an inventory of those 3 hosts; one of 1,000 hosts x 10 VMs in inventories/lab's format (a "
           "`vxlan_endpoints` list per host in hosts.yml); the same 1,000 hosts with their endpoints in one JSON file "
           "(`vxlan_endpoint_map_file`). Elapsed, CPU of `ansible-playbook` and everything it ran, peak RSS of the largest "
           "process (the controller).", "",
           "| inventory | first converge | no-change re-run | h1's fdb / neighbour entries "
           "| module processes per host (first / re-run) | load average before, then after |",
           "|---|---:|---:|---:|---:|---|"]
    rows = [(small, "3 hosts"), (big_lists, "1,000 hosts, host_vars lists"), (big_file, "1,000 hosts, endpoint file")]
    if before:
        rows += [(before["runs"][0], "before (roles at %s): 3 hosts" % before["commit"]),
                 (before["runs"][1], "before (roles at %s): 1,000 hosts, host_vars lists" % before["commit"])]
    for result, label in rows:
        runs = result["first"].get("module_runs", {})
        again = result.get("rerun", {}).get("module_runs", {})
        out.append("| %s | %s | %s | %d / %d | %s / %s | %s, then %s |" % (
            label, _run(result), _run(result, "rerun") if "rerun" in result else "-", result["tables"]["fdb"], result["tables"]["neigh"],
            runs.get("h1", "-"), again.get("h1", "-"), result["load_before"], result["load_after"]))
    diff_file = big_file["first"]["wall"] - small["first"]["wall"]
    diff_lists = big_lists["first"]["wall"] - small["first"]["wall"]
    full = big_file["tables"]["fdb"] == big_file["tables"]["neigh"] == 9990
    out += ["", "- endpoint file: the 1,000-host inventory costs %.1f s more than the 3-host one (%s, under %.0f s; CPU %+.1f s), "
            "and h1 holds %d fdb and %d neighbour entries (%s: all 9,990 remote VMs)." % (
                diff_file, _verdict(diff_file < INVENTORY_TARGET), INVENTORY_TARGET, big_file["first"]["cpu"] - small["first"]["cpu"],
                big_file["tables"]["fdb"], big_file["tables"]["neigh"], "met" if full else "**missed**"),
            "- host_vars lists (inventories/lab's format): %.1f s more (%s; CPU %+.1f s): most of it is Ansible loading the "
            "10,000 endpoints as inventory variables, before any task; the roles' own cost is the same as with the file." % (
                diff_lists, _verdict(diff_lists < INVENTORY_TARGET), big_lists["first"]["cpu"] - small["first"]["cpu"])]
    if before:
        old_small, old_big = before["runs"]
        out.append("- before (the roles at %s: the vxlan_mesh filter per host and role, a module process per bridge and VM): "
                   "the 1,000-host inventory cost %.1f s more than the 3-host one (CPU %+.1f s); now %.1f s with the same "
                   "inventory, %.1f s with the endpoint file." % (
                       before["commit"], old_big["first"]["wall"] - old_small["first"]["wall"],
                       old_big["first"]["cpu"] - old_small["first"]["cpu"], diff_lists, diff_file))
    return out


def scaling_text(results: list[dict], plot: Path) -> list[str]:
    base, rest = results[0], results[1:]
    out = ["### Controller time and memory per inventory host", "",
           "The same converge of a fresh 3-host lab from inventories of N hosts x 10 VMs (endpoint file), against the 3-host "
           "inventory measured in the same run. Per host = (figure at N - figure at 3) / (N - 3): what each host only in "
           "the inventory costs. The lab's hosts program 10(N-1) entries per table, so this includes their growing tables.", "",
           "| N | elapsed | CPU | peak RSS | elapsed per host | CPU per host | RSS per host | h1 fdb / neigh | load before, then after |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    out.append("| %d | %.1f s | %.1f s | %.0f MB | - | - | - | %d / %d | %s, then %s |" % (
        base["size"], base["first"]["wall"], base["first"]["cpu"], base["first"]["maxrss_mb"], base["tables"]["fdb"],
        base["tables"]["neigh"], base["load_before"], base["load_after"]))
    per = []
    for r in rest:
        n = r["size"] - base["size"]
        wall = (r["first"]["wall"] - base["first"]["wall"]) / n * 1000
        cpu = (r["first"]["cpu"] - base["first"]["cpu"]) / n * 1000
        rss = (r["first"]["maxrss_mb"] - base["first"]["maxrss_mb"]) / n * 1024
        per.append((r["size"], wall, cpu, rss))
        out.append("| %d | %.1f s | %.1f s | %.0f MB | %.1f ms | %.1f ms | %.0f KB | %d / %d | %s, then %s |" % (
            r["size"], r["first"]["wall"], r["first"]["cpu"], r["first"]["maxrss_mb"], wall, cpu, rss,
            r["tables"]["fdb"], r["tables"]["neigh"], r["load_before"], r["load_after"]))
    if len(per) >= 2:
        cpus = [p[2] for p in per if p[0] >= 300] or [p[2] for p in per]
        out += ["", "CPU per host from N=300 up: %s ms (max / min %.2f): %s." % (
            ", ".join("%.1f" % c for c in cpus), max(cpus) / min(cpus),
            "flat" if max(cpus) / min(cpus) < 1.5 else "**not flat**")]
    plot_fleet(per, plot)
    out += ["", "![controller cost per inventory host against N](img/%s)" % plot.name]
    return out


def start_loads(results: dict) -> dict:
    """{measurement: load average at its start} of every figure the section would show."""
    loads = {"tables %s" % row["module"]: row.get("load_before") for row in results.get("tables", [])}
    for step in ("inventory", "scaling"):
        loads.update({"%s %s %s" % (step, r["size"], r["form"]): r.get("load_before") for r in results.get(step, [])})
    return loads


def render(results: dict, docs: Path, plot: Path, section: str) -> None:
    refuse_noisy(start_loads(results), "the section '%s'" % section)
    lines = [section, "",
             "Measured by `benchmarks/fleet_bench.py` (run alone, or by `benchmarks/run --only fleet`) on %s, %s, each "
             "measurement started at a load average of 1.5 or less (benchmarks/quiet.py); load averages are given with "
             "each figure, and the CPU seconds are the steadier comparison." % (results.get("machine"), results.get("date")), ""]
    if "tables" in results:
        lines += tables_text(results["tables"]) + [""]
    if "inventory" in results:
        lines += inventory_text(results["inventory"], results.get("before")) + [""]
    if "scaling" in results:
        lines += scaling_text(results["scaling"], plot) + [""]
    text = docs.read_text()
    block = "\n".join(lines).rstrip() + "\n"
    if section in text:
        start = text.index(section)
        end = text.find("\n## ", start + len(section))
        text = text[:start] + block + ("\n" + text[end + 1:] if end != -1 else "")
    else:
        text = text.rstrip() + "\n\n" + block
    docs.write_text(text)
