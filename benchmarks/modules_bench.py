#!/usr/bin/env python3
"""Programming throughput of bridge_fdb and ip_neigh against the iproute2 floor and a task loop.

In a throwaway namespace with an underlay veth and vxlan0, for 100, 1,000 and 10,000 entries:

- module apply: the module process run the way Ansible's module process runs (JSON arguments on
  stdin, `_ansible_diff` off), on an empty table. "wall" is the whole process (interpreter,
  imports, Ansible's argument parsing, the work, result serialisation); "own" is the module's own
  work (validation, one read of the table, diff, the pipelined apply), timed inside the process
  around the module body;
- module no-change re-run: the same task again on the converged table (changed=false);
- iproute2 floor: the same entries through `bridge -n NS -batch` (`fdb replace ... self
  permanent`, `fdb append` for the flood list) and `ip -n NS -batch` (`neigh replace ... nud
  permanent`), on an empty table;
- task loop: `ansible-playbook` with one task per entry (`loop:` over the module, one entry per
  item), measured with 200 items and with 1, reported per entry as (T200 - T1) / 199.

Each measurement is the fastest of --repeat runs (5), the cost without interference from
other work on the machine. Elapsed and CPU time (user + system of the processes, which includes
the kernel's netlink work: rtnetlink runs in the sender's context) are both reported; on a
machine busy with other work the CPU time is the fairer comparison.

Targets (issue 2): apply within 2x of the iproute2 batch at 10,000; a no-change re-run of 10,000
under 1 s of module time; per entry at least 100x cheaper than the task loop.

    .venv/bin/python benchmarks/modules_bench.py                 # print the table
    .venv/bin/python benchmarks/modules_bench.py --write-docs    # and record it in docs/benchmarks.md
    .venv/bin/python benchmarks/modules_bench.py --sizes 100 1000 --loop 0   # quick, no task loop
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BIN = Path(PYTHON).parent
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Programming throughput (modules)"

sys.path.insert(0, str(ROOT / ".collections"))
from pyroute2 import IPRoute  # noqa: E402
from pyroute2 import netns as pyroute2_netns  # noqa: E402

# Runs a module file as Ansible's module process does, and reports where the time went: the
# module's body (everything between AnsibleModule's argument parsing and exit_json, elapsed and
# CPU), and the phases around it (imports, Ansible's argument validation, result handling).
RUNNER = r"""
import time
_t0 = time.perf_counter()
import json, runpy, sys
import ansible.module_utils.basic as basic
from ansible_collections.overlay.vxlan.plugins.module_utils import _netlink
phases = {"imports": time.perf_counter() - _t0}
_init, _exit, _run = basic.AnsibleModule.__init__, basic.AnsibleModule.exit_json, _netlink.run_module
def init(self, *args, **kwargs):
    start = time.perf_counter()
    _init(self, *args, **kwargs)
    phases["arguments"] = time.perf_counter() - start
def exit_json(self, **kwargs):
    start = time.perf_counter()
    try:
        _exit(self, **kwargs)
    finally:
        phases["result"] = time.perf_counter() - start
        sys.stderr.write("OVX_PHASES %s\n" % json.dumps(phases))
def run_module(module, body):
    def timed():
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return body()
        finally:
            phases["own"] = time.perf_counter() - start
            sys.stderr.write("OVX_MODULE_TIME %.6f %.6f\n" % (phases["own"], time.process_time() - cpu))
    return _run(module, timed)
basic.AnsibleModule.__init__, basic.AnsibleModule.exit_json, _netlink.run_module = init, exit_json, run_module
path = sys.argv[1]
sys.argv = [path]
runpy.run_path(path, run_name="__main__")
"""

PLAYBOOK = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: One entry per task
      overlay.vxlan.{module}:
        netns: "{{{{ bench_netns }}}}"
        dev: vxlan0
        entries: ["{{{{ item }}}}"]
      loop: "{{{{ bench_entries }}}}"
"""


class NamespaceLost(Exception):
    """The bed's namespace vanished (something else on the machine removed it)."""


