# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Counters, miss-to-entry latency percentiles, and the metrics file `status` reads."""

from __future__ import annotations

import json
import os
import time

from overlay_vxlan_agent import __version__


def percentile(sorted_values, fraction: float):
    """Nearest-rank percentile of an already sorted list; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, int(-(-fraction * len(sorted_values) // 1)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Metrics:
    """Counters and a ring of recent miss-to-entry latencies (microseconds)."""

    COUNTERS = ("misses_seen", "misses_answered", "misses_unknown", "misses_local", "misses_l2", "misses_l3",
                "announcements_sent", "records_rejected", "records_untrusted", "records_unserved",
                "records_over_cap", "entries_installed", "entries_removed",
                "kernel_errors", "store_errors", "events_lost", "resyncs")

    def __init__(self, ring: int = 4096):
        self.counters = dict.fromkeys(self.COUNTERS, 0)
        self.latencies: list = []
        self.ring = ring
        self.started = time.time()
        self.store_state = "unknown"
        self.store_since = time.time()
        self.cache_size = 0
        self.owned = {"neigh": 0, "fdb": 0}

    def inc(self, name: str, amount: int = 1):
        self.counters[name] += amount

    def latency(self, microseconds: float):
        self.latencies.append(round(microseconds, 1))
        if len(self.latencies) > self.ring:
            del self.latencies[: len(self.latencies) - self.ring]

    def set_store(self, state: str):
        if state != self.store_state:
            self.store_state = state
            self.store_since = time.time()

    def snapshot(self) -> dict:
        ordered = sorted(self.latencies)
        return {
            "version": __version__,
            "pid": os.getpid(),
            "started": self.started,
            "updated": time.time(),
            "counters": dict(self.counters),
            "resolve_latency_us": {
                "count": len(ordered),
                "p50": percentile(ordered, 0.50),
                "p99": percentile(ordered, 0.99),
                "max": ordered[-1] if ordered else None,
                "recent": self.latencies[-1000:],
            },
            "store": {"state": self.store_state, "since": self.store_since},
            "cache_size": self.cache_size,
            "owned": dict(self.owned),
        }

    def write(self, path: str):
        if not path:
            return
        data = json.dumps(self.snapshot(), sort_keys=True)
        tmp = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(data)
        os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
