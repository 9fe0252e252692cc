#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: overlay_state
short_description: Record a host's wanted overlay on the host, for the boot-time restore and for pruning
version_added: 0.1.0
description:
  - Takes the same lists as M(overlay.vxlan.overlay_plan) (the parameters of a host's
    M(overlay.vxlan.linux_bridge), M(overlay.vxlan.netns_veth), M(overlay.vxlan.vxlan_link),
    M(overlay.vxlan.bridge_fdb) and M(overlay.vxlan.ip_neigh) tasks), checks each against its
    module's own option spec, and records them in O(path)C(/state.json).
  - Beside the record it writes the collection's module_utils (the code this module runs with)
    and C(restore.py), which applies the record with the modules' own code, without Ansible. The
    role C(overlay.vxlan.persist) runs it at boot from a systemd unit, so a rebooted host has its
    overlay back before anything uses it.
  - With O(prune=true), whatever an earlier run recorded and this one no longer lists (a VM
    namespace with its veth pair, a vxlan device, a bridge) is removed from the kernel first, by
    the modules' own absent code. That is how an endpoint that left the inventory leaves its host.
  - O(state=absent) removes everything the record lists, then the record, the code and the script.
  - The record is rewritten only when its content (or its mode, 0600) differs, so a converged host
    reports no change. It is written to a temporary file, flushed, and renamed over the old one
    (then the directory is flushed); after a crash it is the old record or the new one, whole.
  - A record that is there but damaged (empty, torn, not JSON, not what this module writes) is an
    error naming the file and what is wrong, and nothing is changed; pruning and removal go by it,
    so it is never taken for "nothing recorded". With O(prune=false) it is replaced (with a
    warning). The boot restore refuses it as well and restores nothing.
options:
  path:
    description: Directory of the record, the code and C(restore.py).
    type: path
    default: /var/lib/overlay-vxlan
  state:
    description:
      - V(present) records the given lists (and prunes, see O(prune)).
      - V(absent) removes what the record lists from the kernel, then O(path).
    type: str
    choices: [present, absent]
    default: present
  prune:
    description:
      - Remove what an earlier record lists and this one does not.
      - V(false) also replaces a damaged record instead of failing on it.
    type: bool
    default: true
requirements:
  - pyroute2 >= 0.9.1 on the managed host (for pruning and for the restore)
extends_documentation_fragment:
  - overlay.vxlan.resource_lists
attributes:
  check_mode:
    support: full
    description: Reports what would be written and removed; writes and removes nothing.
  diff_mode:
    support: full
    description: The record before and after.
  idempotent:
    support: full
    description: A second run with the same lists reports no change.
notes:
  - The restore checks the whole record before it applies any of it; a damaged record makes it
    restore nothing and exit with status 2.
  - The restore runs the record in build order (bridges, VM namespaces, vxlan devices, fdb,
    neighbours); an item that fails does not stop the others, and the unit fails so that
    C(systemctl status overlay-vxlan) shows it.
author:
  - overlay.vxlan contributors (@overlay-vxlan)
"""

EXAMPLES = r"""
- name: Keep the source's static overlay on h1 across reboots
  overlay.vxlan.overlay_state:
    linux_bridge: [{name: br1, mtu: 1450}]
    netns_veth:
      - {namespace: ns1, name: tap1, peer: tap2, master: br1, addresses: [100.0.0.2/24], mtu: 1450}
    vxlan_link:
      - {name: vxlan0, vni: 100, dstport: 4789, local: 192.168.1.2, dev: eth0, learning: false,
         proxy: true, master: br1}
    bridge_fdb:
      - dev: vxlan0
        state: exact
        entries: [{mac: "02:00:64:00:00:03", dst: 192.168.1.3}, {mac: "02:00:64:00:00:04", dst: 192.168.1.4}]
  register: recorded

- name: Remove everything recorded (teardown)
  overlay.vxlan.overlay_state:
    state: absent
"""

RETURN = r"""
path:
  description: Directory of the record.
  returned: always
  type: str
  sample: /var/lib/overlay-vxlan
files:
  description: Files under O(path) written (or, in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: [state.json]
removed:
  description: What was removed from the kernel (pruned, or everything with O(state=absent)).
  returned: always
  type: list
  elements: str
  sample: ["netns_veth ns2/tap3", "linux_bridge br2"]
restore_command:
  description: The command that restores the record (what the boot unit runs).
  returned: always
  type: str
  sample: /usr/bin/python3 /var/lib/overlay-vxlan/restore.py
python:
  description: The host's Python this module ran with (the restore uses the same).
  returned: always
  type: str
  sample: /usr/bin/python3
systemd_booted:
  description: Whether the host runs systemd (C(/run/systemd/system) exists).
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import require_pyroute2, run_module
from ansible_collections.overlay.vxlan.plugins.module_utils._overlay_state import SPEC, manage
from ansible_collections.overlay.vxlan.plugins.module_utils._record import RecordError


def main() -> None:
    module = AnsibleModule(**SPEC)
    require_pyroute2(module)

    def body() -> dict:
        try:
            return manage(module)
        except RecordError as exc:  # a damaged record: named, and nothing changed
            module.fail_json(msg=exc.msg, changed=False, path=exc.path)

    run_module(module, body)


if __name__ == "__main__":
    main()
