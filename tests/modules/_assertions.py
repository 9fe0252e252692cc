"""Assertions shared by the module tests: a refused task leaves the kernel exactly as it was."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from helpers import COLLECTIONS, PYTHON, module_path, run_module, state_dump

MISSING_NETNS = "ovxt-no-such-ns"


# Carrier flags follow the kernel's linkwatch, which reports a carrier change up to a second
# after it happens (a bridge losing its last running port): operational state, not configuration.
CARRIER_FLAGS = {"LOWER_UP", "NO-CARRIER", "M-DOWN"}


def _without_timers(value, key=None):
    if isinstance(value, dict):
        return {k: _without_timers(v, k) for k, v in value.items() if not k.endswith("_timer") and k != "tentative"}
    if isinstance(value, list):
        return [_without_timers(v) for v in value if not (key == "flags" and v in CARRIER_FLAGS)]
    return value


def stable_dump(ns: str) -> dict:
    """helpers.state_dump without what changes on its own between two reads of an unchanged
    kernel: the bridge's running timers (gc_timer, forward_delay_timer...), the `tentative`
    flag of IPv6 addresses still in duplicate address detection, and carrier flags. fdb and
    neighbour entries are compared as sets."""
    dump = _without_timers(state_dump(ns))
    for table in ("fdb", "neigh"):  # sets: their dump order follows the kernel's hash tables
        dump[table] = sorted(dump[table], key=lambda entry: json.dumps(entry, sort_keys=True))
    return dump


def differences(before, after, path="") -> list[str]:
    """Where two dumps differ, as readable paths (for assertion messages)."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [d for k in sorted(set(before) | set(after), key=str) for d in differences(before.get(k), after.get(k), "%s.%s" % (path, k))]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [d for i, (x, y) in enumerate(zip(before, after, strict=True)) for d in differences(x, y, "%s[%d]" % (path, i))]
    return [] if before == after else ["%s: %r -> %r" % (path, before, after)]


def assert_unchanged(ns: str, before: dict) -> None:
    after = stable_dump(ns)
    assert after == before, differences(before, after)


def assert_refused(ns: str, module: str, args: dict, *fragments: str, check: bool = False) -> dict:
    """Run `module` with bad `args` in namespace `ns` and prove it failed cleanly.

    failed, every fragment (the field and the offending value) in the message, changed false,
    no traceback anywhere, the namespace's links/addresses/fdb/neighbours identical, and the
    missing namespace some cases name not created. (The host's whole namespace list is not
    compared: other test runs on the machine create and remove theirs concurrently.)
    """
    before = stable_dump(ns)
    result = run_module(module, args, check=check)
    assert result.get("failed") is True, result
    assert result.get("changed", False) is False, result
    for fragment in fragments:
        assert fragment in result["msg"], (fragment, result["msg"])
    for text in (result.get("msg", ""), result.get("exception", ""), result["_stderr"]):
        assert "Traceback" not in text, text
    assert_unchanged(ns, before)
    assert not os.path.exists("/run/netns/" + MISSING_NETNS)
    return result


def warning_texts(result: dict) -> list[str]:
    """A module result's warnings as text (ansible-core 2.19 returns them as event summaries)."""
    return [w if isinstance(w, str) else w.get("event", {}).get("msg", "") for w in result.get("warnings", [])]


def assert_check_assumes_created(ns: str, module: str, args: dict, field: str, name: str) -> dict:
    """Check mode with a device that an earlier task of the same run creates (a role's order):
    no failure, a warning naming it, `changed`, and the kernel untouched. The real run refuses
    the same arguments (assert_refused)."""
    before = stable_dump(ns)
    result = run_module(module, args, check=True)
    assert not result.get("failed"), result
    assert result["changed"] is True, result
    assert any("check mode: %s=%s does not exist yet" % (field, name) in w for w in warning_texts(result)), result
    assert_unchanged(ns, before)
    return result


def run_without_pyroute2(module: str, args: dict, shadow_pyroute2: str = "raise ImportError('No module named pyroute2')\n") -> dict:
    """Run a module in a Python where `import pyroute2` fails, as on a host without it (or, with
    `shadow_pyroute2`, finds that source as its pyroute2)."""
    with tempfile.TemporaryDirectory() as shadow:
        (Path(shadow) / "pyroute2.py").write_text(shadow_pyroute2)
        proc = subprocess.run([PYTHON, str(module_path(module))], input=json.dumps({"ANSIBLE_MODULE_ARGS": args}),
                              capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, PYTHONPATH="%s:%s" % (shadow, COLLECTIONS)))
    result = json.loads(proc.stdout)
    result["_stderr"] = proc.stderr
    return result


def assert_missing_pyroute2_reported(module: str, args: dict) -> None:
    result = run_without_pyroute2(module, args)
    assert result["failed"] is True and not result.get("changed")
    assert result["msg"].startswith("Failed to import the required Python library (pyroute2)"), result["msg"]
    assert "Traceback" not in result["msg"] and "Traceback" not in result["_stderr"]
    assert "pyroute2>=0.9.1" in result["msg"] and "overlay.vxlan.pyroute2" in result["msg"], result["msg"]


# Debian 12's python3-pyroute2: importable, but without IPRoute(netns=...).
OLD_PYROUTE2 = """__version__ = '0.7.2'
class IPRoute:
    def __init__(self, **kwargs):
        raise TypeError("NetlinkSocketBase.__init__() got an unexpected keyword argument 'netns'")
class NetlinkError(Exception):
    code = 0
"""


def assert_old_pyroute2_reported(module: str, args: dict) -> None:
    """A pyroute2 older than the collection needs is named with its version, never used."""
    result = run_without_pyroute2(module, args, OLD_PYROUTE2)
    assert result["failed"] is True and not result.get("changed"), result
    msg = result["msg"]
    assert "pyroute2 0.7.2 found on host %s" % os.uname().nodename in msg, msg
    assert "needs pyroute2>=0.9.1" in msg and "overlay.vxlan.pyroute2" in msg, msg
    assert "TypeError" not in msg and "Traceback" not in result["_stderr"], result
