#!/usr/bin/env python3
"""Fleet scale: big tables through ansible-playbook, and big inventories on the controller.

Three measurements, each against its baseline measured in the same run:

- `tables`: bridge_fdb and ip_neigh with 10,000 entries in compact `rows`, passed from a variable
  through a whole `ansible-playbook` run (local connection, a throwaway namespace), minus the same
  run with 1 entry, against `bridge -batch` / `ip -batch` with the same entries. Also the
  no-change re-run (minus its 1-entry run) and, for comparison, the dict `entries` form.
- `inventory`: the same 3 lab hosts converged (playbooks/validate.yml, then the roles endpoint,
  vxlan, allowlist and persist: site.yml without verify) from a 3-host inventory and from an
  inventory of 1,000 hosts x 10 VMs (997 hosts only in the inventory, `--limit` to the lab's 3),
  whose endpoints are kept in one data file (vxlan_endpoint_map_file). h1's tables are counted.
- `scaling`: controller time and peak memory per inventory host of that converge for
  N = 100, 300, 1,000, 3,000 hosts (10 VMs each), with a plot.

    .venv/bin/python benchmarks/fleet_bench.py                    # everything, JSON to benchmarks/results/fleet.json
    .venv/bin/python benchmarks/fleet_bench.py --only tables
    .venv/bin/python benchmarks/fleet_bench.py --render           # rewrite docs/benchmarks.md's section and the plot

Labs are named fleet<hex> and always destroyed; namespaces are ovxb-<hex> and always removed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

import lab_fixtures  # noqa: E402
import modules_bench as mb  # noqa: E402

BIN = Path(sys.executable).parent
RESULTS = ROOT / "benchmarks" / "results" / "fleet.json"
DOCS = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "img" / "fleet_scaling.png"
SECTION = "## Fleet scale"

TABLE_PLAYBOOK = """---
- name: One table task
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The table
      overlay.vxlan.{module}:
        netns: "{{{{ bench_netns }}}}"
        dev: vxlan0
        state: exact
        {option}: "{{{{ bench_table }}}}"
