# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations


class ModuleDocFragment:
    # The five resource modules' task parameters as lists, for the modules that take a host's
    # whole overlay at once (overlay_plan, overlay_state).
    DOCUMENTATION = r"""
options:
  linux_bridge:
    description: Parameters of M(overlay.vxlan.linux_bridge) tasks, one dict per task.
    type: list
    elements: dict
    default: []
  netns_veth:
    description: Parameters of M(overlay.vxlan.netns_veth) tasks, one dict per task.
    type: list
    elements: dict
    default: []
  vxlan_link:
    description: Parameters of M(overlay.vxlan.vxlan_link) tasks, one dict per task.
    type: list
    elements: dict
    default: []
  bridge_fdb:
    description: Parameters of M(overlay.vxlan.bridge_fdb) tasks, one dict per task.
    type: list
    elements: dict
    default: []
  ip_neigh:
    description: Parameters of M(overlay.vxlan.ip_neigh) tasks, one dict per task.
    type: list
    elements: dict
    default: []
  vtep_allowlist:
    description: Parameters of M(overlay.vxlan.vtep_allowlist) tasks, one dict per task.
    type: list
    elements: dict
    default: []
"""
