"""overlay.vxlan.vtep_allowlist against the real kernel's nftables, inside throwaway namespaces.

Every result is paired with what `nft -j list table inet overlay_vxlan` reads back in the
namespace. What the filter does to real VXLAN traffic (an intruder, a spoofer, a local user,
legitimate peers) is tests/integration/test_allowlist.py. The boot-time restore (the record
overlay_state writes, run as the boot unit runs it) applies the allow-list first and brings no
vxlan device up while it cannot be applied; the nftables.service companion unit's command puts
a flushed table back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager

import pytest
from helpers import Namespace, ip_json, ns_exec, run_module

# A process that creates `table inet overlay_vxlan { flags owner; }` in a namespace and keeps it
# while it runs: the kernel then refuses every change to that table by anyone else (EPERM), the
# way it refuses when nftables cannot be used. The table goes when the process exits.
HOLDER = """
import sys
sys.path.append("/usr/lib/python3/dist-packages")
import nftables
nft = nftables.Nftables()  # kept: the table lives as long as this context's socket
rc, out, err = nft.cmd("add table inet overlay_vxlan { flags owner; }")
print("held" if rc == 0 else "failed: " + err, flush=True)
sys.stdin.read()
"""



@pytest.fixture
def ns():
    """conftest's `ns` (an empty namespace with lo up, removed even on failure), named nft-*: this
    file's namespaces are told apart from those of tests running beside it."""
    space = Namespace("nft")
    try:
        ns_exec(space.name, "ip", "link", "set", "lo", "up")
        yield space
    finally:
        space.remove()


MEMBERS = [
    {"address": "192.168.1.2", "mac": "02:FA:C0:A8:01:02"},
    {"address": "2001:0db8:1::3", "mac": "02-fb-00-00-00-03"},
    {"address": "192.168.1.9"},  # no MAC known: accepted by address alone, with a warning
]


def table(ns: str) -> dict | None:
    """{'handle': table handle, 'sets': {name: elements}, 'rules': n} or None if absent."""
    proc = ns_exec(ns, "nft", "-j", "-a", "list", "table", "inet", "overlay_vxlan", check=False)
    if proc.returncode != 0:
        return None
    items = json.loads(proc.stdout)["nftables"]
    result = {"sets": {}, "rules": 0, "foreign": None}
    for item in items:
        if "table" in item:
            result["handle"] = item["table"]["handle"]
        elif "set" in item:
            result["sets"][item["set"]["name"]] = sorted(
                " . ".join(e["concat"]) if isinstance(e, dict) else str(e) for e in item["set"].get("elem", []))
        elif "rule" in item:
            result["rules"] += 1
        elif "counter" in item and item["counter"]["name"] == "foreign":
            result["foreign"] = item["counter"]["handle"]
    return result


def other_table(ns: str) -> str:
    return ns_exec(ns, "nft", "list", "table", "inet", "host_rules").stdout


