"""Kernel state as the linux_bridge / netns_veth / overlay_info tests compare it.

helpers.state_dump plus the removal of what the kernel changes by itself, with no module
touching anything, so "the kernel is exactly as before" can be asserted without flakiness:

- running timers (bridge gc/hello timers, a port's forward_delay_timer...) count down;
- IPv6 addresses leave the `tentative` state when duplicate address detection ends;
- carrier (LOWER_UP / NO-CARRIER) is operational state that linkwatch settles asynchronously
  after a port joins or a STP toggle (administrative UP stays compared);
- fdb entries that are not permanent/static were learned from traffic and age out;
- `self` fdb entries with a multicast MAC are the device's multicast memberships (IGMP/MLD),
  which the IP stacks join and leave on their own (e.g. on an MTU change).

Every piece of configuration (links and their attributes, MACs, MTUs, masters, addresses,
permanent fdb and neighbour entries) stays compared.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from helpers import state_dump as raw_state_dump
from helpers import unique

CARRIER_FLAGS = ("LOWER_UP", "NO-CARRIER")


def _without_timers(value):
    if isinstance(value, dict):
        return {k: _without_timers(v) for k, v in value.items() if not k.endswith("_timer") and k != "tentative"}
    if isinstance(value, list):
        return [_without_timers(v) for v in value]
    return value


def _configured_fdb(entry: dict) -> bool:
    if entry.get("state") not in ("permanent", "static"):
        return False
    multicast = int(entry["mac"].split(":")[0], 16) & 1
    return not (multicast and "self" in entry.get("flags", []) and "dst" not in entry)


def state_dump(ns: str) -> dict:
    dump = _without_timers(raw_state_dump(ns))
    for item in dump["links"] + dump["addrs"]:
        item["flags"] = [f for f in item.get("flags", []) if f not in CARRIER_FLAGS]
    dump["fdb"] = [entry for entry in dump["fdb"] if _configured_fdb(entry)]
    return dump


def differences(before, after, path="") -> list[str]:
    """Where two dumps differ, as readable paths (for assertion messages)."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [d for k in sorted(set(before) | set(after), key=str) for d in differences(before.get(k), after.get(k), "%s.%s" % (path, k))]
    if isinstance(before, (list, tuple)) and isinstance(after, (list, tuple)) and len(before) == len(after):
        return [d for i, (x, y) in enumerate(zip(before, after, strict=True)) for d in differences(x, y, "%s[%d]" % (path, i))]
    return [] if before == after else ["%s: %r -> %r" % (path, before, after)]


def assert_unchanged(before, after) -> None:
    assert before == after, differences(before, after)


@contextmanager
def stale_netns_file():
    """A file under /run/netns that is not a namespace (what a failed `ip netns add` or a lost
    bind mount leaves behind); removed afterwards. Yields its name."""
    name = unique("ovxt-stale")
    path = os.path.join("/run/netns", name)
    os.makedirs("/run/netns", exist_ok=True)
    with open(path, "x"):
        pass
    try:
        yield name
    finally:
        os.unlink(path)