"""


def load() -> str:
    return "%.1f / %.1f / %.1f" % os.getloadavg()


def rows(module: str, entries: list[dict]) -> list[str]:
    if module == "bridge_fdb":
        return ["%s %s" % (e["mac"], e["dst"]) for e in entries]
    return ["%s %s" % (e["ip"], e["lladdr"]) for e in entries]


def playbook_run(bed, module: str, table, option: str) -> mb.Timing:
    """One whole ansible-playbook run of one table task; wall and CPU (controller + module)."""
    with tempfile.TemporaryDirectory() as tmp:
        book = Path(tmp) / "table.yml"
        book.write_text(TABLE_PLAYBOOK.format(module=module, option=option))
        extra = Path(tmp) / "vars.json"
        extra.write_text(json.dumps({"bench_netns": bed.name, "bench_table": table}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        proc, timing = mb.timed_run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                                     "-e", "ansible_python_interpreter=%s" % sys.executable, "-e", "@%s" % extra, str(book)],
                                    cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit("table playbook failed:\n%s" % proc.stdout[-3000:])
    return timing


def best(repeat: int, measure) -> mb.Timing:
    return min((measure() for _ in range(repeat)), key=lambda t: t.wall)


def _table_runs(bed, module: str, big, small, option: str, repeat: int) -> dict:
    """apply (fresh table) and no-change re-run, each with its 1-entry twin, interleaved so that
    the machine's other work weighs on both alike; per measurement the least elapsed and the
    least CPU of `repeat` (the cost without interference)."""
    samples: dict[str, list] = {"apply": [], "rerun": [], "apply_one": [], "rerun_one": []}
    count = len(big if isinstance(big, list) else big.splitlines())
    for _ in range(repeat):
        for key, table in (("apply", big), ("apply_one", small)):
            bed.reset()
            samples[key].append(playbook_run(bed, module, table, option))
            if key == "apply":
                assert bed.count(module) == count, module
            samples[key.replace("apply", "rerun")].append(playbook_run(bed, module, table, option))
    return {key: mb.Timing(min(t.wall for t in runs), min(t.cpu for t in runs)) for key, runs in samples.items()}


def bench_tables(size: int, repeat: int) -> list[dict]:
    """Each module: rows as one string (what the roles pass), rows as a list, dicts; and iproute2's batch."""
    results = []
    for module in ("bridge_fdb", "ip_neigh"):
        make = mb.fdb_entries if module == "bridge_fdb" else mb.neigh_entries
        entries, one = make(size), make(1)
        bed = mb.Bed()
        try:
            row = {"module": module, "size": size, "load_before": load()}
            forms = (("rows_text", "rows", "\n".join(rows(module, entries)), "\n".join(rows(module, one))),
                     ("rows_list", "rows", rows(module, entries), rows(module, one)),
                     ("entries", "entries", entries, one))
            for form, option, big, small in forms:
                # The form the roles use gets more samples: it is the one with a target.
                row[form] = _table_runs(bed, module, big, small, option, repeat if form == "rows_text" else max(2, repeat // 2))
            row["batch"] = best(repeat, lambda bed=bed, module=module, entries=entries: mb.measure_batch(bed, module, entries))
            row["load_after"] = load()
            print("  %s: %s" % (module, json.dumps(row)), file=sys.stderr)
            results.append(row)
        finally:
            bed.remove()
    return results


# --- inventories of N hosts x 10 VMs, converging the lab's 3 -----------------------------------

VMS = 10
LAB_HOSTS = 3
CONVERGE = """---
- name: Validate
  ansible.builtin.import_playbook: {root}/playbooks/validate.yml

# site.yml without verify (which would ping the 9,990 VMs that exist only in the inventory).
- name: Build the VXLAN overlay
  hosts: overlay
  gather_facts: false
  roles:
{allowlist}    - role: overlay.vxlan.endpoint
    - role: overlay.vxlan.vxlan
    - role: overlay.vxlan.persist
"""
# site.yml's allow-list role, first as there (its member list covers every VTEP of the inventory); not in the
# roles measured as "before" (--before), which predate it.
ALLOWLIST = "    - role: overlay.vxlan.allowlist\n"
OVERLAY_VARS = """---
vxlan_mode: static
vxlan_underlay_dev: eth0
vxlan_networks:
  - {name: blue, vni: 100, bridge: br1, vxlan_dev: vxlan0, dstport: 4789}
"""


def host_name(i: int) -> str:
    return "h%d" % i


def underlay(i: int) -> str:
    """h1..h3 on the lab's 192.168.1.0/24; the others only in the inventory, in 10.0.0.0/8."""
    return "192.168.1.%d" % (i + 1) if i <= LAB_HOSTS else "10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255)


def endpoints(i: int) -> list[dict]:
    result = []
    for vm in range(1, VMS + 1):
        index = i * VMS + vm  # 100.0.0.0/16: host i's VMs, never .0.0 or .255.255
        result.append({"network": "blue", "namespace": "ns%d" % vm, "host_if": "tap%d" % vm, "vm_if": "vm%d" % vm,
                       "address": "100.0.%d.%d/16" % (index >> 8 & 255, index & 255)})
    return result


def write_fleet(directory: Path, lab_name: str, size: int, form: str) -> Path:
    """N hosts in group overlay, the first 3 also in group lab. form: `lists` (inventories/lab's
    format: vxlan_endpoints per host) or `file` (vxlan_endpoint_map_file, one JSON file)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["---", "all:", "  children:", "    lab:", "      vars:",
             "        ansible_connection: overlay.vxlan.lab",
             '        ansible_python_interpreter: "{{ ansible_playbook_python }}"',
             "        lab_name: %s" % lab_name, "        lab_underlay_prefix: 24", "      hosts:"]
    lines += ["        %s:" % host_name(i) for i in range(1, LAB_HOSTS + 1)]
    lines += ["    overlay:", "      hosts:"]
    for i in range(1, size + 1):
        lines.append("        %s:" % host_name(i))
        lines.append("          vxlan_underlay_ip: %s" % underlay(i))
        if form == "lists":
            lines.append("          vxlan_endpoints:")
            lines += ["            - {%s}" % ", ".join("%s: %s" % kv for kv in e.items()) for e in endpoints(i)]
    (directory / "hosts.yml").write_text("\n".join(lines) + "\n")
    (directory / "group_vars").mkdir(exist_ok=True)
    overlay = OVERLAY_VARS
    if form == "file":
        data = {host_name(i): {"vxlan_endpoints": endpoints(i)} for i in range(1, size + 1)}
        (directory / "endpoints.json").write_text(json.dumps(data))
        overlay += "vxlan_endpoint_map_file: %s\n" % (directory / "endpoints.json")
    (directory / "group_vars" / "overlay.yml").write_text(overlay)
    return directory / "hosts.yml"


def converge_run(inventory: Path, lab_name: str, playbook: Path, root: Path = ROOT) -> dict:
    """One timed converge of the lab's hosts (--limit lab): wall, CPU and peak RSS of the controller."""
    count_file = inventory.parent / ("counts-%s.json" % uuid.uuid4().hex[:6])
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_CALLBACK_PLUGINS=str(ROOT / "benchmarks" / "callback_plugins"),
               ANSIBLE_CALLBACKS_ENABLED="bench_count", BENCH_COUNT_FILE=str(count_file))
    argv = [str(BIN / "ansible-playbook"), "-i", str(inventory), "--limit", "lab", "-e", "lab_name=%s" % lab_name, str(playbook)]
    # wait4 gives this run's own rusage: RUSAGE_CHILDREN's peak RSS would be the largest of every
    # run so far.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=out, stderr=err, text=True)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode:
        raise SystemExit("converge failed (rc=%d):\n%s\n%s" % (proc.returncode, stdout[-4000:], stderr[-2000:]))
    stats = lab_fixtures.recap(stdout)
    counts = json.loads(count_file.read_text() or "{}") if count_file.exists() else {}
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "maxrss_mb": usage.ru_maxrss / 1024.0, "recap": stats,
            "module_runs": {h: c.get("module_runs") for h, c in counts.get("hosts", {}).items()},
            "tasks": sorted(counts.get("tasks", []), key=lambda t: -t.get("seconds", 0))[:8]}


