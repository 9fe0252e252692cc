#!/usr/bin/env python3
"""Converge scaling: the collection's static-mode converge against a baseline of ip/bridge commands.

For each lab size N (3, 8, 16, 32 hosts; inventory like inventories/lab: groups lab > overlay,
network blue / VNI 100 / br1 / vxlan0, one VM ns1 per host at 100.0.0.(i+1)/24 with its MAC):

- collection, on a fresh lab: the converge (roles endpoint + vxlan, molecule/resources/converge.yml,
  vxlan_mode=static), then the same again (no-change re-run, must report changed=0), then
  playbooks/verify.yml once (ping matrix, MTU proof, table checks), timed on its own;
- baseline, on another fresh lab: benchmarks/baseline/static.yml (the source's `ip`/`bridge`
  commands through ansible.builtin.command in loops), then playbooks/verify.yml (the same
  checks: the baseline builds the same overlay), then the baseline again as is (it fails:
  no idempotence), then again with baseline_guarded=true (re-runnable the way a user makes it:
  every command runs again, "already there" errors ignored).

Wall time is the whole `ansible-playbook` process. Tasks and module runs per host come from the
recap and from benchmarks/callback_plugins/bench_count.py (a loop is one task and one module run
per item; set_fact/assert/include run on the controller and are not module runs).

    .venv/bin/python benchmarks/converge_bench.py                  # 3 8 16 32, JSON on stdout
    .venv/bin/python benchmarks/converge_bench.py --sizes 3 8 --no-baseline
    .venv/bin/python benchmarks/converge_bench.py --sizes 32 --profile /tmp/prof   # cProfile the controller

Labs are named bench<hex>, made with playbooks/lab.yml and always destroyed (try/finally).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from lab_fixtures import ANSIBLE_PLAYBOOK, Lab, recap, underlay_ip  # noqa: E402

CONVERGE = ROOT / "molecule" / "resources" / "converge.yml"
VERIFY = ROOT / "playbooks" / "verify.yml"
BASELINE = ROOT / "benchmarks" / "baseline" / "static.yml"
CALLBACKS = ROOT / "benchmarks" / "callback_plugins"
SIZES = (3, 8, 16, 32)

GROUP_VARS_LAB = """---
ansible_connection: overlay.vxlan.lab
ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
lab_name: {lab_name}
lab_underlay_prefix: 24
"""

GROUP_VARS_OVERLAY = """---
vxlan_mode: static
vxlan_underlay_dev: eth0
vxlan_networks:
  - name: blue
    vni: 100
    bridge: br1
    vxlan_dev: vxlan0
    dstport: 4789
    group: 239.1.1.1
"""


def vm_address(index: int) -> str:
    return "100.0.0.%d" % (index + 1)


def vm_mac(index: int) -> str:
    """The collection's derivation (02:00 + the four octets), written out for the baseline."""
    return "02:00:" + ":".join("%02x" % int(octet) for octet in vm_address(index).split("."))


def write_inventory(directory: Path, lab_name: str, size: int, controller: bool = False) -> tuple[Path, dict[str, str]]:
    """An inventory of `size` hosts h1..hN in the shape of inventories/lab (hosts.yml + group_vars);
    with `controller`, also host ctl (the next underlay address) in group controller, as DOVE needs."""
    if not 1 <= size <= 253 - controller:
        raise ValueError("1..253 hosts (one /24 underlay and one /24 of VMs)")
    hosts = {"h%d" % i: underlay_ip(i) for i in range(1, size + 1)}
    lines = ["---", "all:", "  children:", "    lab:", "      children:", "        overlay:"]
    if controller:
        lines += ["        controller:", "    controller:", "      hosts:", "        ctl:",
                  "          vxlan_underlay_ip: %s" % underlay_ip(size + 1)]
    lines += ["    overlay:", "      hosts:"]
    for i, (name, ip) in enumerate(hosts.items(), 1):
        lines += ["        %s:" % name,
                  "          vxlan_underlay_ip: %s" % ip,
                  "          vxlan_endpoints:",
                  "            - {network: blue, namespace: ns1, host_if: tap1, vm_if: tap2, address: %s/24, mac: '%s'}"
                  % (vm_address(i), vm_mac(i))]
    (directory / "group_vars").mkdir(parents=True, exist_ok=True)
    (directory / "hosts.yml").write_text("\n".join(lines) + "\n")
    (directory / "group_vars" / "lab.yml").write_text(GROUP_VARS_LAB.format(lab_name=lab_name))
    (directory / "group_vars" / "overlay.yml").write_text(GROUP_VARS_OVERLAY)
    return directory / "hosts.yml", dict(hosts, ctl=underlay_ip(size + 1)) if controller else hosts


def bench_lab_name() -> str:
    return "bench" + uuid.uuid4().hex[:6]


