# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations


class ModuleDocFragment:
    # Options and attributes every overlay.vxlan resource module shares.
    DOCUMENTATION = r"""
options:
  netns:
    description:
      - Operate inside this existing network namespace (a name under C(/run/netns) or an absolute
        path to a pinned namespace file) instead of the namespace Ansible runs in.
      - A missing namespace is an error; it is never created implicitly.
    type: str
requirements:
  - pyroute2 >= 0.9.1 on the managed host (the role C(overlay.vxlan.pyroute2) installs it from the controller)
  - root (CAP_NET_ADMIN) on the managed host
attributes:
  check_mode:
    support: full
    description: Computes C(changed) and the diff from the kernel's state; writes nothing.
  diff_mode:
    support: full
    description: Returns the before and after state of the resource.
  idempotent:
    support: full
    description: A second run with the same parameters reports no change.
notes:
  - Talks netlink through pyroute2; never runs C(ip), C(bridge) or C(brctl).
  - Every parameter is validated before the kernel is touched. If the kernel refuses a change
    half-way, the changes this run already made are undone.
"""
