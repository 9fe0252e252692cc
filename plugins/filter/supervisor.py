# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which supervisor runs a daemon of the collection (etcd, FRR, the DOVE agent): the one rule the
controller, evpn and dove_agent roles share (each asks it with its own `*_supervisor` knob)."""

from __future__ import annotations

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # plain unit tests without Ansible
    AnsibleFilterError = ValueError  # type: ignore[misc,assignment]

CHOICES = ("auto", "systemd", "process")


def choose_supervisor(requested, on_lab, systemd_running) -> str:
    """`systemd` or `process` (start-stop-daemon / the daemon's own init script): what was asked
    for, or with `auto` systemd where it runs (real hosts), never on simulated lab hosts (they
    share this machine's systemd, which must not see their daemons)."""
    if requested not in CHOICES:
        raise AnsibleFilterError("supervisor=%r: must be one of %s" % (requested, ", ".join(CHOICES)))
    if requested != "auto":
        return requested
    if on_lab:
        return "process"
    return "systemd" if systemd_running else "process"


class FilterModule:
    def filters(self):
        return {"vxlan_supervisor": lambda requested, on_lab=False, systemd_running=False:
                choose_supervisor(requested, bool(on_lab), bool(systemd_running))}
