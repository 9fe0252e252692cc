# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The resource modules' work, by module name, in the order a host is built.

Shared by overlay_plan (each item in check mode), overlay_apply (a role's change tasks in one
process), overlay_state (the wanted state kept on the host) and the boot-time restore
(_restore.py), so all four run the modules' own manage() and never a copy of it. Nothing here imports Ansible: the restore runs at boot without it.
"""

from __future__ import annotations

from ansible_collections.overlay.vxlan.plugins.module_utils import (
    _bridge_fdb,
    _ip_neigh,
    _linux_bridge,
    _netns_veth,
    _vtep_allowlist,
    _vxlan_link,
)
from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import NetlinkError, OverlayError, describe_netlink_error

# Bridges before the veths and vxlan devices enslaved to them; devices before their tables. The
# allow-list (nftables, not netlink devices) is listed last, but the boot restore applies it
# first on its own (_restore.apply_guard: no vxlan device comes up unfiltered). A vtep_allowlist
# item with `netns` moves the whole process into that namespace (libnftables works where its
# caller is): give it last.
RESOURCES = {
    "linux_bridge": _linux_bridge,
    "netns_veth": _netns_veth,
    "vxlan_link": _vxlan_link,
    "bridge_fdb": _bridge_fdb,
    "ip_neigh": _ip_neigh,
    "vtep_allowlist": _vtep_allowlist,
}


class Runner:
    """What a module's manage() uses of AnsibleModule: its parameters, check mode, diff and
    warnings, for running that manage() outside a module process of its own."""

    _diff = False

    def __init__(self, params: dict, check_mode: bool):
        self.params = params
        self.check_mode = check_mode
        self.warnings: list[str] = []

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)


def describe(name: str, params: dict) -> str:
    """A short label for one item: 'linux_bridge br1', 'netns_veth ns1/tap1', 'bridge_fdb vxlan0'."""
    if name == "netns_veth":
        return "netns_veth %s/%s" % (params.get("namespace"), params.get("name"))
    if name == "vtep_allowlist":
        return "vtep_allowlist inet %s" % params.get("table")
    return "%s %s" % (name, params.get("name") or params.get("dev"))


def validated(name: str, raw: dict) -> tuple[dict | None, str | None]:
    """One item through its module's own option spec: (parameters with defaults, None) or
    (None, the messages). Ansible is imported here, not at import time: the boot restore runs
    recorded, already validated items without it."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    spec = {k: val for k, val in RESOURCES[name].SPEC.items() if k != "supports_check_mode"}
    result = ArgumentSpecValidator(**spec).validate(raw)
    if result.error_messages:
        return None, "; ".join(result.error_messages)
    return result.validated_parameters, None


def run(name: str, params: dict, check_mode: bool, diff: bool = False) -> tuple[Runner, dict | None, str | None]:
    """An item's module manage(): (the runner with its warnings, the result, None), or the
    module's own error as one line instead of the result."""
    runner = Runner(params, check_mode)
    runner._diff = diff
    try:
        return runner, RESOURCES[name].manage(runner), None
    except OverlayError as exc:
        return runner, None, exc.msg
    except NetlinkError as exc:
        return runner, None, "netlink error: %s" % describe_netlink_error(exc)
    except OSError as exc:
        return runner, None, str(exc)
