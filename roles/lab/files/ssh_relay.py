# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""stdio <-> TCP relay for SSH's ProxyCommand: `ssh_relay.py HOST PORT`.

The machine lab runs it inside the lab's fabric network namespace (nsenter --net=<fabric pin>),
so SSH reaches a lab machine over the lab's underlay with nothing added to the machine's own
network namespace. Debian may lack nc and socat; the controller's Python is always there.
"""

import os
import selectors
import socket
import sys


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    sock = socket.create_connection((host, port), timeout=10)
    sock.settimeout(None)
    sel = selectors.DefaultSelector()
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    sel.register(stdin, selectors.EVENT_READ)
    sel.register(sock, selectors.EVENT_READ)
    open_ends = 2
    while open_ends:
        for key, _events in sel.select():
            if key.fileobj == stdin:
                data = os.read(stdin, 65536)
                if not data:  # ssh closed its side: half-close, keep reading the answer
                    sel.unregister(stdin)
                    sock.shutdown(socket.SHUT_WR)
                    open_ends -= 1
                else:
                    sock.sendall(data)
            else:
                data = sock.recv(65536)
                if not data:
                    return 0
                view = memoryview(data)
                while view:
                    view = view[os.write(stdout, view):]
    return 0


if __name__ == "__main__":
    sys.exit(main())