def test_check_apply_idempotent_update_in_place_and_absent(ns):
    name = ns.name
    # the host's own rules: never touched
    ns_exec(name, "nft", "add table inet host_rules; add chain inet host_rules c { type filter hook input priority 0; }; "
            "add rule inet host_rules c tcp dport 22 accept")
    host_rules = other_table(name)
    args = {"netns": name, "members": MEMBERS, "ports": [4789, 8472]}

    checked = run_module("vtep_allowlist", args, check=True)
    assert checked["changed"] and not checked.get("failed"), checked
    assert table(name) is None  # check mode changed nothing
    assert checked["diff"]["before"] == {"exists": False}
    assert checked["diff"]["after"]["members"] == [
        {"address": "192.168.1.2", "mac": "02:fa:c0:a8:01:02"}, {"address": "192.168.1.9", "mac": None},
        {"address": "2001:db8:1::3", "mac": "02:fb:00:00:00:03"}]
    assert "no underlay MAC known for 192.168.1.9" in json.dumps(checked["warnings"])

    applied = run_module("vtep_allowlist", args)
    assert applied["changed"] and applied["counters"] == dict.fromkeys(("foreign", "spoofed", "bgp_foreign"), {"packets": 0, "bytes": 0})
    made = table(name)
    assert made["sets"]["ports"] == ["4789", "8472"]
    assert made["sets"]["members4"] == ["192.168.1.2", "192.168.1.9"] and made["sets"]["members6"] == ["2001:db8:1::3"]
    assert made["sets"]["bound4"] == ["192.168.1.2 . 02:fa:c0:a8:01:02"]
    assert made["sets"]["bound6"] == ["2001:db8:1::3 . 02:fb:00:00:00:03"]
    assert made["sets"]["unbound4"] == ["192.168.1.9"] and made["rules"] == 14
    assert made["sets"]["bgp_ports"] == [] and made["sets"]["bgp4"] == []  # no BGP filter unless asked

    again = run_module("vtep_allowlist", args)
    assert not again["changed"] and again["commands"] == []
    assert run_module("vtep_allowlist", args, check=True)["changed"] is False

    # a member leaves, another joins: the sets change in place (same table, same counter objects)
    args["members"] = MEMBERS[:2] + [{"address": "2001:db8:1::4", "mac": "02:fb:00:00:00:04"}]
    updated = run_module("vtep_allowlist", args)
    assert updated["changed"] and all("element" in cmd for cmd in updated["commands"]), updated["commands"]
    after = table(name)
    assert (after["handle"], after["foreign"]) == (made["handle"], made["foreign"])
    assert after["sets"]["members4"] == ["192.168.1.2"] and after["sets"]["unbound4"] == []
    assert after["sets"]["bound6"] == ["2001:db8:1::3 . 02:fb:00:00:00:03", "2001:db8:1::4 . 02:fb:00:00:00:04"]

    # a rule deleted by hand: the table is replaced in one transaction and is whole again
    handles = json.loads(ns_exec(name, "nft", "-j", "-a", "list", "chain", "inet", "overlay_vxlan", "vxlan").stdout)
    last = [item["rule"]["handle"] for item in handles["nftables"] if "rule" in item][-1]
    ns_exec(name, "nft", "delete", "rule", "inet", "overlay_vxlan", "vxlan", "handle", str(last))
    repaired = run_module("vtep_allowlist", args)
    assert repaired["changed"] and repaired["commands"][0] == "delete table inet overlay_vxlan"
    assert table(name)["rules"] == 14 and not run_module("vtep_allowlist", args)["changed"]

    # bind_mac false (a routed underlay): every member by address alone
    routed = run_module("vtep_allowlist", dict(args, bind_mac=False))
    assert routed["changed"] and table(name)["sets"]["bound6"] == [] and table(name)["sets"]["unbound6"] == ["2001:db8:1::3", "2001:db8:1::4"]

    gone = run_module("vtep_allowlist", {"netns": name, "state": "absent"}, check=True)
    assert gone["changed"] and table(name) is not None
    assert run_module("vtep_allowlist", {"netns": name, "state": "absent"})["changed"]
    assert table(name) is None
    assert not run_module("vtep_allowlist", {"netns": name, "state": "absent"})["changed"]
    assert other_table(name) == host_rules


def test_bad_input_is_refused_before_nftables_is_touched(ns):
    for members, field in (([{"address": "ff05::1"}], "members[0].address"),
                           ([{"address": "192.168.1.2", "mac": "01:00:5e:00:00:01"}], "members[0].mac"),
                           ([{"address": "192.168.1.2"}, {"address": "192.168.1.2"}], "members[1].address")):
        result = run_module("vtep_allowlist", {"netns": ns.name, "members": members})
        assert result.get("failed") and result["field"] == field, result
    assert run_module("vtep_allowlist", {"netns": ns.name, "table": "bad name"})["field"] == "table"
    assert run_module("vtep_allowlist", {"netns": ns.name, "ports": [0]})["field"] == "ports[0]"
    missing = run_module("vtep_allowlist", {"netns": "ovxt-does-not-exist"})
    assert missing.get("failed") and missing["msg"] == "netns='ovxt-does-not-exist': network namespace does not exist"
    assert table(ns.name) is None


@contextmanager
def table_held_by_another_process(ns: str):
    """The namespace's table inet overlay_vxlan owned by a helper process for the body's duration."""
    holder = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", HOLDER],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.stdin.close()
        try:
            holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()
    assert table(ns) is None  # the kernel removed the held table with its owner


def test_a_table_of_another_process_is_an_error_not_a_traceback(ns):
    """nft 1.0.6 prints a table with `flags owner` as broken JSON: the module fails with its
    own message (the run stops there, fail closed), it does not crash."""
    with table_held_by_another_process(ns.name):
        result = run_module("vtep_allowlist", {"netns": ns.name, "members": MEMBERS[:1]})
        assert result.get("failed") and "Traceback" not in result["_stderr"], result
        assert result["msg"].startswith("cannot read table inet overlay_vxlan: "), result["msg"]