class Bed:
    """A namespace with eth0 (veth, 10.255.0.1/16) and vxlan0 (VNI 100, port 4789) on it."""

    def __init__(self):
        self.name = "ovxb-%s" % uuid.uuid4().hex[:8]
        self.owner = os.getpid()
        self.build()

    def build(self) -> None:
        pyroute2_netns.create(self.name)
        with IPRoute(netns=self.name, flags=0) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            ipr.link("add", ifname="eth0", kind="veth", peer="eth0-peer")
            eth0 = ipr.link_lookup(ifname="eth0")[0]
            ipr.addr("add", index=eth0, address="10.255.0.1", prefixlen=16)
            ipr.link("set", index=eth0, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname="eth0-peer")[0], state="up")
        self.reset()

    def reset(self) -> None:
        """A fresh vxlan0: empty fdb and neighbour tables."""
        if not os.path.exists("/run/netns/" + self.name):
            raise NamespaceLost(self.name)
        with IPRoute(netns=self.name, flags=0) as ipr:
            for index in ipr.link_lookup(ifname="vxlan0"):
                ipr.link("del", index=index)
            eth0 = ipr.link_lookup(ifname="eth0")[0]
            ipr.link("add", ifname="vxlan0", kind="vxlan", vxlan_id=100, vxlan_port=4789, vxlan_link=eth0,
                     vxlan_local="10.255.0.1", vxlan_learning=0, vxlan_proxy=1)
            ipr.link("set", index=ipr.link_lookup(ifname="vxlan0")[0], state="up")

    def count(self, module: str) -> int:
        if module == "bridge_fdb":
            out = subprocess.run(["bridge", "-n", self.name, "fdb", "show", "dev", "vxlan0"], capture_output=True, text=True, check=True).stdout
            return sum(1 for line in out.splitlines() if " dst " in line and "permanent" in line)
        out = subprocess.run(["ip", "-n", self.name, "neigh", "show", "dev", "vxlan0", "nud", "permanent"],
                             capture_output=True, text=True, check=True).stdout
        return len(out.splitlines())

    def remove(self) -> None:
        if os.getpid() == self.owner and os.path.exists("/run/netns/" + self.name):
            pyroute2_netns.remove(self.name)


def fdb_entries(count: int) -> list[dict]:
    """A static mesh: 16 flood-list entries, the rest unicast MACs spread over 250 VTEPs."""
    flood = min(16, count)
    entries = [{"mac": "00:00:00:00:00:00", "dst": "10.1.0.%d" % (i + 1)} for i in range(flood)]
    for i in range(count - flood):
        entries.append({"mac": "02:00:%02x:%02x:%02x:%02x" % (i >> 24 & 255, i >> 16 & 255, i >> 8 & 255, i & 255),
                        "dst": "10.1.1.%d" % (i % 250 + 1)})
    return entries


def neigh_entries(count: int) -> list[dict]:
    return [{"ip": "100.64.%d.%d" % (i >> 8 & 255, i & 255), "lladdr": "02:00:64:%02x:%02x:%02x" % (i >> 16 & 255, i >> 8 & 255, i & 255)}
            for i in range(1, count + 1)]


def batch_lines(module: str, entries: list[dict]) -> str:
    if module == "bridge_fdb":
        return "".join("fdb %s %s dev vxlan0 dst %s self permanent\n" % ("append" if e["mac"] == "00:00:00:00:00:00" else "replace", e["mac"], e["dst"])
                       for e in entries)
    return "".join("neigh replace %s lladdr %s dev vxlan0 nud permanent\n" % (e["ip"], e["lladdr"]) for e in entries)


class Timing(NamedTuple):
    """Elapsed seconds and CPU seconds (user + system, the kernel's netlink work included: it
    runs in the sender's context) of one measurement."""

    wall: float
    cpu: float

    def __str__(self) -> str:
        return "%.3f s (%.3f CPU)" % (self.wall, self.cpu)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_run(argv: list[str], **kwargs) -> tuple[subprocess.CompletedProcess, Timing]:
    cpu, start = children_cpu(), time.perf_counter()
    proc = subprocess.run(argv, **kwargs)
    return proc, Timing(time.perf_counter() - start, children_cpu() - cpu)


