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

from ansible_collections.overlay.vxlan.plugins.module_utils import _record, _restore
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
# The keys IDENTITY and REMOVAL read from a recorded item.
IDENTITY_KEYS = {
    "netns_veth": frozenset({"netns", "namespace", "name"}),
    "vxlan_link": frozenset({"netns", "name"}),
    "linux_bridge": frozenset({"netns", "name"}),
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


def read_record(path: str) -> dict | None:
    """The recorded document (None if there is none), checked so far as pruning and removal
    read it; RecordError (naming the file and what is wrong) if it is damaged."""
    needs = {name: frozenset() for name in RESOURCES}
    needs.update(IDENTITY_KEYS)
    document = _record.load(os.path.join(path, STATE_FILE), _restore.STATE_FORMAT, needs, exact=False)
    for name, keys in IDENTITY_KEYS.items():
        for index, item in enumerate((document or {}).get("resources", {}).get(name, [])):
            wrong = sorted(key for key in keys if not (isinstance(item[key], str) or (key == "netns" and item[key] is None)))
            if wrong:
                raise _record.RecordError(os.path.join(path, STATE_FILE), "has a resources.%s[%d] whose %s %s not a name"
                                          % (name, index, ", ".join(wrong), "is" if len(wrong) == 1 else "are"))
    return document


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


def file_mode(rel: str) -> int:
    """The record is the host's alone (0600); the code and the script beside it are plain files."""
    return _record.RECORD_MODE if rel == STATE_FILE else 0o644


def differing(path: str, files: dict[str, bytes]) -> list[str]:
    """The files whose content or mode differs from what is wanted (an older version wrote the
    record 0644: it is rewritten 0600)."""
    out = []
    for rel, data in sorted(files.items()):
        target = os.path.join(path, rel)
        try:
            with open(target, "rb") as handle:
                if handle.read() == data and _record.mode_of(target) == file_mode(rel):
                    continue
        except OSError:
            pass
        out.append(rel)
    return out


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
    try:
        old = read_record(path)
    except _record.RecordError as exc:
        # The record is what pruning and removal go by: a damaged one is never taken for "nothing
        # recorded" (that would forget what to remove). Only a run told not to prune replaces it.
        if params["state"] == "absent":
            raise _record.RecordError(exc.path, "%s; nothing removed: it lists what to remove. Repair it, or remove the "
                                      "overlay by hand and then %s" % (exc.reason, path)) from None
        if params["prune"]:
            raise _record.RecordError(exc.path, "%s; nothing changed: pruning goes by it. Repair it, or run once with "
                                      "prune=false (role persist: persist_prune=false), which replaces it (what it listed "
                                      "and the inventory no longer has then stays on the host)" % exc.reason) from None
        module.warn("%s; replaced (prune=false)" % exc.msg)
        old = None
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
        # The record last: if a run stops half-way, the record on disk is still the old one whole.
        for rel in sorted(result["files"], key=lambda rel: rel == STATE_FILE):
            _record.write(os.path.join(path, rel), files[rel], file_mode(rel))
    result["changed"] = bool(result["removed"] or result["files"])
    if module._diff:
        result["diff"] = {"before_header": os.path.join(path, STATE_FILE), "after_header": os.path.join(path, STATE_FILE),
                          "before": json.dumps(old, indent=1, sort_keys=True) + "\n" if old else "",
                          "after": files[STATE_FILE].decode("utf-8")}
    return result