# The distribution's binding (python3-nftables), hidden for one process: an empty read-only
# directory mounted over it in a mount namespace of that process's own, gone when it exits.
WITHOUT_BINDING = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   'mount -t tmpfs -o ro none /usr/lib/python3/dist-packages/nftables && exec "$@"', "sh"]


def restore(path: str, *extra: str, binding: bool = True) -> subprocess.CompletedProcess:
    """As the boot units run it: restore.py (overlay-vxlan.service), or the record's
    _restore module with --allowlist (overlay-vxlan-allowlist.service); no Ansible on the path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if extra:
        env["PYTHONPATH"] = os.path.join(path, "lib")
        argv = [sys.executable, "-m", "ansible_collections.overlay.vxlan.plugins.module_utils._restore", *extra]
    else:
        argv = [sys.executable, "-I", os.path.join(path, "restore.py")]
    return subprocess.run(([] if binding else WITHOUT_BINDING) + argv, capture_output=True, text=True, env=env,
                          timeout=60, cwd="/")


def vxlan_state(ns: str) -> str | None:
    """'up' or 'down' for the namespace's vxlan0, None if it does not exist."""
    links = {item["ifname"]: item for item in ip_json(ns, "link", "show")}
    if "vxlan0" not in links:
        return None
    return "up" if "UP" in links["vxlan0"]["flags"] else "down"


def test_restore_applies_the_allowlist_first_and_fails_closed(underlay, tmp_path):
    host = underlay.name
    path = str(tmp_path / "state")
    record = {
        "path": path,
        "linux_bridge": [{"name": "br1", "netns": host}],
        "vxlan_link": [{"name": "vxlan0", "vni": 100, "dstport": 4789, "local": "192.168.1.2", "dev": "eth0",
                        "learning": False, "proxy": True, "master": "br1", "netns": host}],
        "bridge_fdb": [{"dev": "vxlan0", "state": "exact", "netns": host,
                        "entries": [{"mac": "02:00:64:00:00:03", "dst": "192.168.1.3"}]}],
        "vtep_allowlist": [{"netns": host, "members": MEMBERS[:1] + [{"address": "192.168.1.3"}], "ports": [4789],
                            "bgp_filter": True, "bgp_peers": ["192.168.1.10"]}],
    }
    assert run_module("overlay_state", record)["changed"] is True

    # The allow-list cannot be applied (python3-nftables missing): the bridge comes back, the
    # vxlan device does not, and the restore fails naming the cause.
    refused = restore(path, binding=False)
    assert vxlan_state(host) is None and table(host) is None, "a vxlan device came up without the allow-list"
    assert refused.returncode == 1, refused
    assert ("FAILED vtep_allowlist inet overlay_vxlan: the nftables Python binding is missing on this host: install "
            "python3-nftables (apt install nftables python3-nftables); no VXLAN device is brought up until it is in "
            "place (fail closed)") in refused.stderr, refused.stderr
    assert "FAILED vxlan_link vxlan0: not applied, the VTEP allow-list is not in place" in refused.stderr
    assert "br1" in {item["ifname"] for item in ip_json(host, "link", "show")}

    # Once it can be applied: the allow-list first, then the vxlan device and its table.
    built = restore(path)
    assert built.returncode == 0, built.stderr
    restored = [line.split("restored ", 1)[1] for line in built.stdout.splitlines() if " restored " in line]
    assert restored[0] == "vtep_allowlist inet overlay_vxlan" and "vxlan_link vxlan0" in restored, built.stdout
    assert vxlan_state(host) == "up" and table(host)["sets"]["bound4"] == ["192.168.1.2 . 02:fa:c0:a8:01:02"]
    # The BGP filter is part of the record: TCP 179 only from the peer, from boot on.
    assert (table(host)["sets"]["bgp_ports"], table(host)["sets"]["bgp4"]) == (["179"], ["192.168.1.10"])

    # nftables.service flushed the ruleset: the companion unit's command puts the table back,
    # and touches nothing else.
    ns_exec(host, "nft", "flush", "ruleset")
    back = restore(path, "--allowlist", os.path.join(path, "state.json"))
    assert back.returncode == 0 and "restored vtep_allowlist inet overlay_vxlan" in back.stdout, (back.stdout, back.stderr)
    assert table(host)["sets"]["unbound4"] == ["192.168.1.3"] and vxlan_state(host) == "up"
    assert (table(host)["sets"]["bgp_ports"], table(host)["sets"]["bgp4"]) == (["179"], ["192.168.1.10"])
    again = restore(path, "--allowlist", os.path.join(path, "state.json"))
    assert again.returncode == 0 and "the VTEP allow-list is in place" in again.stdout, again.stdout

    # Run by hand while the vxlan device exists and the table is gone and cannot be applied: the
    # device is set down, not left decapsulating for anybody.
    ns_exec(host, "nft", "delete", "table", "inet", "overlay_vxlan")
    held = restore(path, binding=False)
    assert held.returncode == 1 and "FAILED vxlan_link vxlan0: not applied, the VTEP allow-list is not in place; " \
        "it existed and is set down" in held.stderr, held.stderr
    assert vxlan_state(host) == "down"
    assert restore(path).returncode == 0 and vxlan_state(host) == "up" and table(host) is not None


