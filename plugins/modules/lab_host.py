#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: lab_host
short_description: Lab only - create or remove the simulated lab's hosts and the underlay fabric joining them
version_added: 0.1.0
description:
  - B(Lab only.) Part of the collection's test and demonstration lab (with the C(overlay.vxlan.lab)
    connection and the C(overlay.vxlan.lab) role), not for managing production hosts.
  - Simulates the source document's hosts on one machine. Each lab host is its own network, mount
    and UTS namespace (hostname = the host's name, an empty private C(/run/netns) so every host
    can have its own C(ns1)), pinned by bind mounts under
    C(/run/overlay-lab/<lab_name>/hosts/<host>/{net,mnt,uts}) so it outlives the task.
  - A fabric network namespace (C(/run/overlay-lab/<lab_name>/fabric/net)) holds the underlay
    bridge O(fabric_bridge). Every host's O(underlay_dev) is one end of a veth pair whose other end
    is a port of that bridge, so the hosts share one L2 underlay segment. Multicast snooping is
    off on the bridge, so the VXLAN multicast mode's group traffic floods to every host.
  - Nothing is created in the machine's own network namespace, not even transiently; the veth
    pairs are made inside the fabric namespace with their peer placed straight into the host.
  - One task handles all hosts (namespaces are created in parallel), which keeps lab creation
    fast for large labs. Enter a host with the M(overlay.vxlan.lab) connection plugin or by hand
    with C(nsenter --net=PIN/net --mount=PIN/mnt --uts=PIN/uts).
  - Removing a host (or the lab) first stops every process still running in its namespaces
    (SIGTERM, then SIGKILL after O(kill_timeout) seconds).
options:
  lab_name:
    description:
      - Name of the lab; several labs coexist under different names.
      - Letters, digits, C(_), C(.) and C(-); at most 63 characters.
    type: str
    default: ovx
  hosts:
    description:
      - The lab hosts to manage.
      - With O(state=absent), omitting O(hosts) removes the whole lab (hosts, fabric, pins and
        the C(/run/overlay-lab/<lab_name>) mount).
    type: list
    elements: dict
    suboptions:
      name:
        description: Host name (the inventory name); also its hostname inside the lab.
        type: str
        required: true
      underlay_ip:
        description: The host's underlay (VTEP) address, put on O(underlay_dev).
        type: str
        required: true
  underlay_prefix:
    description: Prefix length of the underlay addresses.
    type: int
    default: 24
  underlay_dev:
    description: Name of the underlay device inside every host.
    type: str
    default: eth0
  underlay_mtu:
    description: MTU of the underlay devices (both ends of every veth pair).
    type: int
    default: 1500
  fabric_bridge:
    description: Name of the underlay bridge inside the fabric namespace.
    type: str
    default: underlay0
  state:
    description: Whether the listed hosts (or, with no O(hosts) and C(absent), the lab) exist.
    type: str
    choices: [present, absent]
    default: present
  exact:
    description:
      - With O(state=present), also remove lab hosts that are not listed in O(hosts), so the lab
        has exactly the listed hosts.
    type: bool
    default: false
  kill_timeout:
    description: Seconds between SIGTERM and SIGKILL for processes left in a removed host.
    type: float
    default: 2.0
  static_neighbours:
    description:
      - Give every host permanent neighbour (ARP/NDP) entries for the other hosts' underlay
        addresses, and every underlay device a MAC derived from its address
        (C(192.168.1.2) -> C(02:fa:c0:a8:01:02)).
      - The kernel's neighbour table is shared by all network namespaces of the machine and by
        default holds 1024 dynamic entries (C(gc_thresh3)); a large lab's ping matrix (or other
        work on the machine) can fill it, and then ARP fails everywhere. Permanent entries do not
        count against that limit, so the lab's underlay keeps working.
      - With C(false), the underlay resolves addresses with ARP like a real segment, and the MACs
        are random.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Computes C(changed) and the diff from the machine's state; changes nothing.
  diff_mode:
    support: full
    description: Returns the lab's hosts and fabric before and after.
  idempotent:
    support: full
    description: A second run with the same parameters reports no change.
