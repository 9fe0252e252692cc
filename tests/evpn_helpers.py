"""What the EVPN lab tests read back from a lab host (FRR's JSON, the kernel's tables, nftables),
shared by tests/integration/test_evpn.py and test_evpn_peers.py. `lab` is a lab_fixtures.Lab."""

from __future__ import annotations

import json
import time

from lab_fixtures import recap


def assert_ok(proc, hosts, changed=None):
    stats = recap(proc.stdout)
    for host in hosts:
        assert stats[host]["failed"] == 0 and stats[host]["unreachable"] == 0, proc.stdout[-4000:]
        if changed is not None:
            assert stats[host]["changed"] == changed, "%s changed=%d\n%s" % (host, stats[host]["changed"], proc.stdout[-6000:])


def fdb(lab, host: str) -> list[dict]:
    return json.loads(lab.enter(host, "bridge", "-j", "fdb", "show", "dev", "vxlan0").stdout or "[]")


def extern_learn(lab, host: str) -> dict[str, str]:
    """mac -> dst of zebra's `self extern_learn` entries on vxlan0."""
    return {e["mac"]: e["dst"] for e in fdb(lab, host) if "extern_learn" in e.get("flags", []) and e.get("dst")}


def mac_of(ip: str) -> str:
    return "02:00:64:00:00:%02x" % int(ip.rsplit(".", 1)[1])


def bridge_addresses(lab, host: str) -> list[str]:
    """br1's addresses as the kernel has them (IPv6 link-local left out)."""
    info = json.loads(lab.enter(host, "ip", "-j", "addr", "show", "dev", "br1").stdout)[0]["addr_info"]
    return sorted("%s/%d" % (a["local"], a["prefixlen"]) for a in info if not a["local"].startswith("fe80:"))


def zebra_neighbours(lab, host: str) -> dict[str, str]:
    """ip -> lladdr of zebra's extern_learn neighbour entries on br1 (the remote VMs' MAC+IP)."""
    entries = json.loads(lab.enter(host, "ip", "-j", "neigh", "show", "dev", "br1").stdout or "[]")
    return {e["dst"]: e["lladdr"] for e in entries if "extern_learn" in e}  # ip -j: "extern_learn": null


def macip_routes(lab, host: str) -> set[tuple[str, str, str]]:
    """(mac, ip, next hop) of every type-2 route with an IP in bgpd's table."""
    table = vtysh_json(lab, host, "show bgp l2vpn evpn route type macip json")
    found = set()
    for entry in table.values():
        if not isinstance(entry, dict):
            continue
        for prefix, route in entry.items():
            if prefix.startswith("[2]") and isinstance(route, dict):
                for path in (p for paths in route.get("paths", []) for p in paths):
                    if path.get("ip") and path.get("bestpath"):
                        hop = path.get("nexthops", [{}])[0].get("ip")
                        found.add((path["mac"], path["ip"], hop))
    return found


def vtysh_json(lab, host: str, command: str) -> dict:
    return json.loads(lab.enter(host, "vtysh", "-c", command).stdout or "{}")


def wait_for(predicate, timeout: float, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def bgp_neighbors(lab, host: str) -> dict:
    return vtysh_json(lab, host, "show bgp neighbors json")


def listening(lab, host: str) -> set[str]:
    """The local addresses of the host's sockets listening on TCP 179 (`*` or `[::]`: every one)."""
    out = lab.enter(host, "ss", "-ltnH", "sport = :179").stdout
    return {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()}


def md5_sessions(lab, host: str) -> str:
    """`ss -ti` of the host's established BGP sessions: a TCP-MD5 signed one shows `md5keys:<peer>/32=`
    and its key (ss prints it, as root)."""
    return lab.enter(host, "ss", "-tinH", "state", "established", "( sport = :179 or dport = :179 )").stdout


def tcp_ext(lab, host: str) -> dict[str, int]:
    """The host's TcpExt counters (/proc/net/netstat of its network namespace)."""
    rows = [line.split() for line in lab.enter(host, "cat", "/proc/net/netstat").stdout.splitlines() if line.startswith("TcpExt:")]
    return dict(zip(rows[0][1:], map(int, rows[1][1:]), strict=True))


def passive_opens(lab, host: str) -> int:
    """How many TCP connections the host's kernel has accepted (Tcp PassiveOpens, /proc/net/snmp)."""
    rows = [line.split() for line in lab.enter(host, "cat", "/proc/net/snmp").stdout.splitlines() if line.startswith("Tcp:")]
    return int(dict(zip(rows[0][1:], rows[1][1:], strict=True))["PassiveOpens"])


def allowlist(lab, host: str) -> dict:
    """The host's table inet overlay_vxlan read back: {'sets': name -> elements (as text),
    'bgp': chain bgp's rules, 'input': chain input's rules (nft's own text, without comments),
    'counters': name -> packets}."""
    items = json.loads(lab.enter(host, "nft", "-j", "list", "table", "inet", "overlay_vxlan").stdout)["nftables"]
    found = {"sets": {}, "counters": {}}
    for item in items:
        if "set" in item:
            found["sets"][item["set"]["name"]] = sorted(str(e) for e in item["set"].get("elem", []) if not isinstance(e, dict))
        elif "counter" in item:
            found["counters"][item["counter"]["name"]] = item["counter"]["packets"]
    text = lab.enter(host, "nft", "list", "table", "inet", "overlay_vxlan").stdout
    chain = None
    for line in (raw.strip() for raw in text.splitlines()):
        if line.startswith("chain "):
            chain = found.setdefault(line.split()[1], [])
        elif chain is not None and line and not line.startswith(("type ", "}")):
            chain.append(line.split(" comment ")[0])
    return found


def bgp_dropped(lab, host: str) -> int:
    """Packets the host's allow-list dropped on TCP 179 (0 while it has no such counter)."""
    out = lab.enter(host, "nft", "-j", "list", "counters", "table", "inet", "overlay_vxlan", check=False).stdout
    counters = {c["counter"]["name"]: c["counter"]["packets"] for c in json.loads(out or '{"nftables": []}')["nftables"] if "counter" in c}
    return counters.get("bgp_foreign", 0)


def vtysh(lab, host: str, *commands: str) -> str:
    argv = ["vtysh"]
    for command in commands:
        argv += ["-c", command]
    return lab.enter(host, *argv).stdout


def best_next_hops(lab, host: str, mac: str) -> set[str]:
    """The next hops of bgpd's best type-2 paths for `mac` on `host`."""
    table = vtysh_json(lab, host, "show bgp l2vpn evpn route type macip json")
    hops = set()
    for entry in table.values():
        for prefix, route in (entry.items() if isinstance(entry, dict) else ()):
            if prefix.startswith("[2]") and isinstance(route, dict):
                for path in (p for paths in route.get("paths", []) for p in paths):
                    if path.get("mac") == mac and path.get("bestpath"):
                        hops.update(n.get("ip") for n in path.get("nexthops", []))
    return hops
