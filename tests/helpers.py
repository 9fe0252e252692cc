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


def state_dump(ns: str) -> dict:
    """Everything a failed task must leave untouched: links, addresses, fdb, neighbours."""
    def strip(items, volatile=("stats", "stats64", "operstate", "linkmode", "used", "updated", "ageing_timer", "probes")):
        return [{k: val for k, val in item.items() if k not in volatile} for item in items]

    return {
        "links": strip(ip_json(ns, "-d", "link", "show")),
        "addrs": strip(ip_json(ns, "addr", "show")),
        "fdb": strip(bridge_json(ns, "fdb", "show")),
        "neigh": strip([n for n in ip_json(ns, "neigh", "show") if "PERMANENT" in n.get("state", [])]),
    }


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
