# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring a host's recorded overlay back, without Ansible: what the boot-time unit runs.

overlay_state writes the wanted state (each module's validated parameters) and the collection's
module_utils to the host; this applies that state with the modules' own manage(), in build
order, exactly as the tasks would, except that the VTEP allow-list comes first and, if it cannot
be applied, no vxlan device is brought up (site.yml does the same). Nothing here imports Ansible.
"""

from __future__ import annotations

import sys

from ansible_collections.overlay.vxlan.plugins.module_utils import _netlink, _record
from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import NetlinkError, OverlayError
from ansible_collections.overlay.vxlan.plugins.module_utils._resources import RESOURCES, describe, run

STATE_FORMAT = 1


# The VTEP allow-list guards the vxlan devices: it is applied before anything else, and while it
# cannot be applied no vxlan device is made or left up (fail closed). What needs no guard (bridges,
# the VMs' namespaces and veth pairs) is restored either way.
GUARD = "vtep_allowlist"
GUARDED = ("vxlan_link", "bridge_fdb", "ip_neigh")


def apply_state(document: dict, check_mode: bool = False) -> tuple[list[str], list[str]]:
    """Apply every recorded item; return (what changed, what failed), one line each.

    An item that fails does not stop the others: a host with one broken network still gets the
    rest of its overlay back (items that depend on the broken one fail with their own message).
    The allow-list comes first; if it fails, the vxlan devices and their tables are not applied.
    """
    changed, failed = [], []
    resources = document.get("resources", {})
    guarded = apply_guard(resources, check_mode, changed, failed)
    for name in RESOURCES:
        if name == GUARD:
            continue
        for params in resources.get(name, []):
            label = describe(name, params)
            if not guarded and name in GUARDED:
                failed.append("%s: not applied, the VTEP allow-list is not in place%s"
                              % (label, hold_down(params) if name == "vxlan_link" and not check_mode else ""))
                continue
            _runner, result, error = run(name, params, check_mode)
            if error is not None:
                failed.append("%s: %s" % (label, error))
            elif result.get("changed"):
                changed.append(label)
    return changed, failed


def apply_guard(resources: dict, check_mode: bool, changed: list[str], failed: list[str]) -> bool:
    """The recorded allow-list (its nftables table), before anything else: True if it is in place."""
    ok = True
    for params in resources.get(GUARD, []):
        label = describe(GUARD, params)
        _runner, result, error = run(GUARD, params, check_mode)
        if error is not None:
            failed.append("%s: %s; no VXLAN device is brought up until it is in place (fail closed)" % (label, error))
            ok = False
        elif result.get("changed"):
            changed.append(label)
    return ok


def hold_down(params: dict) -> str:
    """A recorded vxlan device that exists anyway (the restore run by hand, or something else
    made it) is set down: unfiltered, it would decapsulate for anybody. What was done, as text."""
    if params.get("state", "present") != "present":
        return ""
    try:
        with _netlink.session(params.get("netns")) as ipr:
            link = _netlink.get_link(ipr, params["name"])
            if link is None or _netlink.link_kind(link) != "vxlan" or not _netlink.link_is_up(link):
                return ""
            ipr.link("set", index=link["index"], state="down")
    except (OverlayError, NetlinkError, OSError) as exc:
        return "; it exists and could not be set down: %s" % getattr(exc, "msg", exc)
    return "; it existed and is set down"


def _say(stream, text: str) -> None:
    # A command-line program (the boot unit's), not a module: it writes its lines itself.
    stream.write("overlay-vxlan-restore: %s\n" % text)
    stream.flush()


def record_options() -> dict[str, frozenset]:
    """Each resource's options: what every recorded item of it holds, no more, no less."""
    return {name: frozenset(module.SPEC["argument_spec"]) for name, module in RESOURCES.items()}


def load(state_file: str) -> dict:
    """The record, checked whole before anything is applied; RecordError if it is missing, empty,
    torn or not what overlay_state writes."""
    document = _record.load(state_file, STATE_FORMAT, record_options(), exact=True)
    if document is None:
        raise _record.RecordError(state_file, "does not exist")
    return document


def main(state_file: str) -> int:
    # Fail closed: a damaged record restores nothing (not half, and not "nothing recorded" with
    # success), and the unit fails so that `systemctl status overlay-vxlan` shows why.
    try:
        document = load(state_file)
    except _record.RecordError as exc:
        _say(sys.stderr, "%s; nothing restored. Converging the host rewrites it; with pruning on, a converge refuses "
             "it too: converge once with persist_prune=false (overlay_state prune=false)" % exc.msg)
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


def main_allowlist(state_file: str) -> int:
    """Only the recorded allow-list, again: what overlay-vxlan-allowlist.service runs when
    nftables.service starts, restarts or reloads (its ruleset starts with `flush ruleset`)."""
    try:
        document = load(state_file)
    except _record.RecordError as exc:
        _say(sys.stderr, "%s; the allow-list was not applied again" % exc.msg)
        return 2
    changed, failed = [], []
    apply_guard(document.get("resources", {}), False, changed, failed)
    for label in changed:
        _say(sys.stdout, "restored %s" % label)
    for line in failed:
        _say(sys.stderr, "FAILED %s" % line)
    if not changed and not failed:
        _say(sys.stdout, "the VTEP allow-list is in place")
    return 1 if failed else 0


if __name__ == "__main__":
    # python3 -m ansible_collections.overlay.vxlan.plugins.module_utils._restore --allowlist STATE_FILE
    if len(sys.argv) != 3 or sys.argv[1] != "--allowlist":
        _say(sys.stderr, "usage: %s --allowlist STATE_FILE" % sys.argv[0])
        raise SystemExit(2)
    raise SystemExit(main_allowlist(sys.argv[2]))