def run_module(bed: Bed, module: str, entries: list[dict]) -> tuple[Timing, Timing, dict]:
    """(whole process, module body, result) of one module run."""
    payload = json.dumps({"ANSIBLE_MODULE_ARGS": {"netns": bed.name, "dev": "vxlan0", "entries": entries, "state": "exact",
                                                  "_ansible_check_mode": False, "_ansible_diff": False}})
    env = dict(os.environ, PYTHONPATH=str(ROOT / ".collections"))
    proc, process = timed_run([PYTHON, "-c", RUNNER, str(ROOT / "plugins" / "modules" / ("%s.py" % module))],
                              input=payload, capture_output=True, text=True, env=env, check=False)
    result = json.loads(proc.stdout)
    if result.get("failed") and not os.path.exists("/run/netns/" + bed.name):
        raise NamespaceLost(bed.name)
    if result.get("failed"):
        raise SystemExit("%s failed: %s" % (module, result.get("msg")))
    own = next(line.split()[1:3] for line in proc.stderr.splitlines() if line.startswith("OVX_MODULE_TIME"))
    result["_phases"] = json.loads(next(line.split(None, 1)[1] for line in proc.stderr.splitlines() if line.startswith("OVX_PHASES")))
    result["_phases"]["start"] = process.wall - sum(result["_phases"].values())
    return process, Timing(float(own[0]), float(own[1])), result


def run_batch(bed: Bed, module: str, entries: list[dict]) -> Timing:
    with tempfile.NamedTemporaryFile("w", suffix=".batch", delete=False) as handle:
        handle.write(batch_lines(module, entries))
    tool = "bridge" if module == "bridge_fdb" else "ip"
    try:
        return timed_run([tool, "-n", bed.name, "-batch", handle.name], check=True)[1]
    finally:
        os.unlink(handle.name)


