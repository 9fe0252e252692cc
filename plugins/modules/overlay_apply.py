#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: overlay_apply
short_description: Apply a host's overlay tasks in one process, each by its module's own code
version_added: 0.2.0
description:
  - Takes the parameters of a list of O(linux_bridge), O(netns_veth), O(vxlan_link),
    O(bridge_fdb) and O(ip_neigh) tasks and runs each module's own code on them, in that order
    (bridges before what is enslaved to them, devices before their tables), all in this one
    process. The result is what the same tasks, run one by one, would do.
  - It exists for speed. A module process costs about 0.3-0.6 s of CPU on the host whatever it
    does, so a fresh host with ten VMs built by one task per resource starts a dozen of them; the
    endpoint and vxlan roles use this module to start one.
  - Each item is checked against its module's own option spec and run by its module's own code,
    with that module's check mode, diff and undo of a refused table change. The first item that
    fails stops the task, naming the item (for example C(netns_veth[3] (netns_veth ns4/tap4))) and
    the module's own message; items before it stay applied, as separate tasks would leave them.
extends_documentation_fragment:
  - overlay.vxlan.resource_lists
notes:
  - Needs pyroute2 on the managed host, like the modules it runs.
  - For big tables give M(overlay.vxlan.bridge_fdb) and M(overlay.vxlan.ip_neigh) items C(rows) instead of C(entries).
attributes:
  check_mode:
    support: full
    description: Every item runs in its module's check mode; a device an earlier item would create is assumed, with a warning.
  diff_mode:
    support: full
    description: One diff per item, the module's own, with the item named in its headers.
  idempotent:
    support: full
    description: As idempotent as the modules it runs.
author:
  - overlay.vxlan contributors (@overlay-vxlan)
"""

EXAMPLES = r"""
- name: br1 and one VM in it, in one process
  overlay.vxlan.overlay_apply:
    linux_bridge:
      - {name: br1, mtu: 1450}
    netns_veth:
      - {namespace: ns1, name: tap1, peer: tap2, master: br1, addresses: [100.0.0.2/24], mtu: 1450}
"""

RETURN = r"""
items:
  description:
    - Per module, one entry per item given, in the same order, with C(changed) and the module's
      own result without its diff (for example C(added), C(removed) and C(counts) of
      M(overlay.vxlan.bridge_fdb)).
  returned: always
  type: dict
  sample:
    linux_bridge: [{changed: true}]
    bridge_fdb: [{changed: true, added: ["02:00:64:00:00:03 dst 192.168.1.3"], removed: [], counts: {entries: 1, added: 1, removed: 0}}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import OverlayError, require_pyroute2
from ansible_collections.overlay.vxlan.plugins.module_utils._resources import RESOURCES, describe, run, validated


def run_item(module, name: str, raw: dict) -> dict:
    """One task's parameters through its module's spec and manage(); raises OverlayError."""
    params, problem = validated(name, raw)
    if problem:
        raise OverlayError(problem)
    runner, result, problem = run(name, params, module.check_mode, diff=module._diff)
    for warning in runner.warnings:
        module.warn(warning)
    if problem:
        raise OverlayError(problem)
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={name: dict(type="list", elements="dict", default=[]) for name in RESOURCES},
        supports_check_mode=True,
    )
    require_pyroute2(module)
    items = {name: [] for name in RESOURCES}
    diffs = []
    for name in RESOURCES:
        for index, raw in enumerate(module.params[name]):
            label = "%s[%d] (%s)" % (name, index, describe(name, raw))
            try:
                result = run_item(module, name, raw)
            except OverlayError as exc:
                changed = any(item["changed"] for done in items.values() for item in done)
                module.fail_json(msg="%s: %s" % (label, exc.msg), changed=changed, items=items, diff=diffs)
            diff = result.pop("diff", None)
            if diff is not None and result["changed"]:
                diffs.append(dict(diff, before_header="%s: %s" % (label, diff.get("before_header", "before")),
                                  after_header="%s: %s" % (label, diff.get("after_header", "after"))))
            items[name].append(result)
    changed = any(item["changed"] for done in items.values() for item in done)
    module.exit_json(changed=changed, items=items, diff=diffs)


if __name__ == "__main__":
    main()
