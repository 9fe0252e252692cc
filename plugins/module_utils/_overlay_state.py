# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The overlay_state module's work: the host's wanted overlay, recorded on the host.

Three jobs, one record (<path>/state.json, each module's validated parameters):
- the boot-time restore: the record, the collection's module_utils and a small restore.py are
  written to <path>, and a systemd unit (the role's) runs restore.py at boot, so the very code
  the modules run brings the overlay back (_restore.py);
- prune: what an earlier run recorded and this one no longer wants (a VM that left the inventory,
  a removed network) is removed from the kernel, with the modules' own absent code;
- state=absent: everything the record lists goes, then the record itself.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

from ansible_collections.overlay.vxlan.plugins.module_utils import _restore
from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import KernelError
from ansible_collections.overlay.vxlan.plugins.module_utils._resources import RESOURCES, describe, run, validated
from ansible_collections.overlay.vxlan.plugins.module_utils._validate import InputError

PACKAGE = "ansible_collections.overlay.vxlan.plugins.module_utils"
STATE_FILE = "state.json"
RESTORE_SCRIPT = "restore.py"
LIB_DIR = "lib"
RESTORE_PY = '''#!/usr/bin/python3
"""Written by overlay.vxlan.overlay_state (do not edit: every playbook run rewrites it).
Brings this host's recorded overlay back with the collection's own code; run at boot by the
overlay-vxlan unit, or by hand: python3 %s"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "%s"))
from ansible_collections.overlay.vxlan.plugins.module_utils._restore import main  # noqa: E402

sys.exit(main(os.path.join(HERE, "%s")))
'''

SPEC = dict(
    argument_spec=dict(
        path=dict(type="path", default="/var/lib/overlay-vxlan"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        prune=dict(type="bool", default=True),
        **{name: dict(type="list", elements="dict", default=[]) for name in RESOURCES},
    ),
    supports_check_mode=True,
)

# What identifies an item the kernel holds, per resource that creates something of its own
# (fdb and neighbour entries belong to their vxlan device and go with it), and the parameters
# that remove it. Removal order: VMs, then vxlan devices, then the bridges they were in.
IDENTITY = {
    "netns_veth": lambda p: (p.get("netns"), p["namespace"], p["name"]),
    "vxlan_link": lambda p: (p.get("netns"), p["name"]),
    "linux_bridge": lambda p: (p.get("netns"), p["name"]),
}
REMOVAL = {
    "netns_veth": lambda p: {"namespace": p["namespace"], "name": p["name"], "netns": p.get("netns"),
                             "state": "absent", "namespace_state": "absent"},
    "vxlan_link": lambda p: {"name": p["name"], "netns": p.get("netns"), "state": "absent"},
    "linux_bridge": lambda p: {"name": p["name"], "netns": p.get("netns"), "state": "absent"},
}


def checked(name: str, raw: dict, index: int) -> dict:
    """One item through its module's own option spec (defaults filled in), or InputError."""
    params, error = validated(name, raw)
    if error is not None:
        raise InputError("%s[%d]" % (name, index), raw, error)
    return params


def read_record(path: str) -> tuple[dict | None, str | None]:
    """The recorded document, or (None, why not)."""
    try:
        with open(os.path.join(path, STATE_FILE), encoding="utf-8") as handle:
            document = json.load(handle)
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, "%s is unreadable (%s); it is rewritten" % (os.path.join(path, STATE_FILE), exc)
    return document, None


def departed(old: dict | None, new: dict | None) -> list[tuple[str, dict]]:
    """(module, removal parameters) for what `old` created and `new` no longer wants."""
    old_res = (old or {}).get("resources", {})
    new_res = (new or {}).get("resources", {})
    gone = []
    for name, identity in IDENTITY.items():
        kept = {identity(p) for p in new_res.get(name, [])}
        gone += [(name, REMOVAL[name](p)) for p in old_res.get(name, []) if identity(p) not in kept]
    return gone


def module_utils_files() -> dict[str, bytes]:
    """The collection's module_utils this process runs with, as files under lib/: the restore
    at boot then runs the code that wrote the record, never a second copy of it."""
    files = {}
    for parts in ("ansible_collections", "ansible_collections/overlay", "ansible_collections/overlay/vxlan",
                  "ansible_collections/overlay/vxlan/plugins", "ansible_collections/overlay/vxlan/plugins/module_utils"):
        files["%s/%s/__init__.py" % (LIB_DIR, parts)] = b""
    for name, mod in sorted(sys.modules.items()):
        if mod is None or not name.startswith(PACKAGE + "._"):
            continue
        source = mod.__loader__.get_source(name)
        files["%s/%s.py" % (LIB_DIR, name.replace(".", "/"))] = source.encode("utf-8")
    return files


def wanted_files(path: str, document: dict) -> dict[str, bytes]:
    files = module_utils_files()
    files[STATE_FILE] = (json.dumps(document, indent=1, sort_keys=True) + "\n").encode("utf-8")
    files[RESTORE_SCRIPT] = (RESTORE_PY % (os.path.join(path, RESTORE_SCRIPT), LIB_DIR, STATE_FILE)).encode("utf-8")
    return files


def differing(path: str, files: dict[str, bytes]) -> list[str]:
    out = []
    for rel, data in sorted(files.items()):
        try:
            with open(os.path.join(path, rel), "rb") as handle:
                if handle.read() == data:
                    continue
        except OSError:
            pass
        out.append(rel)
    return out


def write_atomically(target: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove(items: list[tuple[str, dict]], check_mode: bool) -> list[str]:
    """Run the modules' own absent code for each item; the labels of what was (or would be) removed."""
    removed, failures = [], []
    for name, raw in items:
        label = describe(name, raw)
        _runner, result, error = run(name, checked(name, raw, 0), check_mode)
        if error is not None:
            failures.append("%s: %s" % (label, error))
        elif result["changed"]:
            removed.append(label)
    if failures:
        raise KernelError("could not remove what the record lists: %s (removed: %s)"
                          % ("; ".join(failures), ", ".join(removed) or "nothing"))
    return removed


def manage(module) -> dict:
    params = module.params
    path = params["path"]
    old, problem = read_record(path)
    if problem:
        module.warn(problem)
    result = {"changed": False, "path": path, "systemd_booted": os.path.isdir("/run/systemd/system"),
              "restore_command": "%s %s" % (sys.executable, os.path.join(path, RESTORE_SCRIPT)),
              "python": sys.executable, "removed": [], "files": []}

    if params["state"] == "absent":
        result["removed"] = remove(departed(old, None), module.check_mode)
        present = os.path.lexists(path)
        if present and not module.check_mode:
            shutil.rmtree(path)
        result["changed"] = bool(result["removed"]) or present
        if module._diff:
            result["diff"] = {"before": json.dumps(old, indent=1, sort_keys=True) if old else "", "after": ""}
        return result

    document = {"format": _restore.STATE_FORMAT,
                "resources": {name: [checked(name, raw, i) for i, raw in enumerate(params[name])] for name in RESOURCES}}
    if params["prune"]:
        result["removed"] = remove(departed(old, document), module.check_mode)
    files = wanted_files(path, document)
    result["files"] = differing(path, files)
    if result["files"] and not module.check_mode:
        for rel in result["files"]:
            write_atomically(os.path.join(path, rel), files[rel])
    result["changed"] = bool(result["removed"] or result["files"])
    if module._diff:
        result["diff"] = {"before_header": os.path.join(path, STATE_FILE), "after_header": os.path.join(path, STATE_FILE),
                          "before": json.dumps(old, indent=1, sort_keys=True) + "\n" if old else "",
                          "after": files[STATE_FILE].decode("utf-8")}
    return result
