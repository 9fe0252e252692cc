# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The MAC a VM gets when the inventory gives none (the vxlan_mesh and vxlan_vm_mac filters and
the inventory check use this one derivation)."""

from __future__ import annotations

import hashlib
import ipaddress


def vm_mac(address: str, network: str = "") -> str:
    """A stable, locally administered unicast MAC for a VM address.

    IPv4: 02:00 followed by the four octets (100.0.0.2 -> 02:00:64:00:00:02), readable in
    `bridge fdb` output. IPv6: 02 followed by five bytes of a hash of network and address.
    """
    ip = ipaddress.ip_interface(address).ip
    if ip.version == 4:
        raw = b"\x02\x00" + ip.packed
    else:
        raw = b"\x02" + hashlib.sha256(("%s|%s" % (network, ip)).encode()).digest()[:5]
    return ":".join("%02x" % b for b in raw)


def bridge_mac(local: str, bridge: str) -> str:
    """A stable, locally administered unicast MAC for a host's bridge (evpn pins it: a bridge
    otherwise takes its smallest port MAC, which changes as VMs come and go, and the kernel then
    flushes the bridge's neighbour table). 06 followed by five bytes of a hash of the host's
    underlay address and the bridge's name: never a VM's (02), the same on every run."""
    digest = hashlib.sha256(("bridge|%s|%s" % (ipaddress.ip_address(str(local)), bridge)).encode()).digest()
    return ":".join("%02x" % b for b in b"\x06" + digest[:5])
