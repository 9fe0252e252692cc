"""ARP (and IPv6 neighbour solicitations) on a VM's interface, for the EVPN tests: fed on stdin to
python3 inside a VM namespace.

    python3 - ask IFNAME SENDER_IP TARGET_IP < arp_probe.py      # one who-has; prints the answer's MAC
    python3 - count IFNAME TARGET_IP SECONDS < arp_probe.py       # incoming who-has TARGET_IP, counted
    python3 - count6 IFNAME TARGET_IP SECONDS < arp_probe.py      # incoming NS for TARGET_IP (IPv6), counted

`ask` sends one ARP request from IFNAME and prints the sender MAC of the first reply for
TARGET_IP (or `none` after 2 s). `count` prints `listening` once its socket is bound, then listens
on IFNAME and prints how many ARP requests for TARGET_IP arrived (the VM's own outgoing frames
are not counted); `count6` the same for ICMPv6 neighbour solicitations (type 135) whose target
is TARGET_IP.
"""

from __future__ import annotations

import select
import socket
import struct
import sys
import time

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ICMPV6, NEIGHBOUR_SOLICITATION = 58, 135


def _socket(ifname: str, protocol: int = ETH_P_ARP) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(protocol))
    sock.bind((ifname, 0))
    return sock


def _parse(frame: bytes):
    """(op, sender MAC, sender IP, target IP) of an Ethernet ARP frame."""
    op = struct.unpack("!H", frame[20:22])[0]
    return op, frame[22:28].hex(":"), socket.inet_ntoa(frame[28:32]), socket.inet_ntoa(frame[38:42])


def frames(sock: socket.socket, seconds: float):
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if select.select([sock], [], [], left)[0]:
            data, address = sock.recvfrom(2048)
            if address[2] != socket.PACKET_OUTGOING and len(data) >= 42:
                yield _parse(data)


def ask(ifname: str, sender_ip: str, target_ip: str) -> str:
    sock = _socket(ifname)
    mac = sock.getsockname()[4]
    request = (b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP) + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
               + mac + socket.inet_aton(sender_ip) + b"\x00" * 6 + socket.inet_aton(target_ip))
    sock.send(request)
    for op, sha, spa, _tpa in frames(sock, 2.0):
        if op == 2 and spa == target_ip:
            return sha
    return "none"


def count(ifname: str, target_ip: str, seconds: float) -> int:
    sock = _socket(ifname)
    print("listening", flush=True)
    return sum(1 for op, _sha, _spa, tpa in frames(sock, seconds) if op == 1 and tpa == target_ip)


def count6(ifname: str, target_ip: str, seconds: float) -> int:
    """Neighbour solicitations for target_ip that arrive on ifname (no extension headers: the
    kernel sends none with an NS)."""
    sock = _socket(ifname, ETH_P_IPV6)
    target = socket.inet_pton(socket.AF_INET6, target_ip)
    print("listening", flush=True)
    end, seen = time.monotonic() + seconds, 0
    while (left := end - time.monotonic()) > 0:
        if select.select([sock], [], [], left)[0]:
            data, address = sock.recvfrom(2048)
            if (address[2] != socket.PACKET_OUTGOING and len(data) >= 78 and data[20] == ICMPV6
                    and data[54] == NEIGHBOUR_SOLICITATION and data[62:78] == target):
                seen += 1
    return seen


if __name__ == "__main__":
    if sys.argv[1] == "ask":
        print(ask(*sys.argv[2:5]))
    elif sys.argv[1] == "count6":
        print(count6(sys.argv[2], sys.argv[3], float(sys.argv[4])))
    else:
        print(count(sys.argv[2], sys.argv[3], float(sys.argv[4])))