# --- BGP (vxlan_mode=evpn): TCP 179 only from the peers -----------------------------------------

BGP_PEERS = ["192.168.1.10", "2001:0DB8:1::11"]


def bgp_chains(ns: str) -> dict[str, list[str]]:
    """The rules of chains input and bgp, as nft prints them (comments cut off)."""
    out = ns_exec(ns, "nft", "list", "table", "inet", "overlay_vxlan").stdout
    chains, current = {}, None
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("chain "):
            current = chains.setdefault(line.split()[1], [])
        elif current is not None and line and not line.startswith(("type ", "}")):
            current.append(line.split(" comment ")[0])
    return {name: rules for name, rules in chains.items() if name in ("input", "bgp")}


def test_bgp_filter_check_apply_idempotent_switch_off_in_place(ns):
    name = ns.name
    args = {"netns": name, "members": MEMBERS[:1], "bgp_filter": True, "bgp_peers": BGP_PEERS}
    checked = run_module("vtep_allowlist", args, check=True)
    assert checked["changed"] and table(name) is None, checked
    assert checked["diff"]["after"]["bgp_filter"] is True
    assert checked["diff"]["after"]["bgp_peers"] == ["192.168.1.10", "2001:db8:1::11"]

    applied = run_module("vtep_allowlist", args)
    assert applied["changed"] and applied["counters"]["bgp_foreign"] == {"packets": 0, "bytes": 0}
    made = table(name)
    # Read back from the kernel: the port, each family's peers (compressed, as nft lists them), the rules.
    assert (made["sets"]["bgp_ports"], made["sets"]["bgp4"], made["sets"]["bgp6"]) == (["179"], ["192.168.1.10"], ["2001:db8:1::11"])
    assert bgp_chains(name) == {
        "input": ["udp dport @ports jump vxlan", "tcp dport @bgp_ports jump bgp"],
        "bgp": ['iifname "lo" counter name "bgp_foreign" drop', "ip saddr @bgp4 accept", "ip6 saddr @bgp6 accept",
                'counter name "bgp_foreign" drop'],
    }
    # Second run quiet, in check mode too (the upper-case, uncompressed address compares equal).
    again = run_module("vtep_allowlist", args)
    assert not again["changed"] and again["commands"] == []
    assert run_module("vtep_allowlist", args, check=True)["changed"] is False

    # A peer leaves, another joins; then the filter goes off: set updates, same table and counter.
    args["bgp_peers"] = ["192.168.1.10", "192.168.1.12"]
    moved = run_module("vtep_allowlist", args)
    assert sorted(moved["commands"]) == ["add element inet overlay_vxlan bgp4 { 192.168.1.12 }",
                                         "delete element inet overlay_vxlan bgp6 { 2001:db8:1::11 }"], moved["commands"]
    off = run_module("vtep_allowlist", {"netns": name, "members": MEMBERS[:1]})
    assert off["changed"] and all("element" in cmd for cmd in off["commands"]), off["commands"]
    assert off["diff"]["before"]["bgp_filter"] is True and off["diff"]["after"] == dict(off["diff"]["before"], bgp_filter=False, bgp_peers=[])
    after = table(name)
    assert (after["handle"], after["foreign"]) == (made["handle"], made["foreign"])
    assert after["sets"]["bgp_ports"] == [] and after["sets"]["bgp4"] == []

    # Without peers every BGP connection is dropped: allowed, with a warning.
    lonely = run_module("vtep_allowlist", {"netns": name, "bgp_filter": True})
    assert "bgp_filter without bgp_peers drops every BGP connection" in json.dumps(lonely["warnings"])