requirements:
  - pyroute2 >= 0.9
  - root on the machine running the lab (the controller); C(nsenter) (util-linux) for the
    P(overlay.vxlan.lab#connection) connection plugin
notes:
  - Runs where the lab lives, normally C(localhost) with C(connection=local).
  - Links and addresses are managed with pyroute2; the namespaces are made with unshare(2) in a
    throwaway thread and pinned with bind mounts (system calls through ctypes; no command runs).
  - Changes to labs are serialised with a lock on C(/run/overlay-lab).
  - With IPv6 underlay addresses, duplicate address detection is off on O(underlay_dev) (C(accept_dad=0)
    in the host's namespace, addresses added with C(IFA_F_NODAD)), so the addresses are usable at
    once instead of tentative for a second; a host with DAD back on is repaired.
  - Adding or removing a host also updates the other hosts' permanent neighbour entries
    (O(static_neighbours)); they appear under RV(repaired) with C(underlay neighbours).
seealso:
  - plugin: overlay.vxlan.lab
    plugin_type: connection
author:
  - overlay.vxlan contributors (@overlay-vxlan)
"""

EXAMPLES = r"""
- name: The source document's three hosts
  overlay.vxlan.lab_host:
    lab_name: ovx
    hosts:
      - {name: h1, underlay_ip: 192.168.1.2}
      - {name: h2, underlay_ip: 192.168.1.3}
      - {name: h3, underlay_ip: 192.168.1.4}
    underlay_prefix: 24
    exact: true

- name: One host per member of the inventory group lab
  overlay.vxlan.lab_host:
    lab_name: ovx
    hosts: "{{ dict(groups['lab'] | zip(groups['lab'] | map('extract', hostvars, 'vxlan_underlay_ip')))
               | dict2items(key_name='name', value_name='underlay_ip') }}"

- name: Remove h3 only
  overlay.vxlan.lab_host:
    lab_name: ovx
    hosts:
      - {name: h3, underlay_ip: 192.168.1.4}
    state: absent

- name: Tear the whole lab down
  overlay.vxlan.lab_host:
    lab_name: ovx
    state: absent
"""

RETURN = r"""
lab:
  description: The lab after the task (in check mode, as it would be); empty when removed.
  returned: success
  type: dict
  sample:
    name: ovx
    path: /run/overlay-lab/ovx
    fabric:
      netns: /run/overlay-lab/ovx/fabric/net
      bridge: underlay0
    hosts:
      h1:
        net: /run/overlay-lab/ovx/hosts/h1/net
        mnt: /run/overlay-lab/ovx/hosts/h1/mnt
        uts: /run/overlay-lab/ovx/hosts/h1/uts
        underlay_dev: eth0
        underlay_ip: 192.168.1.2/24
        fabric_port: vh1
created:
  description: Hosts created (or recreated after being found incomplete).
  returned: success
  type: list
  elements: str
  sample: [h1, h2, h3]
removed:
  description: Hosts removed.
  returned: success
  type: list
  elements: str
  sample: [h4]
repaired:
  description: Existing hosts that were brought back to the wanted state, with what was fixed.
  returned: success
  type: dict
  sample: {h2: [underlay address, hostname], h3: [underlay neighbours]}
killed:
  description: PIDs of processes stopped because they ran in a removed host or lab.
  returned: success
  type: list
  elements: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.overlay.vxlan.plugins.module_utils._lab_host import SPEC, manage_module
from ansible_collections.overlay.vxlan.plugins.module_utils._netlink import require_pyroute2, run_module


def main() -> None:
    module = AnsibleModule(**SPEC)
    require_pyroute2(module)
    run_module(module, lambda: manage_module(module))


if __name__ == "__main__":
    main()