def run_playbook(lab: Lab, playbook: Path, *extra: str, profile: Path | None = None, cwd: Path = ROOT) -> dict:
    """One timed ansible-playbook run against the lab: wall time, rc, recap, counts."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        count_file = handle.name
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", PY_COLORS="0",
               ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS), ANSIBLE_CALLBACKS_ENABLED="bench_count", BENCH_COUNT_FILE=count_file)
    argv = [ANSIBLE_PLAYBOOK, "-i", str(lab.inventory), str(playbook), "-e", "lab_name=%s" % lab.name, *extra]
    if profile is not None:
        argv = [sys.executable, "-m", "cProfile", "-o", str(profile)] + argv
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = _run_group(argv, cwd, env)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            counts = json.loads(Path(count_file).read_text() or "{}")
        except ValueError:
            counts = {}
    finally:
        os.unlink(count_file)
    stats = recap(proc.stdout)
    hosts = [h for h in lab.hosts if h in stats]
    per_host = counts.get("hosts", {})

    def mean(values):
        values = list(values)
        return round(sum(values) / len(values), 2) if values else 0

    return {
        "wall": round(wall, 3),
        # CPU seconds of ansible-playbook and everything it ran (workers, nsenter, modules): the
        # cost without the waiting, less sensitive to what else runs on the machine than wall time.
        "cpu": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 3),
        "rc": proc.returncode,
        "hosts_failed": sum(1 for h in hosts if stats[h]["failed"] or stats[h]["unreachable"]),
        "changed_total": sum(stats[h]["changed"] for h in hosts),
        "tasks_per_host": mean(per_host.get(h, {}).get("tasks", 0) for h in hosts),
        "module_runs_per_host": mean(per_host.get(h, {}).get("module_runs", 0) for h in hosts),
        "recap_ok_per_host": mean(stats[h]["ok"] for h in hosts),
        "by_action_per_host": {a: mean(per_host.get(h, {}).get("by_action", {}).get(a, 0) for h in hosts)
                               for a in sorted({a for h in per_host.values() for a in h.get("by_action", {})})},
        "slowest_tasks": sorted(counts.get("tasks", []), key=lambda t: -t["seconds"])[:6],
        "tail": proc.stdout[-2500:] if proc.returncode else "",
        # Each failed task's message (the tail rarely holds it on a long play).
        "failures": [proc.stdout[at:at + 1500] for at in _failure_offsets(proc.stdout)][:6] if proc.returncode else [],
    }


def _failure_offsets(stdout: str) -> list[int]:
    """Where each `fatal: [host]` / `failed: [host]` result starts, with its task's header."""
    offsets = []
    for marker in ("fatal: [", "failed: ["):
        at = stdout.find(marker)
        while at != -1:
            offsets.append(max(stdout.rfind("TASK [", 0, at), 0))
            at = stdout.find(marker, at + 1)
    return sorted(set(offsets))


