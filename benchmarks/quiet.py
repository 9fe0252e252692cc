"""The quiet-machine rule of every benchmark: a figure is published (written into
docs/benchmarks.md) only when the 1-minute load average was at most QUIET_LOAD when its
measurement started. On 2 shared CPUs a run started under load measures the other work as much
as ours: figures taken at load 20 are noise, and two runs at different loads cannot be compared.

The benchmarks record the load average as text, "1.2 / 0.8 / 0.5" (1, 5 and 15 minutes), or as a
number; `refuse_noisy` reads the first figure. Raw results are always kept (benchmarks/results/,
--output): only the docs are refused, with a message naming what, when and the load.
"""

from __future__ import annotations

import os
import re

QUIET_LOAD = 1.5
_FIRST_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)")


class NoisyMachine(SystemExit):
    """Raised instead of writing docs from figures taken on a busy machine."""


def load_text() -> str:
    """The load average now, as the benchmarks record it."""
    return "%.1f / %.1f / %.1f" % os.getloadavg()


def start_load(recorded) -> float | None:
    """The 1-minute load average from a recorded value (text or number); None if unreadable."""
    if isinstance(recorded, bool):
        return None
    if isinstance(recorded, (int, float)):
        return float(recorded)
    match = _FIRST_NUMBER.match(str(recorded or ""))
    return float(match.group(1)) if match else None


def noisy(loads: dict) -> dict:
    """{what: recorded load} of the measurements that may not be published: started above
    QUIET_LOAD, or with no readable load (a result that does not say is not trusted)."""
    out = {}
    for what, recorded in loads.items():
        value = start_load(recorded)
        if value is None or value > QUIET_LOAD:
            out[what] = recorded
    return out


def refuse_noisy(loads: dict, target: str) -> None:
    """Raise NoisyMachine (exit status 1, the message on stderr) naming every measurement of `loads` ({what: load
    recorded at its start}) taken above QUIET_LOAD; return quietly when all may be published."""
    bad = noisy(loads)
    if bad:
        raise NoisyMachine(
            "benchmarks: not writing %s: %s started with the load average above %.1f (%s); figures taken on a busy "
            "machine are not published. The raw results are kept; measure again on a quiet machine (no tests, labs or "
            "other benchmarks running; `uptime` under %.1f)." % (
                target, ", ".join(sorted(bad)), QUIET_LOAD,
                "; ".join("%s: %s" % (what, bad[what] if bad[what] not in (None, "") else "not recorded") for what in sorted(bad)),
                QUIET_LOAD))
