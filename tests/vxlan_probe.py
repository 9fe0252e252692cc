"""An intruder's VXLAN probe, built by hand (no scapy on this machine), and the VM-side listener.

    vxlan_probe.py send --vtep ADDR --vni 100 --dst-mac MAC --dst-ip IP --marker TEXT [--spoof ADDR]
    vxlan_probe.py listen --port 9999 --timeout 4        # prints every datagram's payload

`send` sends one VXLAN datagram (UDP to port 4789 of --vtep) whose inner frame is an
Ethernet/IPv4/UDP datagram to --dst-ip port 9999 carrying --marker. With --spoof the outer
source address is a member's instead of the sender's own: the socket is made transparent
(IP_TRANSPARENT / IPV6_TRANSPARENT, CAP_NET_ADMIN) so it may bind a foreign address, and the
kernel then sends from it. The frame leaves from the sender's own underlay MAC, as a spoofer on
a shared segment who does not also steal the member's MAC would.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import struct
import sys
import time

VXLAN_PORT = 4789
INNER_PORT = 9999
IP_TRANSPARENT = 19
IPV6_TRANSPARENT = 75


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def inner_frame(dst_mac: str, dst_ip: str, marker: bytes) -> bytes:
    """Ethernet + IPv4 + UDP (checksum 0: optional over IPv4) to dst_ip:9999."""
    src_ip = str(ipaddress.ip_interface(dst_ip + "/24").network.broadcast_address - 1)  # x.x.x.254
    udp = struct.pack("!HHHH", 40000, INNER_PORT, 8 + len(marker), 0) + marker
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                         socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    macs = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex("02000000fe01")
    return macs + b"\x08\x00" + header + udp


def send(args) -> None:
    family = socket.AF_INET6 if ":" in args.vtep else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if args.spoof:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_TRANSPARENT, 1)
        sock.bind((args.spoof, 0))
    vxlan = struct.pack("!B3xI", 0x08, args.vni << 8)  # flags: VNI valid; VNI in the top 24 bits
    payload = vxlan + inner_frame(args.dst_mac, args.dst_ip, args.marker.encode())
    for _ in range(args.count):
        sock.sendto(payload, (args.vtep, VXLAN_PORT))
        time.sleep(0.05)
    print("sent %d from %s" % (args.count, sock.getsockname()[0]))


def listen(args) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", args.port))
    print("listening", flush=True)
    deadline = time.monotonic() + args.timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        sock.settimeout(left)
        try:
            data, _ = sock.recvfrom(2048)
        except TimeoutError:
            return
        print(data.decode(errors="replace"), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    s.add_argument("--vtep", required=True)
    s.add_argument("--vni", type=int, default=100)
    s.add_argument("--dst-mac", required=True)
    s.add_argument("--dst-ip", required=True)
    s.add_argument("--marker", required=True)
    s.add_argument("--spoof")
    s.add_argument("--count", type=int, default=3)
    s.set_defaults(func=send)
    li = sub.add_parser("listen")
    li.add_argument("--port", type=int, default=INNER_PORT)
    li.add_argument("--timeout", type=float, default=4.0)
    li.set_defaults(func=listen)
    args = parser.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