def _run_group(argv: list, cwd: Path, env: dict, timeout: float = 1800) -> subprocess.CompletedProcess:
    """subprocess.run in a process group of its own: on Ctrl-C, SIGTERM or the timeout the whole
    group goes (ansible-playbook and its forked workers, which subprocess.run would leave running
    against a lab that is being destroyed)."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(5)
                break
            except subprocess.TimeoutExpired:
                continue
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def check(result: dict, what: str, changed_zero: bool = False) -> None:
    if result["rc"] != 0 or result["hosts_failed"]:
        raise SystemExit("%s failed (rc=%d)\n%s" % (what, result["rc"], result["tail"]))
    if changed_zero and result["changed_total"]:
        raise SystemExit("%s: a no-change re-run reported changed=%d" % (what, result["changed_total"]))


class BenchLab:
    """A lab of `size` hosts with the benchmark inventory, destroyed on exit even on failure."""

    def __init__(self, size: int, tmp: Path):
        name = bench_lab_name()
        inventory, hosts = write_inventory(tmp / name, name, size)
        self.lab = Lab(name, inventory, hosts)

    def __enter__(self) -> Lab:
        try:
            self.lab.create()
        except BaseException:
            self.__exit__()
            raise
        return self.lab

    def __exit__(self, *exc) -> None:
        if self.lab.exists():
            proc = self.lab.destroy(check=False)
            if proc.returncode != 0 or self.lab.exists():
                print("WARNING: lab %s not removed:\n%s" % (self.lab.name, proc.stdout[-2000:]), file=sys.stderr)


def write_results(results, output: Path | None) -> None:
    """The JSON results to `output`, or to stdout (what benchmarks/report.py reads)."""
    text = json.dumps(results, indent=1)
    if output:
        output.write_text(text)
    else:
        print(text)


def log(message: str) -> None:
    print("converge_bench: %s" % message, file=sys.stderr, flush=True)


def bench_collection(size: int, tmp: Path, verify: bool, profile_dir: Path | None, root: Path = ROOT, tag: str = "collection") -> dict:
    """The roles of the collection at `root` (this checkout, or a worktree of an earlier commit)."""
    converge = root / CONVERGE.relative_to(ROOT)
    with BenchLab(size, tmp) as lab:
        prof = (lambda run: profile_dir / ("%s-%d-%s.prof" % (tag, size, run))) if profile_dir else (lambda run: None)
        first = run_playbook(lab, converge, "-e", "vxlan_mode=static", profile=prof("first"), cwd=root)
        check(first, "%s converge, %d hosts" % (tag, size))
        rerun = run_playbook(lab, converge, "-e", "vxlan_mode=static", profile=prof("rerun"), cwd=root)
        check(rerun, "%s re-run, %d hosts" % (tag, size), changed_zero=True)
        result = {"first": first, "rerun": rerun}
        if verify:
            result["verify"] = run_playbook(lab, VERIFY, "-e", "vxlan_mode=static")
            check(result["verify"], "verify after the collection, %d hosts" % size)
    log("%-10s %2d hosts: first %.1f s (cpu %.1f), re-run %.1f s (cpu %.1f)%s" % (
        tag, size, first["wall"], first["cpu"], rerun["wall"], rerun["cpu"], ", verify %.1f s" % result["verify"]["wall"] if verify else ""))
    return result


def sampled(result: dict, size: int, hosts_run: int) -> dict:
    """Record how many hosts ran; wall_all/cpu_all are the run scaled to every host of the lab."""
    scale = size / hosts_run
    return dict(result, hosts_run=hosts_run, wall_all=round(result["wall"] * scale, 3), cpu_all=round(result["cpu"] * scale, 3))


def bench_baseline(size: int, tmp: Path, verify: bool, asis: bool, sample: int) -> dict:
    """The baseline on a fresh lab. With 0 < sample < size only hosts h1..h<sample> run it (with
    the whole lab's mesh: each builds its full tables), and the time is scaled by size / sample:
    every host does the same work and the run is CPU-bound, so the time is linear in the hosts run."""
    hosts_run = sample if 0 < sample < size else size
    limit = ["--limit", ",".join("h%d" % i for i in range(1, hosts_run + 1))] if hosts_run < size else []
    with BenchLab(size, tmp) as lab:
        first = sampled(run_playbook(lab, BASELINE, *limit), size, hosts_run)
        check(first, "baseline, %d hosts" % size)
        result = {"first": first}
        if verify and hosts_run == size:
            result["verify"] = run_playbook(lab, VERIFY, "-e", "vxlan_mode=static")
            check(result["verify"], "verify after the baseline, %d hosts" % size)
        if asis:
            result["rerun_unguarded"] = sampled(run_playbook(lab, BASELINE, *limit), size, hosts_run)
        result["rerun"] = sampled(run_playbook(lab, BASELINE, *limit, "-e", "baseline_guarded=true"), size, hosts_run)
        check(result["rerun"], "guarded baseline re-run, %d hosts" % size)
    asis_text = ""
    if asis:
        asis_text = ", re-run as is %.1f s (rc=%d, %d of %d hosts failed)" % (
            result["rerun_unguarded"]["wall"], result["rerun_unguarded"]["rc"], result["rerun_unguarded"]["hosts_failed"], hosts_run)
    log("baseline   %2d hosts%s: first %.1f s%s, guarded re-run %.1f s%s" % (
        size, " (%d run, times scaled x%g)" % (hosts_run, size / hosts_run) if hosts_run < size else "",
        first["wall_all"], asis_text, result["rerun"]["wall_all"], ", verify %.1f s" % result["verify"]["wall"] if "verify" in result else ""))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--verify-sizes", type=int, nargs="*", default=[3],
                        help="sizes at which playbooks/verify.yml runs after the collection and after the baseline (default 3)")
    parser.add_argument("--asis-sizes", type=int, nargs="*", default=[3, 8],
                        help="sizes at which the baseline is also re-run as is, unguarded (it fails; default 3 8)")
    parser.add_argument("--baseline-sample", type=int, default=8,
                        help="above this many hosts the baseline runs on h1..hK only, its times scaled (0: every host; default 8)")
    parser.add_argument("--profile", type=Path, help="cProfile each collection run of ansible-playbook into this directory")
    parser.add_argument("--before", metavar="REF",
                        help="also measure the roles of this git commit (a temporary worktree), e.g. the one before a speed-up")
    parser.add_argument("--output", type=Path, help="write the JSON results here (default: stdout)")
    opts = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("needs root (the lab)")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if opts.profile:
        opts.profile.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="ovx-converge-") as tmp:
        before = None
        if opts.before:
            before = Path(tmp) / "before"
            rev = ["git", "rev-parse", "--short", opts.before + "^{commit}"]
            commit = subprocess.run(rev, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
            subprocess.run(["git", "worktree", "add", "--detach", str(before), commit], cwd=ROOT, capture_output=True, check=True)
        try:
            for size in opts.sizes:
                verify = size in opts.verify_sizes
                row = {"hosts": size, "collection": bench_collection(size, Path(tmp), verify, opts.profile)}
                if before is not None:
                    row["before"] = dict(bench_collection(size, Path(tmp), False, opts.profile, root=before, tag="before"), commit=commit)
                if not opts.no_baseline:
                    row["baseline"] = bench_baseline(size, Path(tmp), verify, size in opts.asis_sizes, opts.baseline_sample)
                results.append(row)
        finally:
            if before is not None:
                subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, capture_output=True, check=False)
    write_results(results, opts.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