def table_sizes(lab, host: str) -> dict:
    fdb = lab.enter(host, "bridge", "fdb", "show", "dev", "vxlan0").stdout
    neigh = lab.enter(host, "ip", "neigh", "show", "dev", "vxlan0", "nud", "permanent").stdout
    return {"fdb": sum(1 for line in fdb.splitlines() if "permanent" in line and " dst " in line),
            "neigh": len(neigh.splitlines())}


def converge_fleet(size: int, form: str, rerun: bool = False, root: Path = ROOT) -> dict:
    """A fresh 3-host lab converged from an inventory of `size` hosts; the lab always destroyed.
    root: the collection to converge with (this checkout, or a worktree of an earlier commit)."""
    name = "fleet" + uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory() as tmp:
        small = lab_fixtures.write_inventory(Path(tmp) / "lab" / "hosts.yml", name, {host_name(i): underlay(i) for i in range(1, 4)})
        lab = lab_fixtures.Lab(name, small, {host_name(i): underlay(i) for i in range(1, 4)})
        playbook = Path(tmp) / "converge.yml"
        playbook.write_text(CONVERGE.format(root=root, allowlist=ALLOWLIST if root == ROOT else ""))
        inventory = write_fleet(Path(tmp) / "fleet", name, size, form)
        try:
            lab.create()
            result = {"size": size, "form": form, "load_before": load()}
            result["first"] = converge_run(inventory, name, playbook, root)
            if rerun:
                result["rerun"] = converge_run(inventory, name, playbook, root)
            result["load_after"] = load()
            result["tables"] = table_sizes(lab, "h1")
            changed = {h: s["changed"] for h, s in result["first"]["recap"].items()}
            print("  %d hosts (%s): %.1f s wall, %.1f s CPU, %.0f MB, h1 %s, changed %s"
                  % (size, form, result["first"]["wall"], result["first"]["cpu"], result["first"]["maxrss_mb"],
                     result["tables"], changed), file=sys.stderr)
            return result
        finally:
            lab_fixtures._destroy_all([lab])


def measure_before(ref: str) -> dict:
    """The 3-host and the 1,000-host (host_vars lists) converges with the roles of `ref`."""
    commit = subprocess.run(["git", "rev-parse", "--short", ref + "^{commit}"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=ROOT, capture_output=True, check=True)
        try:
            return {"commit": commit, "runs": [converge_fleet(LAB_HOSTS, "lists", root=tree), converge_fleet(1000, "lists", root=tree)]}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=["tables", "inventory", "scaling"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000, 3000])
    parser.add_argument("--repeat", type=int, default=6, help="samples of the rows form (the others get half)")
    parser.add_argument("--before", metavar="REF", help="inventory step: also converge with the roles of this commit (a temporary worktree)")
    parser.add_argument("--render", action="store_true", help="only rewrite the docs section and plot from the last results")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if not args.render:
        steps = args.only or ["tables", "inventory", "scaling"]
        results["machine"] = "%s, %d CPUs, kernel %s, Python %s" % (platform.processor() or platform.machine(), os.cpu_count(),
                                                                     platform.release(), platform.python_version())
        results["date"] = datetime.datetime.now().strftime("%Y-%m-%dT%H:%M")
        if "tables" in steps:
            results["tables"] = bench_tables(10000, args.repeat)
        if "inventory" in steps:
            results["inventory"] = [converge_fleet(LAB_HOSTS, "lists", rerun=True), converge_fleet(1000, "lists"),
                                    converge_fleet(1000, "file", rerun=True)]
        if "inventory" in steps and args.before:
            results["before"] = measure_before(args.before)
        if "scaling" in steps:
            results["scaling"] = [converge_fleet(LAB_HOSTS, "file")] + [converge_fleet(n, "file") for n in args.sizes]
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1))
    import fleet_report  # noqa: PLC0415 - only when rendering

    fleet_report.render(results, DOCS, PLOT, SECTION)


if __name__ == "__main__":
    main()
