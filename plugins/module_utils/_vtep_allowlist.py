# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The VTEP allow-list: an nftables table of its own that accepts VXLAN only from the overlay.

VXLAN has no authentication: anything that can send UDP to a VTEP's port with a matching VNI
puts frames into the tenant's network. The table `inet overlay_vxlan` (never any other table, so
the host's own rules are left alone) hooks input and sends every datagram to a VXLAN port
(set `ports`) through chain `vxlan`:

    iifname "lo" counter name foreign drop            nothing legitimate arrives over lo (below)
    ip saddr . ether saddr @bound4 accept             a member's address from the member's MAC
    ip6 saddr . ether saddr @bound6 accept
    ip saddr @unbound4 accept                         members whose MAC is not known (routed
    ip6 saddr @unbound6 accept                        underlay): by address alone
    ip saddr @members4 counter name spoofed drop      a member's address from another MAC
    ip6 saddr @members6 counter name spoofed drop
    counter name foreign drop                         anybody else

BGP (vxlan_mode=evpn, `bgp_filter`): every TCP segment to port 179 (set `bgp_ports`, empty when
the filter is off) goes through chain `bgp`, which accepts only this host's BGP peers (the route
reflectors of a VTEP; the clients and other reflectors of a route reflector):

    iifname "lo" counter name bgp_foreign drop        bgpd peers with other hosts, never over lo
    ip saddr @bgp4 accept
    ip6 saddr @bgp6 accept
    counter name bgp_foreign drop                     anybody else: its SYN never gets an answer

