"""Test helpers: run a module exactly as Ansible's module process runs it, read kernel state back.

`run_module` feeds the module its arguments as JSON (the way AnsiballZ does once unpacked), in
a fresh Python process, with check/diff mode flags, and returns the parsed result. A smaller set
of tests (tests/modules/test_via_ansible.py) goes through the whole `ansible` CLI path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from pyroute2 import IPRoute, netns

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / ".collections"
PYTHON = sys.executable


def module_path(name: str) -> Path:
    return ROOT / "plugins" / "modules" / ("%s.py" % name)


def run_module(name: str, args: dict, *, check: bool = False, diff: bool = True) -> dict:
    payload = dict(args)
    payload["_ansible_check_mode"] = check
    payload["_ansible_diff"] = diff
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS))
    proc = subprocess.run(
        [PYTHON, str(module_path(name))],
        input=json.dumps({"ANSIBLE_MODULE_ARGS": payload}),
        capture_output=True, text=True, env=env, timeout=120,
    )
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError("module %s printed no JSON\nstdout:%s\nstderr:%s" % (name, proc.stdout, proc.stderr)) from None
    result["_stderr"] = proc.stderr
    return result


def unique(prefix: str = "ovxt") -> str:
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def ns_exec(ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a read-back command (ip/bridge/ping) inside a test namespace. Tests only: modules never do."""
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, check=check)


def ip_json(ns: str, *args: str):
    out = ns_exec(ns, "ip", "-j", *args).stdout
    return json.loads(out) if out.strip() else []


def bridge_json(ns: str, *args: str):
    out = ns_exec(ns, "bridge", "-j", *args).stdout
    return json.loads(out) if out.strip() else []


CARRIER_FLAGS = ("LOWER_UP", "NO-CARRIER")
VOLATILE = frozenset({"stats", "stats64", "operstate", "linkmode", "used", "updated", "ageing_timer", "probes", "tentative"})


def _settled(value):
    """Drop what the kernel changes by itself between two reads with no module touching anything:
    counters, running timers (bridge gc/hello/forward_delay timers), the `tentative` flag of IPv6
    addresses still in duplicate address detection."""
    if isinstance(value, dict):
        return {k: _settled(v) for k, v in value.items() if k not in VOLATILE and not k.endswith("_timer")}
    if isinstance(value, list):
        return [_settled(v) for v in value]
    return value


def _configured_fdb(entry: dict) -> bool:
    """Permanent/static entries are configuration; learned ones age out, and `self` multicast
    entries without dst are the device's own IGMP/MLD memberships, joined and left by the stack."""
    if entry.get("state") not in ("permanent", "static"):
        return False
    multicast = int(entry["mac"].split(":")[0], 16) & 1
    return not (multicast and "self" in entry.get("flags", []) and "dst" not in entry)


def state_dump(ns: str) -> dict:
    """Everything a failed task must leave untouched: links, addresses, permanent fdb and neighbour
    entries, normalised so two reads of an unchanged kernel compare equal (carrier flags settle
    asynchronously; table dump order follows the kernel's hash tables, so tables are sets)."""
    dump = _settled({
        "links": ip_json(ns, "-d", "link", "show"),
        "addrs": ip_json(ns, "addr", "show"),
        "fdb": [e for e in bridge_json(ns, "fdb", "show") if _configured_fdb(e)],
        "neigh": [n for n in ip_json(ns, "neigh", "show") if "PERMANENT" in n.get("state", [])],
    })
    for item in dump["links"] + dump["addrs"]:
        item["flags"] = [f for f in item.get("flags", []) if f not in CARRIER_FLAGS]
    for item in dump["addrs"]:  # the kernel adds IPv6 link-local addresses itself once a link is up
        item["addr_info"] = [a for a in item.get("addr_info", []) if not (a.get("family") == "inet6" and a.get("scope") == "link")]
    for table in ("fdb", "neigh"):
        dump[table] = sorted(dump[table], key=lambda entry: json.dumps(entry, sort_keys=True))
    return dump


class Namespace:
    """A throwaway network namespace, removed with everything in it."""

    def __init__(self, prefix: str = "ovxt"):
        self.name = unique(prefix)
        netns.create(self.name)

    def ipr(self) -> IPRoute:
        return IPRoute(netns=self.name, flags=0)

    def remove(self) -> None:
        if self.name in netns.listnetns():
            netns.remove(self.name)
