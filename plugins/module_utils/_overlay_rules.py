# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The overlay's rules that more than one place applies, each stated once.

- MODES: the control planes vxlan_mode may name (the roles' argument_specs `choices` are checked
  against it by tests/unit/test_model.py).
- overlay_mtu(): what VXLAN devices, bridges and VMs get from the underlay MTU
  (_validate.VXLAN_OVERHEAD, the constant the vxlan_link module's own check uses).
- mode_problems(): a mode and the networks a host carries, judged: a known mode, and multicast
  mode's need of each network's group (the group itself, a multicast address of the underlay's
  family, is judged by _overlay_map.build with _validate.multicast_ip).

The inventory check (_overlay_map), the roles' parameter filters (filter/params.py) and
playbooks/validate.yml's check of a play's own vxlan_mode (the vxlan_mode_problems filter) all
call these, so no two of them can judge a mode or an MTU differently.
"""

from __future__ import annotations

from ansible_collections.overlay.vxlan.plugins.module_utils import _validate as v

MODES = ("multicast", "flood", "static", "dove", "evpn")


def mode(field: str, value) -> str:
    """`value` if it is one of MODES, else an OverlayError naming field and value."""
    if value not in MODES:
        raise v.OverlayError("%s=%s: choose one of %s" % (field, value, ", ".join(MODES)), field, value)
    return value


def group_problem(mode_name: str, network: dict) -> str | None:
    """Why `network` cannot be carried in `mode_name` for want of a group, or None."""
    if mode_name == "multicast" and not network.get("group"):
        return "network %s has no group; multicast mode needs one (or use vxlan_mode=flood)" % network["name"]
    return None


def mode_problems(mode_name, networks: list) -> list[str]:
    """Every reason a host cannot carry `networks` in `mode_name`, each naming vxlan_mode's value."""
    try:
        mode("vxlan_mode", mode_name)
    except v.OverlayError as exc:
        return [exc.msg]
    return ["vxlan_mode=%r: %s" % (mode_name, reason) for reason in (group_problem(mode_name, net) for net in networks) if reason]


def overlay_mtu(underlay_mtu: int, family: int) -> int:
    """The MTU of the overlay (VXLAN devices, bridges, VMs) over an IPv`family` underlay."""
    return int(underlay_mtu) - v.VXLAN_OVERHEAD[family]