Only the destination port is matched: the replies to bgpd's own connections (source port 179, to
one of this host's ephemeral ports) are not touched, so the sessions this host opens need no
conntrack state and no rule of their own. A peer's address is not bound to its MAC here: an
impersonated peer is refused by TCP-MD5 and GTSM (roles/evpn); this filter stops every other host
before bgpd (or the kernel's TCP) answers it at all.

Loopback: the kernel never sends VXLAN over lo (a vxlan device whose destination is a local
address hands the frame straight to the local device, without the IP stack), so a datagram to a
VXLAN port that arrives on lo was sent by a local process (any user may send to 127.0.0.1:4789,
or to the host's own underlay address, which is a member's): it is dropped and counted as foreign.

The sets are updated element by element when the overlay changes (no window without the
filter, counters kept); a table whose structure differs from this one (a set, chain or rule
changed by hand, or an older layout) is replaced in the same transaction.

libnftables is used through its Python binding (Debian: python3-nftables). The binding is pure
Python over ctypes, so an interpreter that cannot import it (a virtualenv: the lab's hosts run
the controller's) loads it from the distribution's dist-packages directory without putting that
directory on sys.path. Nothing here imports Ansible: the boot-time restore can run manage().
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import ipaddress
import json
import os
import sys
from contextlib import contextmanager

from ansible_collections.overlay.vxlan.plugins.module_utils import _validate as v
from ansible_collections.overlay.vxlan.plugins.module_utils._validate import InputError, OverlayError

FAMILY = "inet"
SET_TYPES = {
    "ports": "inet_service",
    "members4": "ipv4_addr", "members6": "ipv6_addr",
    "bound4": ["ipv4_addr", "ether_addr"], "bound6": ["ipv6_addr", "ether_addr"],
    "unbound4": "ipv4_addr", "unbound6": "ipv6_addr",
    "bgp_ports": "inet_service", "bgp4": "ipv4_addr", "bgp6": "ipv6_addr",
}
COUNTERS = ("foreign", "spoofed", "bgp_foreign")
# The BGP filter is data (set bgp_ports holds the port, or nothing): switching it on or off is an
# element update, which keeps the table and its counters, like a change of members.
BGP_PORT = 179
# Before the usual filter priority (0), so a host firewall's accept cannot let a frame past us.
BASE_CHAIN = {"type": "filter", "hook": "input", "prio": -10, "policy": "accept"}
RULES = {
    "input": ["udp dport @ports jump vxlan", "tcp dport @bgp_ports jump bgp"],
    "vxlan": [
        'iifname "lo" counter name foreign drop',
        "ip saddr . ether saddr @bound4 accept",
        "ip6 saddr . ether saddr @bound6 accept",
        "ip saddr @unbound4 accept",
        "ip6 saddr @unbound6 accept",
        "ip saddr @members4 counter name spoofed drop",
        "ip6 saddr @members6 counter name spoofed drop",
        "counter name foreign drop",
    ],
    "bgp": [
        'iifname "lo" counter name bgp_foreign drop',
        "ip saddr @bgp4 accept",
        "ip6 saddr @bgp6 accept",
        "counter name bgp_foreign drop",
    ],
}
DIST_PACKAGES = ("/usr/lib/python3/dist-packages",)


class NftError(OverlayError):
    """libnftables refused a command; the message is nft's own."""


def rule_tag(rule: str) -> str:
    """The comment each rule carries: a hash of its text, so a changed layout is recognised."""
    return "overlay.vxlan " + hashlib.sha1(rule.encode()).hexdigest()[:10]


# --- the binding ----------------------------------------------------------------------------------

def load_binding():
    """The `nftables` module: importable, or the distribution's (python3-nftables), loaded from
    its directory by file location so nothing else from dist-packages shadows our packages."""
    try:
        import nftables  # noqa: PLC0415  (optional dependency, looked for at run time)
        return nftables
    except ImportError:
        pass
    for base in DIST_PACKAGES:
        init = os.path.join(base, "nftables", "__init__.py")
        if os.path.exists(init):
            spec = importlib.util.spec_from_file_location("nftables", init, submodule_search_locations=[os.path.dirname(init)])
            module = importlib.util.module_from_spec(spec)
            sys.modules["nftables"] = module
            spec.loader.exec_module(module)
            return module
    raise OverlayError("the nftables Python binding is missing on this host: install python3-nftables "
                       "(apt install nftables python3-nftables)")


CLONE_NEWNET = 0x40000000


def _setns(fd: int, what: str) -> None:
    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OverlayError("cannot enter network namespace %s: %s" % (what, os.strerror(code)))


@contextmanager
def in_netns(netns: str | None):
    """Run the body inside a network namespace (libnftables works in the namespace of the
    thread that calls it), then go back: the boot-time restore applies the allow-list of a
    namespace first and builds everything else, in other namespaces, after it."""
    if not netns:
        yield
        return
    path = netns if netns.startswith("/") else os.path.join("/run/netns", netns)
    if not os.path.exists(path):
        raise InputError("netns", netns, "network namespace does not exist")
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            _setns(fd, netns)
        finally:
            os.close(fd)
        try:
            yield
        finally:
            _setns(home, "of this process")
    finally:
        os.close(home)


class Nft:
    """A libnftables context: text commands (one buffer = one atomic transaction), JSON output."""

    def __init__(self):
        binding = load_binding()
        try:
            self.ctx = binding.Nftables()
        except OSError as exc:
            raise OverlayError("libnftables cannot be loaded: %s (install nftables)" % exc) from None
        self.ctx.set_json_output(True)
        self.ctx.set_handle_output(False)

    def run(self, text: str, dry_run: bool = False):
        self.ctx.set_dry_run(dry_run)
        try:
            rc, out, err = self.ctx.cmd(text)
        finally:
            self.ctx.set_dry_run(False)
        if rc != 0:
            raise NftError("nftables refused the change: %s" % (err.strip() or "rc %d" % rc))
        return json.loads(out) if out.strip() else {}

    def list_table(self, table: str) -> list | None:
        rc, out, err = self.ctx.cmd("list table %s %s" % (FAMILY, table))
        if rc != 0:
            if "No such file or directory" in err:
                return None
            raise NftError("cannot read table %s %s: %s" % (FAMILY, table, err.strip()))
        try:
            return json.loads(out)["nftables"]
        except (ValueError, KeyError):
            # e.g. nft 1.0.6 prints a table with `flags owner` (another process's) as broken JSON
            raise NftError("cannot read table %s %s: nft's JSON output cannot be parsed (a table this module "
                           "did not make, e.g. one owned by another process?): %.200s" % (FAMILY, table, out.strip())) from None


# --- validating -------------------------------------------------------------------------------

def validate(params: dict) -> dict:
    table = params.get("table") or "overlay_vxlan"
    if not all(c.isalnum() or c == "_" for c in table) or not table[0].isalpha() or len(table) > 64:
        raise InputError("table", table, "use letters, digits and '_', starting with a letter")
    wanted = {"table": table, "state": params.get("state") or "present", "bind_mac": params.get("bind_mac", True),
              "ports": set(), "members": {}, "bgp_filter": bool(params.get("bgp_filter")), "bgp_peers": set()}
    for index, port in enumerate(params.get("ports") or []):
        wanted["ports"].add(v.port("ports[%d]" % index, port))
    for index, member in enumerate(params.get("members") or []):
        field = "members[%d]" % index
        if not isinstance(member, dict):
            raise InputError(field, member, "must be a dict with address and, optionally, mac")
        address = str(ipaddress.ip_address(v.unicast_ip(field + ".address", member.get("address"))))
        if address in wanted["members"]:
            raise InputError(field + ".address", address, "is listed twice")
        mac = member.get("mac")
        wanted["members"][address] = v.mac(field + ".mac", mac).lower() if mac else None
    peers = params.get("bgp_peers") or []
    if peers and not wanted["bgp_filter"]:
        # Peers that would silently not be filtered: say so rather than do nothing with them.
        raise InputError("bgp_peers", peers, "given while bgp_filter is false; set bgp_filter true to filter TCP port %d" % BGP_PORT)
    for index, peer in enumerate(peers):
        field = "bgp_peers[%d]" % index
        # Compressed, as nft lists them, so the second run compares equal.
        address = str(ipaddress.ip_address(v.unicast_ip(field, peer)))
        if address in wanted["bgp_peers"]:
            raise InputError(field, peer, "is listed twice")
        wanted["bgp_peers"].add(address)
    return wanted


def wanted_sets(wanted: dict) -> dict[str, set]:
    sets = {name: set() for name in SET_TYPES}
    sets["ports"] = set(wanted["ports"])
    for address, mac in wanted["members"].items():
        suffix = "6" if ":" in address else "4"
        sets["members" + suffix].add(address)
        if mac and wanted["bind_mac"]:
            sets["bound" + suffix].add((address, mac))
        else:
            sets["unbound" + suffix].add(address)
    if wanted.get("bgp_filter"):
        sets["bgp_ports"].add(BGP_PORT)
        for address in wanted["bgp_peers"]:
            sets["bgp6" if ":" in address else "bgp4"].add(address)
    return sets


# --- reading ----------------------------------------------------------------------------------

def _element(value):
    """One set element from nft's JSON, normalised like wanted_sets (addresses compressed)."""
    if isinstance(value, dict) and "elem" in value:
        value = value["elem"]["val"]
    if isinstance(value, dict) and "concat" in value:
        return tuple(_element(part) for part in value["concat"])
    if isinstance(value, str) and ":" in value and len(value) == 17 and value.count(":") == 5:
        return value.lower()
    if isinstance(value, str):
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            return value
    return value


def read(nft: Nft, table: str) -> dict:
    items = nft.list_table(table)
    state = {"exists": items is not None, "sets": {}, "counters": {}, "chains": {}, "rules": {}}
    for item in items or []:
        if "set" in item:
            entry = item["set"]
            state["sets"][entry["name"]] = {"type": entry["type"], "elements": {_element(e) for e in entry.get("elem", [])}}
        elif "counter" in item:
            entry = item["counter"]
            state["counters"][entry["name"]] = {"packets": entry["packets"], "bytes": entry["bytes"]}
        elif "chain" in item:
            entry = item["chain"]
            state["chains"][entry["name"]] = {key: entry.get(key) for key in BASE_CHAIN}
            state["rules"].setdefault(entry["name"], [])
        elif "rule" in item:
            entry = item["rule"]
            state["rules"].setdefault(entry["chain"], []).append(entry.get("comment"))
    return state


def structure_ok(state: dict) -> bool:
    """True if the table has exactly our sets, counters, chains and rules (by their tags)."""
    if {name: entry["type"] for name, entry in state["sets"].items()} != SET_TYPES:
        return False
    if set(state["counters"]) != set(COUNTERS) or set(state["chains"]) != set(RULES):
        return False
    if state["chains"]["input"] != BASE_CHAIN:
        return False
    if any(any(state["chains"][chain].values()) for chain in RULES if chain != "input"):  # regular chains: no hook
        return False
    return all(state["rules"].get(chain) == [rule_tag(rule) for rule in rules] for chain, rules in RULES.items())


# --- planning ---------------------------------------------------------------------------------

def _text(value) -> str:
    return " . ".join(value) if isinstance(value, tuple) else str(value)


def _elements(verb: str, table: str, name: str, values) -> list[str]:
    if not values:
        return []
    return ["%s element %s %s %s { %s }" % (verb, FAMILY, table, name, ", ".join(_text(x) for x in sorted(values, key=str)))]


def create_commands(table: str, sets: dict[str, set]) -> list[str]:
    def set_type(kind):
        return " . ".join(kind) if isinstance(kind, list) else kind

    where = "%s %s" % (FAMILY, table)
    cmds = ["add table " + where]
    cmds += ["add set %s %s { type %s; }" % (where, name, set_type(kind)) for name, kind in SET_TYPES.items()]
    cmds += ["add counter %s %s" % (where, name) for name in COUNTERS]
    cmds.append("add chain %s input { type filter hook input priority %d; policy accept; }" % (where, BASE_CHAIN["prio"]))
    cmds += ["add chain %s %s" % (where, chain) for chain in RULES if chain != "input"]
    for chain, rules in RULES.items():
        cmds += ['add rule %s %s %s comment "%s"' % (where, chain, rule, rule_tag(rule)) for rule in rules]
    for name, values in sets.items():
        cmds += _elements("add", table, name, values)
    return cmds


def plan(wanted: dict, state: dict) -> list[str]:
    """The commands of one transaction that bring the table to `wanted` (empty: nothing to do)."""
    table = wanted["table"]
    if wanted["state"] == "absent":
        return ["delete table %s %s" % (FAMILY, table)] if state["exists"] else []
    sets = wanted_sets(wanted)
    if not state["exists"] or not structure_ok(state):
        # replaced in the same transaction: the old filter stays until the new one is in place
        return (["delete table %s %s" % (FAMILY, table)] if state["exists"] else []) + create_commands(table, sets)
    cmds = []
    for name, values in sets.items():
        have = state["sets"][name]["elements"]
        cmds += _elements("delete", table, name, have - values)
        cmds += _elements("add", table, name, values - have)
    return cmds


def view(state_or_wanted: dict, exists: bool, sets: dict | None = None) -> dict:
    """The diff's view: ports and members (address, and the MAC it is bound to, if any); the BGP
    filter and its peers."""
    if not exists:
        return {"exists": False}
    members = {}
    for name in ("members4", "members6"):
        for address in sets.get(name, ()):
            members[address] = None
    for name in ("bound4", "bound6"):
        for address, mac in sets.get(name, ()):
            members[address] = mac
    return {"exists": True, "ports": sorted(sets.get("ports", ())),
            "members": [{"address": a, "mac": m} for a, m in sorted(members.items())],
            "bgp_filter": BGP_PORT in sets.get("bgp_ports", ()),
            "bgp_peers": sorted(set(sets.get("bgp4", ())) | set(sets.get("bgp6", ())))}


# AnsibleModule's keyword arguments: the module, overlay_plan and overlay_state (the record the
# boot-time restore applies) validate with the same spec.
SPEC = dict(
    argument_spec=dict(
        members=dict(type="list", elements="dict", default=[], options=dict(
            address=dict(type="str", required=True),
            mac=dict(type="str"),
        )),
        ports=dict(type="list", elements="int", default=[4789]),
        bind_mac=dict(type="bool", default=True),
        bgp_filter=dict(type="bool", default=False),
        bgp_peers=dict(type="list", elements="str", default=[]),
        table=dict(type="str", default="overlay_vxlan"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        netns=dict(type="str"),
    ),
    supports_check_mode=True,
)


def manage(module) -> dict:
    """Bring the table to the wanted state; the module's (or a Runner's) params and check mode."""
    wanted = validate(module.params)
    with in_netns(module.params.get("netns")):
        return _manage(module, wanted)


def _manage(module, wanted: dict) -> dict:
    try:
        nft = Nft()
    except OverlayError:
        if wanted["state"] == "absent":  # no nftables on the host: there is no table to remove
            return {"changed": False, "table": "%s %s" % (FAMILY, wanted["table"]), "counters": {}, "commands": []}
        raise
    state = read(nft, wanted["table"])
    cmds = plan(wanted, state)
    unbound = sorted(a for a, mac in wanted["members"].items() if not mac)
    if wanted["state"] == "present" and wanted["bind_mac"] and unbound:
        module.warn("VTEP allow-list table %s: no underlay MAC known for %s; accepted by source address alone, "
                    "so frames spoofing these addresses are not refused" % (wanted["table"], ", ".join(unbound)))
    if wanted["state"] == "present" and wanted["bgp_filter"] and not wanted["bgp_peers"]:
        module.warn("VTEP allow-list table %s: bgp_filter without bgp_peers drops every BGP connection to this host"
                    % wanted["table"])
    if cmds:
        # check mode: the kernel still checks the transaction (nft --check), and nothing is applied
        nft.run("\n".join(cmds) + "\n", dry_run=module.check_mode)
    before = view(state, state["exists"], {n: e["elements"] for n, e in state["sets"].items()})
    after = view(wanted, wanted["state"] == "present", wanted_sets(wanted) if wanted["state"] == "present" else None)
    counters = read(nft, wanted["table"])["counters"] if not module.check_mode else state["counters"]
    result = {"changed": bool(cmds), "table": "%s %s" % (FAMILY, wanted["table"]), "counters": counters,
              "commands": cmds}
    if getattr(module, "_diff", False):
        result["diff"] = {"before": before, "after": after}
    return result
