#!/usr/bin/env python3
"""Data plane of the overlay the collection builds: TCP throughput, MTU and first-ping time per mode.

On one 3-host lab (the source's topology, inventory of benchmarks/converge_bench.py), converged in
turn to each mode (multicast, flood, static, dove with the file backend) with the roles endpoint + vxlan:

- throughput: iperf3 TCP from h1's VM (ns1, 100.0.0.2) to h2's VM (100.0.0.3) over the overlay,
  and from h1 to h2 over the underlay (192.168.1.2 -> .3), alternated round by round so both
  see the same machine load; the ratio is overlay / underlay of the medians;
- MTU: binary search of the largest don't-fragment ping (`ping -M do -s`) that passes from h1's
  VM to h2's VM; payload + 28 must equal vxlan0's MTU (the underlay's minus 50);
- first ping: every VM's ARP cache flushed, then h1's VM pings each remote VM once; the time to
  the first echo reply (ARP resolution included) is measured by the same raw-socket pinger as
  benchmarks/dove_latency.py. In static mode the ARP request is answered by the local vxlan0
  (proxy); in multicast and flood modes it is flooded; in dove mode h1's vxlan0 tables are
  flushed too, so every first ping raises a miss that h1's agent answers (its miss-to-entry
  latency, p50/p99, is read from the agent's own metrics).

    .venv/bin/python benchmarks/dataplane_bench.py                       # JSON on stdout
    .venv/bin/python benchmarks/dataplane_bench.py --modes static --seconds 2 --rounds 1

The lab is named bench<hex> and always destroyed. Nothing runs outside the lab's namespaces.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from converge_bench import CONVERGE, BenchLab, check, run_playbook, vm_address, write_results  # noqa: E402
from lab_fixtures import Lab  # noqa: E402

PYTHON = sys.executable
MODES = ("multicast", "flood", "static", "dove")
# DOVE in the benchmark: the file backend (the agents read the inventory's endpoint map), so no
# controller is needed; benchmarks/dove_latency.py measures the etcd backend too.
MODE_VARS = {"dove": ["-e", "dove_backend=file"]}
VM_NS = "ns1"


def _first_ping_script() -> str:
    """The raw-socket pinger of benchmarks/dove_latency.py (one echo per target, RTT in ms)."""
    from dove_latency import MULTI_PING

    return MULTI_PING


def iperf(lab: Lab, server: str, client: str, address: str, seconds: float, netns: str | None) -> dict:
    """One iperf3 TCP test, client -> server; both in `netns` of their host (None: the host itself)."""
    argv = ["ip", "netns", "exec", netns] if netns else []
    proc = lab.spawn(server, *argv, "iperf3", "-s", "-1", "-B", address)
    try:
        for _attempt in range(50):
            out = lab.enter(client, "iperf3", "-c", address, "-t", str(seconds), "-O", "1", "-J", check=False, netns=netns,
                            timeout=seconds + 30)
            text = out.stdout + out.stderr
            if "refused" not in text:  # the server was not listening yet (iperf3 -J says so in its JSON, rc 0 or 1)
                break
            time.sleep(0.1)
        else:
            raise SystemExit("iperf3 server on %s never answered" % server)
    finally:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    report = json.loads(out.stdout)
    end = report.get("end", {})
    if "sum_received" not in end:
        raise SystemExit("iperf3 %s -> %s gave no result: %s" % (client, address, report.get("error") or out.stdout[-2000:]))
    return {"gbps": end["sum_received"]["bits_per_second"] / 1e9, "retransmits": end["sum_sent"].get("retransmits", 0)}


def df_ping(lab: Lab, host: str, target: str, payload: int, netns: str | None) -> bool:
    """A don't-fragment ping of `payload` bytes gets at least one reply (2 tries)."""
    proc = lab.enter(host, "ping", "-n", "-q", "-M", "do", "-c", "2", "-i", "0.2", "-W", "1", "-s", str(payload), target,
                     check=False, netns=netns)
    return proc.returncode == 0


def largest_df_ping(lab: Lab, host: str, target: str, netns: str | None, high: int = 9000) -> int:
    """Largest ICMP payload that passes with DF set (binary search); -1 if even 0 bytes fail."""
    if not df_ping(lab, host, target, 0, netns):
        return -1
    low = 0  # passes; `high` fails (beyond any MTU here)
    while high - low > 1:
        middle = (low + high) // 2
        if df_ping(lab, host, target, middle, netns):
            low = middle
        else:
            high = middle
    return low


def link_mtu(lab: Lab, host: str, dev: str, netns: str | None = None) -> int:
    return json.loads(lab.enter(host, "ip", "-j", "link", "show", dev, netns=netns).stdout)[0]["mtu"]


def flush_vtep(lab: Lab, host: str) -> None:
    """Empty a host's vxlan0 neighbour and per-MAC fdb entries (DOVE: the next packet is a miss)."""
    lab.enter(host, "ip", "neigh", "flush", "dev", "vxlan0", "nud", "all")
    for entry in json.loads(lab.enter(host, "bridge", "-j", "fdb", "show", "dev", "vxlan0").stdout):
        if entry.get("dst") and entry["mac"] != "00:00:00:00:00:00":
            lab.enter(host, "bridge", "fdb", "del", entry["mac"], "dev", "vxlan0", "dst", entry["dst"], check=False)


