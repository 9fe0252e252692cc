#!/usr/bin/env python3
"""pyroute2 against the collection's lean pipelined path (_fastnl), for N fdb entries.

Answers one question: is pyroute2 the cost when a module or the lab writes a large table? In a
throwaway namespace (eth0 veth + vxlan0, nothing in the machine's own namespace), for the same
N permanent NTF_SELF fdb entries (unicast MACs spread over 250 VTEPs):

  pyroute2 replace   IPRoute.fdb("replace", ...) once per entry (one request, one ACK each)
  lean replace       _fastnl.NeighSocket.apply(): windows of 1,024 requests per sendmsg, only
                     the last of each window ACKed
  pyroute2 dump      IPRoute.fdb("dump") of the table, parsed into pyroute2 messages
  lean dump          _fastnl.NeighSocket.dump(AF_BRIDGE), parsed into plain dicts

Each row is the median of --repeat runs on a fresh vxlan0 (wall clock, this process only).

    sudo .venv/bin/python benchmarks/netlink_bench.py                 # 10,000 entries
    sudo .venv/bin/python benchmarks/netlink_bench.py --entries 1000 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".collections"))

from pyroute2 import IPRoute  # noqa: E402
from pyroute2 import netns as pyroute2_netns  # noqa: E402

from ansible_collections.overlay.vxlan.plugins.module_utils import _fastnl as nl  # noqa: E402


def entries(count: int) -> list[tuple[str, str]]:
    return [("02:%02x:%02x:%02x:00:01" % (i >> 16 & 0xFF, i >> 8 & 0xFF, i & 0xFF), "10.1.%d.%d" % (i % 250 // 250, i % 250 + 1))
            for i in range(count)]


class Bed:
    """A namespace with eth0 (veth, 10.255.0.1/16) and vxlan0 (VNI 100) on it."""

    def __init__(self):
        self.name = "asnlb-%s" % uuid.uuid4().hex[:8]
        pyroute2_netns.create(self.name)
        with IPRoute(netns=self.name, flags=0) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            ipr.link("add", ifname="eth0", kind="veth", peer="eth0-peer")
            eth0 = ipr.link_lookup(ifname="eth0")[0]
            ipr.addr("add", index=eth0, address="10.255.0.1", prefixlen=16)
            ipr.link("set", index=eth0, state="up")

    def fresh_vxlan(self) -> int:
        with IPRoute(netns=self.name, flags=0) as ipr:
            for index in ipr.link_lookup(ifname="vxlan0"):
                ipr.link("del", index=index)
            eth0 = ipr.link_lookup(ifname="eth0")[0]
            ipr.link("add", ifname="vxlan0", kind="vxlan", vxlan_id=100, vxlan_port=4789, vxlan_link=eth0,
                     vxlan_local="10.255.0.1", vxlan_learning=0)
            index = ipr.link_lookup(ifname="vxlan0")[0]
            ipr.link("set", index=index, state="up")
            return index

    def count(self, index: int) -> int:
        with nl.NeighSocket(self.name) as sock:
            return sum(1 for e in sock.dump(nl.AF_BRIDGE) if e["ifindex"] == index and e["dst"] and e["flags"] & nl.NTF_SELF)

    def remove(self) -> None:
        if os.path.exists("/run/netns/" + self.name):
            pyroute2_netns.remove(self.name)


def pyroute2_replace(bed: Bed, index: int, table) -> float:
    with IPRoute(netns=bed.name, flags=0) as ipr:
        start = time.perf_counter()
        for mac, dst in table:
            ipr.fdb("replace", ifindex=index, lladdr=mac, dst=dst, state=nl.NUD_PERMANENT | nl.NUD_NOARP, flags=nl.NTF_SELF)
        return time.perf_counter() - start


def lean_replace(bed: Bed, index: int, table) -> float:
    with nl.NeighSocket(bed.name) as sock:
        start = time.perf_counter()
        requests = [nl.fdb_request("replace", index, mac, dst) for mac, dst in table]
        failures = sock.apply(requests)
        took = time.perf_counter() - start
    assert not failures, failures[:3]
    return took


def pyroute2_dump(bed: Bed, index: int) -> float:
    with IPRoute(netns=bed.name, flags=0) as ipr:
        start = time.perf_counter()
        found = [m for m in ipr.fdb("dump") if m["ifindex"] == index]
        took = time.perf_counter() - start
    assert found
    return took


def lean_dump(bed: Bed, index: int) -> float:
    with nl.NeighSocket(bed.name) as sock:
        start = time.perf_counter()
        found = [e for e in sock.dump(nl.AF_BRIDGE) if e["ifindex"] == index]
        took = time.perf_counter() - start
    assert found
    return took


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--entries", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (a network namespace)")
    table = entries(args.entries)
    results = {"pyroute2 replace": [], "lean replace": [], "pyroute2 dump": [], "lean dump": []}
    bed = Bed()
    try:
        for _ in range(args.repeat):
            for name, write in (("pyroute2", pyroute2_replace), ("lean", lean_replace)):
                index = bed.fresh_vxlan()
                results[name + " replace"].append(write(bed, index, table))
                assert bed.count(index) == len(table)
                results[name + " dump"].append((pyroute2_dump if name == "pyroute2" else lean_dump)(bed, index))
    finally:
        bed.remove()
    print("%d fdb entries, median of %d (load average %s)" % (len(table), args.repeat, " / ".join("%.1f" % x for x in os.getloadavg())))
    print("%-18s %10s %14s" % ("", "seconds", "us per entry"))
    for name, values in results.items():
        median = statistics.median(values)
        print("%-18s %10.3f %14.1f" % (name, median, median * 1e6 / len(table)))
    ratio = statistics.median(results["pyroute2 replace"]) / statistics.median(results["lean replace"])
    print("pyroute2 / lean (replace): %.1fx" % ratio)
    return 0


if __name__ == "__main__":
    sys.exit(main())