def test_bgp_bad_input_is_refused_before_nftables_is_touched(ns):
    for extra, field in (({"bgp_filter": True, "bgp_peers": ["192.168.1.300"]}, "bgp_peers[0]"),
                         ({"bgp_filter": True, "bgp_peers": ["224.0.0.5"]}, "bgp_peers[0]"),
                         ({"bgp_filter": True, "bgp_peers": [""]}, "bgp_peers[0]"),
                         ({"bgp_filter": True, "bgp_peers": ["192.168.1.10", "192.168.1.010"]}, "bgp_peers[1]"),
                         ({"bgp_filter": True, "bgp_peers": ["2001:db8::1", "2001:DB8:0::1"]}, "bgp_peers[1]"),
                         ({"bgp_peers": ["192.168.1.10"]}, "bgp_peers")):
        result = run_module("vtep_allowlist", dict({"netns": ns.name}, **extra))
        assert result.get("failed") and result.get("field") == field and not result.get("changed"), (extra, result)
    assert table(ns.name) is None


# Accepts connections on (address, 179) and prints each client's address; or connects to
# (address, 179) from `source` and prints "connected" (exit 1 on a timeout).
TCP = """
import socket, sys
if sys.argv[1] == "listen":
    server = socket.create_server((sys.argv[2], 179))
    print("listening", flush=True)
    while True:
        conn, peer = server.accept()
        print(peer[0], flush=True)
        conn.close()
try:
    socket.create_connection((sys.argv[2], 179), timeout=2, source_address=(sys.argv[3], 0)).close()
except OSError as exc:
    print(exc)
    sys.exit(1)
print("connected")
"""


@contextmanager
def bgp_listener(ns: str, address: str):
    """A TCP listener on address:179 in `ns`; yields a function returning the clients it accepted."""
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", TCP, "listen", address],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "listening"
        accepted = []

        def clients():
            # The listener's lines so far, without blocking: it prints one per connection.
            os.set_blocking(proc.stdout.fileno(), False)
            accepted.extend(line.strip() for line in proc.stdout if line.strip())
            return accepted

        yield clients
    finally:
        proc.kill()
        proc.wait(timeout=10)


def connects(ns: str, address: str, source: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", TCP, "connect", address, source],
                          capture_output=True, text=True, timeout=20).returncode == 0


@pytest.fixture
def two_hosts(ns):
    """`ns` (this host, 192.168.1.2 on eth0) and a second namespace (the peers and the intruder:
    192.168.1.10 and .66 on eth0) joined by a veth pair; the second removed even on failure."""
    other = Namespace("nft")
    try:
        ns_exec(ns.name, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", other.name)
        for space, addresses in ((ns.name, ["192.168.1.2/24"]), (other.name, ["192.168.1.10/24", "192.168.1.66/24"])):
            for address in addresses:
                ns_exec(space, "ip", "addr", "add", address, "dev", "eth0")
            ns_exec(space, "ip", "link", "set", "eth0", "up")
            ns_exec(space, "ip", "link", "set", "lo", "up")
        yield ns.name, other.name
    finally:
        other.remove()


def test_bgp_filter_on_real_connections(two_hosts):
    """With the filter: the peer (192.168.1.10) connects to this host's port 179, the intruder
    (192.168.1.66, same segment) never does and is counted, and so is a local connection over lo;
    the connections this host opens itself (bgpd's own sessions), to the peer and to anybody, get
    their replies (source port 179) without any rule or conntrack state for them."""
    host, other = two_hosts
    applied = run_module("vtep_allowlist", {"netns": host, "bgp_filter": True, "bgp_peers": ["192.168.1.10"]})
    assert applied["changed"], applied
    with bgp_listener(host, "0.0.0.0") as clients:
        assert connects(other, "192.168.1.2", "192.168.1.10")
        assert not connects(other, "192.168.1.2", "192.168.1.66")
        assert not connects(host, "192.168.1.2", "192.168.1.2")  # over lo
        assert clients() == ["192.168.1.10"]
    counted = run_module("vtep_allowlist", {"netns": host, "bgp_filter": True, "bgp_peers": ["192.168.1.10"]})["counters"]
    # The SYN and its retransmits within the 2 s timeout, for each of the two refused.
    assert counted["bgp_foreign"]["packets"] >= 4 and counted["foreign"]["packets"] == 0, counted
    with bgp_listener(other, "0.0.0.0") as clients:
        assert connects(host, "192.168.1.10", "192.168.1.2")
        assert connects(host, "192.168.1.66", "192.168.1.2")
        assert clients() == ["192.168.1.2", "192.168.1.2"]
    # Without the filter the intruder gets through (the assertions above can fail).
    run_module("vtep_allowlist", {"netns": host})
    with bgp_listener(host, "0.0.0.0") as clients:
        assert connects(other, "192.168.1.2", "192.168.1.66")
        assert clients() == ["192.168.1.66"]