def first_pings(lab: Lab, rounds: int, misses: bool = False) -> dict:
    """First-ping RTTs (ms) from h1's VM to every remote VM, every VM's ARP cache flushed each
    round (and h1's vxlan0 tables too if `misses`)."""
    script = _first_ping_script()
    targets = [vm_address(i) for i in range(2, len(lab.hosts) + 1)]
    first, again, lost = [], [], 0
    for _ in range(rounds):
        for host in lab.hosts:
            lab.enter(host, "ip", "neigh", "flush", "all", netns=VM_NS)
        if misses:
            flush_vtep(lab, "h1")
        for sample in (first, again):  # the second pass finds the ARP entries in place
            out = lab.enter("h1", PYTHON, "-c", script, *targets, netns=VM_NS, timeout=60).stdout
            for rtt in json.loads(out).values():
                if rtt is None:
                    lost += 1
                else:
                    sample.append(rtt)

    def pct(values, fraction):
        values = sorted(values)
        return round(values[min(len(values) - 1, int(fraction * len(values)))], 3) if values else None

    return {"samples": len(first), "lost": lost, "p50_ms": pct(first, 0.50), "p99_ms": pct(first, 0.99),
            "max_ms": round(max(first), 3) if first else None, "resolved_p50_ms": pct(again, 0.50)}


def agent_latency(lab: Lab, host: str) -> dict:
    """The DOVE agent's own miss-to-entry figures (notification read -> entries ACKed), in µs."""
    path = Path("/run/overlay-vxlan-lab") / lab.name / host / "dove" / "metrics.json"
    for _ in range(30):  # the agent rewrites its metrics every second
        metrics = json.loads(path.read_text())
        if metrics["resolve_latency_us"]["count"]:
            break
        time.sleep(0.5)
    return dict(metrics["resolve_latency_us"], misses_answered=metrics["counters"]["misses_answered"])


def bench_mode(lab: Lab, mode: str, seconds: float, rounds: int, ping_rounds: int) -> dict:
    converge = run_playbook(lab, CONVERGE, "-e", "vxlan_mode=%s" % mode, *MODE_VARS.get(mode, []))
    check(converge, "converge in %s mode" % mode)
    h2_vm, h2_ul = vm_address(2), lab.hosts["h2"]
    lab.ping("h1", h2_vm, netns=VM_NS)  # the overlay works (and ARP / fdb learning is warm)
    overlay, underlay = [], []
    for _ in range(rounds):  # alternate so both paths see the same load
        underlay.append(iperf(lab, "h2", "h1", h2_ul, seconds, None))
        overlay.append(iperf(lab, "h2", "h1", h2_vm, seconds, VM_NS))
    over = statistics.median(r["gbps"] for r in overlay)
    under = statistics.median(r["gbps"] for r in underlay)
    payload = largest_df_ping(lab, "h1", h2_vm, VM_NS)
    underlay_payload = largest_df_ping(lab, "h1", h2_ul, None)
    result = {
        "mode": mode,
        "iperf_seconds": seconds,
        "overlay_gbps": round(over, 3),
        "underlay_gbps": round(under, 3),
        "ratio": round(over / under, 3) if under else None,
        "overlay_samples": [round(r["gbps"], 3) for r in overlay],
        "underlay_samples": [round(r["gbps"], 3) for r in underlay],
        "overlay_retransmits": sum(r["retransmits"] for r in overlay),
        "underlay_retransmits": sum(r["retransmits"] for r in underlay),
        "mtu": {
            "largest_df_payload": payload,
            "largest_df_packet": payload + 28 if payload >= 0 else None,
            "vxlan0_mtu": link_mtu(lab, "h1", "vxlan0"),
            "vm_mtu": link_mtu(lab, "h1", "tap2", VM_NS),
            "underlay_mtu": link_mtu(lab, "h1", "eth0"),
            "underlay_largest_df_packet": underlay_payload + 28 if underlay_payload >= 0 else None,
        },
        "first_ping": first_pings(lab, ping_rounds, misses=mode == "dove"),
        "converge_wall": converge["wall"],
    }
    if mode == "dove":
        time.sleep(1.5)  # one metrics interval, so the last round is in
        result["miss_to_entry_us"] = agent_latency(lab, "h1")
    result["mtu"]["equal"] = result["mtu"]["largest_df_packet"] == result["mtu"]["vxlan0_mtu"]
    print("dataplane_bench: %-9s overlay %.2f Gbit/s, underlay %.2f Gbit/s (%.0f%%), largest DF ping %s = vxlan0 MTU %d: %s, "
          "first ping p50 %.3f ms" % (mode, over, under, 100 * result["ratio"], result["mtu"]["largest_df_packet"],
                                      result["mtu"]["vxlan0_mtu"], result["mtu"]["equal"], result["first_ping"]["p50_ms"]),
          file=sys.stderr, flush=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--seconds", type=float, default=2, help="iperf3 seconds per test (after 1 s omitted)")
    parser.add_argument("--rounds", type=int, default=2, help="underlay/overlay test pairs per mode")
    parser.add_argument("--ping-rounds", type=int, default=20, help="first-ping rounds in multicast and flood modes (2 samples each)")
    parser.add_argument("--static-ping-rounds", type=int, default=60, help="first-ping rounds in static and dove modes (2 samples each)")
    parser.add_argument("--output", type=Path, help="write the JSON results here (default: stdout)")
    opts = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("needs root (the lab)")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    results = []
    with tempfile.TemporaryDirectory(prefix="ovx-dataplane-") as tmp, BenchLab(3, Path(tmp)) as lab:
        try:
            for mode in opts.modes:
                rounds = opts.static_ping_rounds if mode in ("static", "dove") else opts.ping_rounds
                results.append(bench_mode(lab, mode, opts.seconds, opts.rounds, rounds))
        finally:
            if "dove" in opts.modes:  # the switch to static stops the agents and removes their files
                run_playbook(lab, CONVERGE, "-e", "vxlan_mode=static")
    write_results(results, opts.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