def run_loop(bed: Bed, module: str, entries: list[dict]) -> Timing:
    """An ansible-playbook run looping one task per entry (CPU: the controller and every module process)."""
    with tempfile.TemporaryDirectory() as tmp:
        playbook = Path(tmp) / "loop.yml"
        playbook.write_text(PLAYBOOK.format(module=module))
        extra = Path(tmp) / "vars.json"
        extra.write_text(json.dumps({"bench_netns": bed.name, "bench_entries": entries}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        proc, timing = timed_run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                                  "-e", "ansible_python_interpreter=%s" % PYTHON, "-e", "@%s" % extra, str(playbook)],
                                 cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode and not os.path.exists("/run/netns/" + bed.name):
        raise NamespaceLost(bed.name)
    if proc.returncode:
        raise SystemExit("task loop failed:\n%s" % proc.stdout[-3000:])
    return timing


def best_of(repeat: int, measure, bed: Bed, *args):
    """The fastest of `repeat` runs (by elapsed time): the cost without interference from
    whatever else the machine is doing, the same rule for the modules and for iproute2. A run
    whose namespace vanished is repeated on a rebuilt one."""
    samples, lost = [], 0
    while len(samples) < repeat:
        try:
            samples.append(measure(bed, *args))
        except NamespaceLost:
            lost += 1
            if lost > 20:
                raise SystemExit("the benchmark's namespace keeps vanishing") from None
            print("  (namespace %s vanished; rebuilding it)" % bed.name, file=sys.stderr)
            time.sleep(2)
            try:
                bed.build()
            except (NamespaceLost, OSError):
                continue
    return min(samples, key=lambda sample: sample[0].wall if isinstance(sample, tuple) and isinstance(sample[0], Timing) else sample.wall)


def measure_apply(bed: Bed, module: str, entries: list[dict]) -> tuple[Timing, Timing, dict]:
    bed.reset()
    process, own, result = run_module(bed, module, entries)
    assert result["changed"] and bed.count(module) == len(entries), (result.get("msg"), bed.count(module))
    return process, own, result["_phases"]


def measure_rerun(bed: Bed, module: str, entries: list[dict]) -> tuple[Timing, Timing, dict]:
    process, own, result = run_module(bed, module, entries)
    assert result["changed"] is False and bed.count(module) == len(entries)
    return process, own, result["_phases"]


def measure_batch(bed: Bed, module: str, entries: list[dict]) -> Timing:
    bed.reset()
    timing = run_batch(bed, module, entries)
    assert bed.count(module) == len(entries)
    return timing


def measure_loop(bed: Bed, module: str, entries: list[dict]) -> Timing:
    bed.reset()
    timing = run_loop(bed, module, entries)
    if not os.path.exists("/run/netns/" + bed.name):
        raise NamespaceLost(bed.name)
    assert bed.count(module) == len(entries)
    return timing


def bench(module: str, sizes: list[int], repeat: int, loop_size: int) -> dict:
    make = fdb_entries if module == "bridge_fdb" else neigh_entries
    bed = Bed()
    rows = []
    try:
        for size in sizes:
            entries = make(size)
            apply_process, apply_own, apply_phases = best_of(repeat, measure_apply, bed, module, entries)
            rerun_process, rerun_own, rerun_phases = best_of(repeat, measure_rerun, bed, module, entries)
            batch = best_of(repeat, measure_batch, bed, module, entries)
            rows.append({"entries": size, "apply_process": apply_process, "apply_own": apply_own, "apply_phases": apply_phases,
                         "rerun_process": rerun_process, "rerun_own": rerun_own, "rerun_phases": rerun_phases, "batch": batch})
            print("  %-10s %6d entries: apply %s, own %s; re-run %s, own %s; iproute2 batch %s"
                  % (module, size, apply_process, apply_own, rerun_process, rerun_own, batch), file=sys.stderr)
        loop = None
        if loop_size:
            entries = make(loop_size)
            many = best_of(1, measure_loop, bed, module, entries)
            one = best_of(1, measure_loop, bed, module, entries[:1])
            loop = {"items": loop_size, "total": many, "one": one,
                    "per_entry": Timing((many.wall - one.wall) / (loop_size - 1), (many.cpu - one.cpu) / (loop_size - 1))}
            print("  %-10s task loop: %d tasks %s, one task %s" % (module, loop_size, many, one), file=sys.stderr)
    finally:
        bed.remove()
    return {"module": module, "rows": rows, "loop": loop}


NOTES = """\
### Reading the targets

The module's own work (validate every entry, read the table once, diff in memory, apply in one
pipelined netlink session) meets both throughput targets. The whole module process does not reach
2x of `bridge -batch` / `ip -batch` at 10,000 entries, and its no-change re-run is close to 1 s,
because of what every Ansible module process in Python pays and `bridge -batch` does not (the
breakdown lines above): the interpreter and the imports of `ansible.module_utils.basic` and
pyroute2 (a fixed ~0.2-0.3 s), Ansible validating each of the 10,000 entries against the
suboptions, and Ansible's result handling, which scrubs and serialises the returned `entries`
(10,000 dicts) and the echoed 10,000-entry `invocation`. Since then (the fleet change) the
result carries the whole table only with `return_entries: true`, and the `rows` option gives
the entries as strings checked by the module's own pass instead of the suboptions: see "Fleet
scale" for both, measured through a whole `ansible-playbook` run.
"""

PHASES = (
    ("start", "interpreter start and reading the arguments"),
    ("imports", "imports (ansible.module_utils.basic, pyroute2)"),
    ("arguments", "Ansible's argument validation (every entry against the suboptions)"),
    ("own", "the module's own work"),
    ("result", "Ansible's result handling (no_log scrubbing and JSON of the result and of the echoed arguments)"),
)


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def report(results: list[dict]) -> str:
    lines = []
    for res in results:
        module, tool = res["module"], ("bridge -batch" if res["module"] == "bridge_fdb" else "ip -batch")
        lines += ["", "### %s" % module, "",
                  "Seconds elapsed, CPU seconds (user + system) in brackets.", "",
                  "| entries | apply: module process | apply: module's own | no-change re-run: module process | re-run: module's own "
                  "| `%s` | own ÷ batch (elapsed, CPU) |" % tool,
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for row in res["rows"]:
            lines.append("| %d | %s | %s | %s | %s | %s | %.2fx, %.2fx |" % (
                row["entries"], row["apply_process"], row["apply_own"], row["rerun_process"], row["rerun_own"], row["batch"],
                row["apply_own"].wall / row["batch"].wall, row["apply_own"].cpu / max(row["batch"].cpu, 1e-6)))
        largest = max(res["rows"], key=lambda row: row["entries"])
        own, process, batch = largest["apply_own"], largest["apply_process"], largest["batch"]
        lines += ["", "Targets at %d entries:" % largest["entries"], ""]
        lines.append("- apply within 2x of `%s`: the module's own work takes %.2fx its elapsed time (%s) and %.2fx its CPU time (%s); "
                     "the whole module process, with the interpreter start, imports and Ansible's argument and result handling, %.2fx (%s)"
                     % (tool, own.wall / batch.wall, verdict(own.wall <= 2 * batch.wall), own.cpu / batch.cpu, verdict(own.cpu <= 2 * batch.cpu),
                        process.wall / batch.wall, verdict(process.wall <= 2 * batch.wall)))
        lines.append("- no-change re-run under 1 s: module's own time %.3f s (%s); whole module process %.3f s (%s)"
                     % (largest["rerun_own"].wall, verdict(largest["rerun_own"].wall < 1), largest["rerun_process"].wall,
                        verdict(largest["rerun_process"].wall < 1)))
        lines.append("- where the whole module process's time goes at %d entries (apply / no-change re-run): %s"
                     % (largest["entries"], "; ".join("%s %.3f / %.3f s" % (label, largest["apply_phases"][key], largest["rerun_phases"][key])
                                                      for key, label in PHASES)))
        if res["loop"]:
            task = res["loop"]["per_entry"]
            per_entry = Timing(process.wall / largest["entries"], process.cpu / largest["entries"])
            speedup, speedup_cpu = task.wall / per_entry.wall, task.cpu / per_entry.cpu
            lines.append("- per entry at least 100x cheaper than a task loop: one task per entry costs %.0f ms (%.0f ms CPU) "
                         "(%d-item loop %s, one-item loop %s); the module costs %.3f ms (%.3f ms CPU) per entry (whole process, %d entries): "
                         "%.0fx elapsed, %.0fx CPU (%s)"
                         % (task.wall * 1000, task.cpu * 1000, res["loop"]["items"], res["loop"]["total"], res["loop"]["one"],
                            per_entry.wall * 1000, per_entry.cpu * 1000, largest["entries"], speedup, speedup_cpu,
                            verdict(min(speedup, speedup_cpu) >= 100)))
    return "\n".join(lines) + "\n"


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?")
    return "%s, %d CPUs, kernel %s, Python %s, %s" % (cpu, os.cpu_count(), platform.release(), platform.python_version(),
                                                       datetime.date.today().isoformat())


def write_docs(body: str) -> None:
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    section = SECTION + "\n\n" + body.strip() + "\n"
    if SECTION in text:
        start = text.index(SECTION)
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + ("\n" + text[end + 1:] if end != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOCS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement; the fastest is reported")
    parser.add_argument("--loop", type=int, default=200, help="items in the task-loop measurement (0: skip it)")
    parser.add_argument("--modules", nargs="+", default=["bridge_fdb", "ip_neigh"], choices=["bridge_fdb", "ip_neigh"])
    parser.add_argument("--write-docs", action="store_true", help="replace the section %r of docs/benchmarks.md" % SECTION)
    opts = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    # SIGTERM too unwinds through the `finally` that removes the namespace, in this process
    # only: pyroute2 forks helpers (netns.create) that inherit the handler and the stack, and a
    # helper unwinding through that `finally` would remove the namespace under the benchmark.
    main_pid = os.getpid()

    def on_sigterm(signum, frame):
        if os.getpid() != main_pid:
            os._exit(128 + signum)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)

    load = os.getloadavg()[0]
    results = [bench(module, opts.sizes, opts.repeat, opts.loop) for module in opts.modules]
    intro = ("Measured by `benchmarks/modules_bench.py` on %s (load average %.1f when it started). Fastest of %d runs; "
             "`state: exact`, no diff, in a throwaway namespace with vxlan0. \"Module process\" is the module process as Ansible runs it "
             "(interpreter start, imports, Ansible's argument parsing, the work, result serialisation); \"module's own\" is the "
             "module body (validation of every entry, one read of the table, the in-memory diff, the pipelined netlink apply). "
             "CPU time includes the kernel's netlink work, which runs in the sending process; on a machine busy with other work it "
             "is the fairer comparison." % (machine(), load, opts.repeat))
    body = intro + "\n" + report(results) + "\n" + NOTES
    print(body)
    if opts.write_docs:
        from quiet import refuse_noisy  # noqa: PLC0415

        refuse_noisy({"modules_bench": load}, "the section %r" % SECTION)
        write_docs(body)
        print("written to %s" % DOCS.relative_to(ROOT), file=sys.stderr)


if __name__ == "__main__":
    main()
