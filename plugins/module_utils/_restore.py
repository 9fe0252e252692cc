# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring a host's recorded overlay back, without Ansible: what the boot-time unit runs.

overlay_state writes the wanted state (each module's validated parameters) and the collection's
module_utils to the host; this applies that state with the modules' own manage(), in build
order, exactly as the tasks would. Nothing here imports Ansible.
"""

from __future__ import annotations

import json
import sys

from ansible_collections.overlay.vxlan.plugins.module_utils._resources import RESOURCES, describe, run

STATE_FORMAT = 1


def apply_state(document: dict, check_mode: bool = False) -> tuple[list[str], list[str]]:
    """Apply every recorded item; return (what changed, what failed), one line each.

    An item that fails does not stop the others: a host with one broken network still gets the
    rest of its overlay back (items that depend on the broken one fail with their own message).
    """
    changed, failed = [], []
    resources = document.get("resources", {})
    for name in RESOURCES:
        for params in resources.get(name, []):
            label = describe(name, params)
            _runner, result, error = run(name, params, check_mode)
            if error is not None:
                failed.append("%s: %s" % (label, error))
            elif result.get("changed"):
                changed.append(label)
    return changed, failed


def _say(stream, text: str) -> None:
    # A command-line program (the boot unit's), not a module: it writes its lines itself.
    stream.write("overlay-vxlan-restore: %s\n" % text)
    stream.flush()


def main(state_file: str) -> int:
    with open(state_file, encoding="utf-8") as handle:
        document = json.load(handle)
    if document.get("format") != STATE_FORMAT:
        _say(sys.stderr, "%s has format %r, this code reads %d; run the playbook again"
             % (state_file, document.get("format"), STATE_FORMAT))
        return 2
    changed, failed = apply_state(document)
    for label in changed:
        _say(sys.stdout, "restored %s" % label)
    for line in failed:
        _say(sys.stderr, "FAILED %s" % line)
    total = sum(len(items) for items in document.get("resources", {}).values())
    _say(sys.stdout, "%d item(s), %d restored, %d already as wanted, %d failed"
         % (total, len(changed), total - len(changed) - len(failed), len(failed)))
    return 1 if failed else 0
