#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: overlay_plan
short_description: Ask, in one process, whether any of a host's overlay tasks has something to do
version_added: 0.1.0
description:
  - Takes the parameters of a list of O(linux_bridge), O(netns_veth), O(vxlan_link),
    O(bridge_fdb) and O(ip_neigh) tasks, and runs each module's own code in check mode against
    the kernel, all in this one process. Returns which of them would change something.
  - It never changes anything. It exists for speed; on a converged host a role
    (the endpoint and vxlan roles) runs this one module instead of
    one module process per resource, and skips its change tasks when RV(pending) is false.
  - There is no second comparison here. Each item is checked against the module's own option
    spec (the same defaults, types and rules) and decided by the module's own plan, the code
    that would make the change. An item whose check fails (bad input, a missing master, a
    namespace that is not there yet) counts as pending; the real task then runs and reports
    the real error.
  - Check mode knows only what is there now. If one item depends on another that is about to
    change, the first may look settled. So a role that uses this module runs all of its change
    tasks as soon as anything is pending, and skips them only when nothing is.
options:
  details:
    description:
      - Also return, per item, what the module itself returns in check mode (RV(items)), so a
        caller can say what differs; the C(overlay.vxlan.verify) role's table check uses it.
    type: bool
    default: false
notes:
  - Needs pyroute2 on the managed host, like the modules it asks.
extends_documentation_fragment:
  - overlay.vxlan.resource_lists
attributes:
  check_mode:
    support: full
    description: Reads only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is no diff.
  idempotent:
    support: full
    description: Never reports a change.
author:
  - overlay.vxlan contributors (@overlay-vxlan)
"""

EXAMPLES = r"""
- name: Anything to do for br1 and vxlan0?
  overlay.vxlan.overlay_plan:
    linux_bridge:
      - {name: br1, mtu: 1450}
    vxlan_link:
      - {name: vxlan0, vni: 100, dev: eth0, local: 192.168.1.2, learning: false, proxy: true, master: br1}
  register: plan

- name: Only when something differs
  overlay.vxlan.vxlan_link:
    name: vxlan0
    vni: 100
    dev: eth0
    local: 192.168.1.2
    learning: false
    proxy: true
    master: br1
  when: plan.pending
"""

RETURN = r"""
pending:
  description: True if any item would change something or could not be checked.
  returned: always
  type: bool
  sample: false
items:
  description:
    - Per module, one entry per item given, in the same order.
    - C(changed) is what the module in check mode reports. C(error) is the message of a check
      that failed (such an item counts as pending). C(assumed) says which device the check
      could only assume an earlier task creates (such an item counts as pending too).
    - With O(details), C(result) is the module's own check-mode return (for example
      C(added)/C(removed) of M(overlay.vxlan.bridge_fdb), C(diff.before)/C(diff.after) of
      M(overlay.vxlan.vxlan_link)).
  returned: always
  type: dict
  sample:
    linux_bridge: [{changed: false}]
    vxlan_link: [{changed: true}]
    bridge_fdb: [{changed: false, assumed: "check mode: dev=vxlan0 does not exist yet; ..."}]
    ip_neigh: [{changed: false, error: "dev='eth0': is a veth, not a vxlan"}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import (
    require_pyroute2,
)
from ansible_collections.overlay.vxlan.plugins.module_utils._resources import RESOURCES, run, validated


def check_item(name: str, raw: dict, details: bool = False) -> dict:
    """One task's parameters through the module's spec and its manage() in check mode."""
    params, error = validated(name, raw)
    if error is None:
        runner, result, error = run(name, params, check_mode=True)
    if error is not None:
        return {"changed": False, "error": error}
    item = {"changed": bool(result["changed"])}
    # A device the module could only assume an earlier task creates: not settled.
    assumed = [w for w in runner.warnings if w.startswith("check mode:")]
    if assumed:
        item["assumed"] = "; ".join(assumed)
    if details:  # the module's own words about what differs, for a caller to print
        item["result"] = result
    return item


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict({name: dict(type="list", elements="dict", default=[]) for name in RESOURCES},
                           details=dict(type="bool", default=False)),
        supports_check_mode=True,
    )
    require_pyroute2(module)
    details = module.params["details"]
    items = {name: [check_item(name, raw, details) for raw in module.params[name]] for name in RESOURCES}
    pending = any(item["changed"] or "error" in item or "assumed" in item for checked in items.values() for item in checked)
    module.exit_json(changed=False, pending=pending, items=items)


if __name__ == "__main__":
    main()
