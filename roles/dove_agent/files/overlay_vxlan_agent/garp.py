# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gratuitous ARP reply that makes a VM waiting on an answered l3miss send at once."""

from __future__ import annotations

import socket
import struct


def build_garp(mac: str, ip: str) -> bytes:
    """A broadcast gratuitous ARP reply announcing ip is-at mac (sender = target, tha = sha).

    A VM with an INCOMPLETE entry for `ip` accepts it, and sends the packets it queued.
    """
    hw = bytes.fromhex(mac.replace(":", ""))
    proto = socket.inet_aton(ip)
    eth = b"\xff" * 6 + hw + struct.pack("!H", 0x0806)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + hw + proto + hw + proto
    return eth + arp + b"\0" * 18  # pad to the 60-byte Ethernet minimum
