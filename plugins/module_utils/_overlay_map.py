# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The whole overlay as one map, built and checked once per run on the controller.

`build(hosts)` takes every overlay host's variables as plain Python values and returns
`(overlay_map, problems)`: the map of every network with all its endpoints (host, VTEP, VM
address, MAC...) and every host's underlay, and the list of everything wrong with the inventory,
each problem naming the host(s), the variable and its value. Nothing stops at the first problem:
the point is to fail the run once, before any host changes, with the full list. The map is only
meaningful when `problems` is empty.

`host_share(overlay_map, host)` is one host's share of the map, in the form the vxlan_mesh filter
returns it, so the roles can later take their share instead of recomputing the mesh per host.
`underlay_problems()` compares a host's own interfaces (overlay_info) with its variables.

The checks are the modules' own validators (_validate) and the mesh filter's MAC derivation, so
the whole-inventory check can never judge a value differently from the module that will use it.
This file is controller-side only (the filter plugin imports it; no module does).
"""

from __future__ import annotations

import difflib
import ipaddress
from collections import Counter, defaultdict

from ansible_collections.overlay.vxlan.plugins.module_utils import _validate as v
from ansible_collections.overlay.vxlan.plugins.module_utils._overlay_rules import group_problem, overlay_mtu
from ansible_collections.overlay.vxlan.plugins.module_utils._overlay_rules import mode as _mode

# The mesh filter's derivation, not a copy: a derived-MAC clash must be judged on the MAC the
# endpoint role will really set.
from ansible_collections.overlay.vxlan.plugins.module_utils._vm_mac import vm_mac

IPV6_MIN_MTU = 1280
# What the roles use when the inventory leaves a variable out (roles/*/defaults/main.yml).
ROLE_DEFAULTS = {
    "vxlan_underlay_dev": "eth0",
    "vxlan_underlay_mtu": 1500,
    "vxlan_mode": "static",
    "vxlan_ttl": None,
    "vxlan_networks": [],
    "vxlan_endpoints": [],
    # EVPN's bridge addresses (SVIs), used in vxlan_mode=evpn only (svi_addresses below).
    "evpn_svi": True,
    "evpn_svi_addresses": {},
}
VARIABLES = ("vxlan_underlay_ip",) + tuple(ROLE_DEFAULTS)
# A network's optional keys and what the mesh filter uses without them.
NETWORK_DEFAULTS = {"bridge": "br1", "vxlan_dev": "vxlan0", "dstport": 4789}
_SHOWN_HOSTS = 3


class Unreadable:
    """A variable whose value could not be evaluated (e.g. a template naming an undefined variable)."""

    def __init__(self, reason: str):
        self.reason = reason

    def __repr__(self):
        return "<cannot be evaluated>"


def names(hosts) -> str:
    """`h1, h2, h3` or `h1, h2, h3 and 997 more`: a message stays short on a large fleet."""
    hosts = list(hosts)
    more = " and %d more" % (len(hosts) - _SHOWN_HOSTS) if len(hosts) > _SHOWN_HOSTS else ""
    return ", ".join(hosts[:_SHOWN_HOSTS]) + more


def who(hosts) -> str:
    """`host h1`, `hosts h1, h2, h3` or `hosts h1, h2, h3 and 997 more`."""
    hosts = list(hosts)
    return ("host %s" if len(hosts) == 1 else "hosts %s") % names(hosts)


class Problems(list):
    def add(self, hosts, field: str, value, reason: str) -> None:
        self.append("%s: %s=%r: %s" % (who(hosts), field, value, reason))

    def check(self, hosts, func, field: str, value, *args, **kwargs):
        """`func(field, value, ...)` from _validate; None (and the problem recorded) if it refuses."""
        if isinstance(value, Unreadable):
            self.append("%s: %s cannot be evaluated: %s" % (who(hosts), field, value.reason))
            return None
        try:
            return func(field, value, *args, **kwargs)
        except v.OverlayError as exc:
            self.append("%s: %s" % (who(hosts), exc.msg))
            return None


def report(problems: list) -> str:
    """The failure message: every problem, one per line."""
    return "The overlay inventory has %d problem%s; no host has been changed:\n- %s" % (
        len(problems), "" if len(problems) == 1 else "s", "\n- ".join(problems))


def _variants(hosts: dict, var: str) -> list[tuple[object, list[str]]]:
    """The distinct values of a variable with the hosts holding each, most common first, so a
    group variable is judged (and reported) once, not once per host."""
    groups: dict = {}
    for host in sorted(hosts):
        value = hosts[host].get(var, ROLE_DEFAULTS.get(var))
        key = repr(value)  # values are plain Python data; equal values have equal reprs
        groups.setdefault(key, (value, []))[1].append(host)
    return sorted(groups.values(), key=lambda item: -len(item[1]))


def _per_host(p: Problems, hosts: dict, var: str, func) -> dict[str, object]:
    """host -> the variable's normalised value (None where invalid), each variant judged once."""
    result = {}
    for value, members in _variants(hosts, var):
        normalised = func(members, value)
        result.update(dict.fromkeys(members, normalised))
    return result


# --- networks -----------------------------------------------------------------------------------

def _optional(p: Problems, hosts, net: dict, key: str, field: str, func):
    if key not in net:
        return NETWORK_DEFAULTS.get(key)
    return p.check(hosts, func, field, net[key])


NETWORK_KEYS = ("name", "vni", "bridge", "vxlan_dev", "dstport", "group")
ENDPOINT_KEYS = ("network", "namespace", "host_if", "vm_if", "address", "mac")


def _unknown_keys(p: Problems, hosts, field: str, item: dict, known: tuple, what: str) -> None:
    """Keys the roles would silently ignore: a misspelt `adress` or `goup` is a problem, with
    the key it probably meant."""
    for key in sorted(item, key=str):
        if str(key) not in known:
            # A misspelling (a letter or two off), not a different word that shares a part.
            close = [k for k in difflib.get_close_matches(str(key), known, n=1, cutoff=0.8) if abs(len(k) - len(str(key))) <= 2]
            p.add(hosts, "%s.%s" % (field, key), item[key], "is not a key of %s (%s)%s"
                  % (what, ", ".join(known), "; did you mean %s?" % close[0] if close else ""))


def _networks(p: Problems, hosts: list[str], value) -> tuple[list[dict], set | None]:
    """One variant of vxlan_networks: the valid networks, normalised, and every name declared
    (None if the variable is not even a list), so endpoints of a network already reported as
    wrong are not reported again as on an unknown network."""
    if isinstance(value, Unreadable):
        p.check(hosts, None, "vxlan_networks", value)
        return [], None
    if not isinstance(value, list):
        p.add(hosts, "vxlan_networks", value, "must be a list of networks (name, vni, bridge, vxlan_dev, dstport, group), not %s"
              % type(value).__name__)
        return [], None
    result, seen, declared, unnamed = [], defaultdict(list), set(), False
    for index, net in enumerate(value):
        field = "vxlan_networks[%d]" % index
        name = p.check(hosts, v._require_text, field + ".name", net.get("name")) if isinstance(net, dict) else None
        if not isinstance(net, dict):
            p.add(hosts, field, net, "must be a dict with name, vni, bridge, vxlan_dev, dstport, group")
        if name is None:
            unnamed = True  # endpoints may be on it: none is reported as on an unknown network
            continue
        field += " (%s)" % name
        declared.add(name)
        _unknown_keys(p, hosts, field, net, NETWORK_KEYS, "a network")
        entry = {
            "name": name,
            "vni": p.check(hosts, v.vni, field + ".vni", net.get("vni")),
            "bridge": _optional(p, hosts, net, "bridge", field + ".bridge", v.ifname),
            "vxlan_dev": _optional(p, hosts, net, "vxlan_dev", field + ".vxlan_dev", v.ifname),
            "dstport": _optional(p, hosts, net, "dstport", field + ".dstport", v.port),
            "group": None,
            "field": field,
            "index": index,
        }
        if net.get("group") is not None:
            entry["group"] = p.check(hosts, v.multicast_ip, field + ".group", net["group"])
            if entry["group"] is None:
                continue
        if None in (entry["name"], entry["vni"], entry["bridge"], entry["vxlan_dev"], entry["dstport"]):
            continue
        # A bridge and a VXLAN device are both links of the host: one name cannot be both.
        for key, key_value, where in (("name", name, field), ("VNI", entry["vni"], field + ".vni"),
                                      ("link name", entry["bridge"], field + ".bridge"),
                                      ("link name", entry["vxlan_dev"], field + ".vxlan_dev")):
            seen[(key, key_value)].append((where, index))
        result.append(entry)
    duplicated = set()
    for (key, key_value), uses in seen.items():
        for where, index in uses[1:]:
            p.add(hosts, where, key_value, "%s already used by %s; each network needs its own" % (key, uses[0][0]))
            duplicated.add(index)
    # A second network with the same name or devices is left out of the map (reported above).
    result = [net for net in result if net["index"] not in duplicated]
    return result, None if unnamed else declared


# --- endpoints ----------------------------------------------------------------------------------

_ENDPOINT_FIELDS = (("network", v._require_text), ("namespace", v.namespace_name), ("host_if", v.ifname),
                    ("vm_if", v.ifname), ("address", v.interface_cidr))


def _endpoints(p: Problems, host: str, value, networks: dict, declared: set | None, reserved: dict[str, str]) -> list[dict]:
    """One host's vxlan_endpoints, normalised; invalid endpoints are left out."""
    if isinstance(value, Unreadable):
        p.check([host], None, "vxlan_endpoints", value)
        return []
    if value is None:
        return []
    if not isinstance(value, list):
        p.add([host], "vxlan_endpoints", value, "must be a list of endpoints (network, namespace, host_if, vm_if, address, mac), not %s"
              % type(value).__name__)
        return []
    result, listed, local = [], {}, {}
    for index, endpoint in enumerate(value):
        field = "vxlan_endpoints[%d]" % index
        if not isinstance(endpoint, dict):
            p.add([host], field, endpoint, "must be a dict with network, namespace, host_if, vm_if, address (and mac)")
            continue
        key = repr(sorted(endpoint.items(), key=lambda item: str(item[0])))
        if key in listed:
            p.add([host], field, endpoint, "the same endpoint as %s; list each VM once" % listed[key])
            continue
        listed[key] = field
        _unknown_keys(p, [host], field, endpoint, ENDPOINT_KEYS, "an endpoint")
        view = {name: p.check([host], func, "%s.%s" % (field, name), endpoint.get(name)) for name, func in _ENDPOINT_FIELDS}
        if view["network"] is not None and view["network"] not in networks:
            if declared is not None and view["network"] not in declared:
                p.add([host], field + ".network", view["network"], "no such network in vxlan_networks (it has %s)"
                      % (", ".join(sorted(declared)) or "none"))
            view["network"] = None  # unknown, or a network already reported as invalid
        if view["network"] is None or view["address"] is None:
            continue  # cannot be placed in a network; what is wrong with it has been said
        # An endpoint with other bad fields stays for the checks across endpoints (subnet,
        # duplicates), so every problem of the inventory is listed at once.
        mac = endpoint.get("mac")
        if mac is not None:
            view["mac"] = p.check([host], v.mac, field + ".mac", mac)
            view["given_mac"] = mac
        else:
            view["mac"] = vm_mac(view["address"], view["network"])
        # Two endpoints of one host cannot share a host-side link, nor a VM link in one namespace,
        # and a host-side link cannot take the name of a bridge, VXLAN or underlay device.
        for kind, slot, name in (("host_if", ("host_if", view["host_if"]), view["host_if"]),
                                 ("vm_if", ("vm_if", view["namespace"], view["vm_if"]), view["vm_if"])):
            if name is None or (kind == "vm_if" and view["namespace"] is None):
                continue
            if slot in local:
                p.add([host], "%s.%s" % (field, kind), name, "already used by %s on this host" % local[slot])
            elif kind == "host_if" and name in reserved:
                p.add([host], "%s.%s" % (field, kind), name, "is the name of %s" % reserved[name])
            local.setdefault(slot, "%s.%s" % (field, kind))
        ip = ipaddress.ip_interface(view["address"])
        view.update(host=host, field=field, ip=str(ip.ip), subnet=str(ip.network))
        result.append(view)
    return result


def _unique_endpoints(p: Problems, endpoints: list[dict]) -> None:
    """VM addresses and MACs (given or derived) are unique within each network, across all hosts."""
    reported = set()
    for key in ("ip", "mac"):
        users = defaultdict(list)
        for endpoint in endpoints:
            if endpoint[key] is not None:
                users[(endpoint["network"], endpoint[key])].append(endpoint)
        for (network, value), same in users.items():
            first = same[0]
            for other in same[1:]:
                if key == "ip":
                    reported.add(id(other))
                    p.add([other["host"]], other["field"] + ".address", other["address"], "network %s: VM address %s is also %s's %s"
                          % (network, value, first["host"], first["field"]))
                elif "given_mac" in other:
                    p.add([other["host"]], other["field"] + ".mac", other["given_mac"], "network %s: VM MAC %s is also %s's %s"
                          % (network, value, first["host"], first["field"]))
                elif id(other) not in reported:  # derived from the address: name what the inventory says
                    p.add([other["host"]], other["field"] + ".address", other["address"], "network %s: its derived MAC %s is also "
                          "%s's %s; give one of them a mac" % (network, value, first["host"], first["field"]))


def _subnets(p: Problems, network: str, endpoints: list[dict]) -> None:
    """All VMs of a network share one subnet (the most common one is taken as the network's)."""
    counts = Counter(e["subnet"] for e in endpoints)
    subnet = counts.most_common(1)[0][0] if counts else None
    for e in endpoints:
        if e["subnet"] != subnet:
            others = sorted({o["host"] for o in endpoints if o["subnet"] == subnet})
            p.add([e["host"]], e["field"] + ".address", e["address"], "is outside %s, the subnet of network %s's other VMs (%s)"
                  % (subnet, network, ", ".join(others)))
            continue
        iface = ipaddress.ip_interface(e["address"])
        edges = (iface.network.network_address, iface.network.broadcast_address)
        if iface.version == 4 and iface.network.prefixlen < 31 and iface.ip in edges:
            p.add([e["host"]], e["field"] + ".address", e["address"], "is the network or broadcast address of %s" % subnet)


def _hosts_by(per_host: dict) -> dict:
    """value -> the hosts holding it (hosts whose value is invalid, None, left out)."""
    result = defaultdict(list)
    for host, value in sorted(per_host.items()):
        if value is not None:
            result[value].append(host)
    return result


def _ip_key(ip: str):
    return v.ip_version(ip), ipaddress.ip_address(ip)  # mixed families (already a problem) still sort


# --- the whole overlay --------------------------------------------------------------------------

def build(hosts: dict[str, dict]) -> tuple[dict, list[str]]:
    """(overlay_map, problems) from {host: {variable: value}}; a variable left out gets the roles'
    default, a value that could not be evaluated is an `Unreadable`."""
    p = Problems()
    hostnames = sorted(hosts)

    # Variables usually set for a whole group: each distinct value is judged once.
    dev = _per_host(p, hosts, "vxlan_underlay_dev", lambda hs, val: p.check(hs, v.ifname, "vxlan_underlay_dev", val))
    mtu = _per_host(p, hosts, "vxlan_underlay_mtu", lambda hs, val: p.check(hs, v.int_range, "vxlan_underlay_mtu", val, 68, 65535))
    mode = _per_host(p, hosts, "vxlan_mode", lambda hs, val: p.check(hs, _mode, "vxlan_mode", val))
    _per_host(p, hosts, "vxlan_ttl", lambda hs, val: None if val in (None, "") else p.check(hs, v.int_range, "vxlan_ttl", val, 0, 255))

    # Every host's roles read their own vxlan_networks: each variant is checked, the most common
    # one is the overlay's, and any other is a problem of its own.
    variants = _variants(hosts, "vxlan_networks")
    networks, declared = _networks(p, variants[0][1], variants[0][0]) if variants else ([], set())
    for value, members in variants[1:]:
        _networks(p, members, value)
        p.add(members, "vxlan_networks", value, "differs from the vxlan_networks of %s; every overlay host must see the same networks"
              % who(variants[0][1]))
    by_name = {net["name"]: net for net in networks}

    # Per-host variables.
    underlay, family = {}, {}
    for host in hostnames:
        ip = p.check([host], v.unicast_ip, "vxlan_underlay_ip", hosts[host].get("vxlan_underlay_ip"))
        if ip is not None:
            underlay[host], family[host] = ip, v.ip_version(ip)
    for ip, same in _hosts_by(underlay).items():
        if len(same) > 1:
            p.add(same, "vxlan_underlay_ip", ip, "the same VTEP address on %d hosts; peers would send one host's traffic to another"
                  % len(same))

    by_mtu = defaultdict(list)
    for host in hostnames:
        if mtu.get(host) is not None and host in family:
            by_mtu[(mtu[host], family[host])].append(host)
    for (value, version), members in by_mtu.items():
        if overlay_mtu(value, version) < IPV6_MIN_MTU:
            p.add(members, "vxlan_underlay_mtu", value, "leaves an overlay MTU of %d over IPv%d (%d - %d); at least %d is needed "
                  "(IPv6's minimum: below it VMs lose their IPv6 addresses)" % (overlay_mtu(value, version), version, value,
                                                                                v.VXLAN_OVERHEAD[version], IPV6_MIN_MTU))

    devices = {}
    for net in networks:
        devices[net["bridge"]] = "the bridge of network %s" % net["name"]
        devices[net["vxlan_dev"]] = "the VXLAN device of network %s" % net["name"]
    # The roles create each network's bridge and VXLAN device: neither may be the underlay device.
    for name, members in sorted(_hosts_by(dev).items()):
        if name in devices:
            p.add(members, "vxlan_underlay_dev", name, "is also the name of %s; the overlay would take over the underlay device"
                  % devices[name])
    endpoints = []
    for host in hostnames:
        reserved = dict(devices)
        if dev.get(host):
            reserved[dev[host]] = "the underlay device (vxlan_underlay_dev)"
        endpoints += _endpoints(p, host, hosts[host].get("vxlan_endpoints", []), by_name, declared, reserved)
    _unique_endpoints(p, endpoints)

    svi = svi_addresses(hostnames, hosts, by_name, endpoints)
    overlay_map = {"hosts": {}, "networks": {}}
    for host in hostnames:
        if host in underlay:
            overlay_map["hosts"][host] = {
                "underlay_ip": underlay[host], "family": family[host], "underlay_dev": dev.get(host), "underlay_mtu": mtu.get(host),
                "overlay_mtu": overlay_mtu(mtu[host], family[host]) if mtu.get(host) is not None else None,
                "mode": mode.get(host), "svi": svi[host]["addresses"], "svi_problems": svi[host]["problems"]}
    for net in networks:
        mine = [e for e in endpoints if e["network"] == net["name"]]
        _subnets(p, net["name"], mine)
        carriers = sorted({e["host"] for e in mine if e["host"] in family})
        families = defaultdict(list)
        for host in carriers:
            families[family[host]].append(host)
        version = max(families, key=lambda f: len(families[f])) if families else None
        for other, members in families.items():
            if other != version:
                for host in members:
                    p.add([host], "vxlan_underlay_ip", underlay[host], "is IPv%d but network %s's other VTEPs (%s) are IPv%d; one network's "
                          "underlay must be one address family" % (other, net["name"], names(families[version]), version))
        if net["group"] and version and v.ip_version(net["group"]) != version:
            p.add(carriers, net["field"] + ".group", net["group"], "is IPv%d but the network's underlay (vxlan_underlay_ip) is IPv%d"
                  % (v.ip_version(net["group"]), version))
        needs_group = sorted(h for h in carriers if mode.get(h) == "multicast")
        if needs_group and group_problem("multicast", net):
            p.add(needs_group, "vxlan_mode", "multicast", group_problem("multicast", net))
        overlay_map["networks"][net["name"]] = {
            "name": net["name"], "vni": net["vni"], "bridge": net["bridge"], "vxlan_dev": net["vxlan_dev"], "dstport": net["dstport"],
            "group": net["group"], "family": version, "subnet": Counter(e["subnet"] for e in mine).most_common(1)[0][0] if mine else None,
            "vteps": sorted({underlay[h] for h in carriers}, key=_ip_key),
            "endpoints": [{"host": e["host"], "vtep": underlay.get(e["host"]), "network": e["network"], "namespace": e["namespace"],
                           "host_if": e["host_if"], "vm_if": e["vm_if"], "address": e["address"], "ip": e["ip"], "mac": e["mac"]}
                          for e in mine],
        }
    return overlay_map, list(p)


# --- EVPN: the bridges' own addresses (SVIs) ------------------------------------------------------

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _flag(value):
    """A boolean as Ansible spells it (-e gives strings), or None."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def svi_addresses(hostnames: list[str], hosts: dict, networks: dict, endpoints: list[dict]) -> dict[str, dict]:
    """host -> {"addresses": {network: [CIDR...]}, "problems": [...]}: the address each host's
    bridge of each network it carries gets in vxlan_mode=evpn (an SVI: zebra learns the VMs'
    MAC+IP from its neighbour table and installs the remote ones there, where the bridge answers
    ARP/ND from).

    `evpn_svi_addresses` (per host: network -> CIDR or list of CIDRs) gives them; a network not
    listed gets one generated in its VMs' subnet: the n-th overlay host (sorted by name, from
    0) takes the n-th address from the top (h1 100.0.0.254/24, h2 .253, h3 .252). `evpn_svi:
    false` gives none. Problems (a bad value, outside the subnet, an address taken by a VM or by
    another host's bridge) are kept per host: they matter in evpn mode only, and
    playbooks/validate.yml reports them there, before any host changes.
    """
    by_network = defaultdict(list)
    for e in endpoints:
        by_network[e["network"]].append(e)
    subnets = {}
    for name, mine in by_network.items():
        counts = Counter(e["subnet"] for e in mine)
        if counts:
            subnets[name] = ipaddress.ip_network(counts.most_common(1)[0][0])
    vm_ips = {(e["network"], ipaddress.ip_address(e["ip"])): e for e in endpoints}
    carried = defaultdict(set)
    for e in endpoints:
        carried[e["host"]].add(e["network"])

    result = {}
    taken: dict[tuple, str] = {}  # (network, ip) -> the host whose bridge has it
    for position, host in enumerate(hostnames):
        p = Problems()
        addresses: dict[str, list[str]] = {}
        result[host] = {"addresses": addresses, "problems": p}
        enabled = hosts[host].get("evpn_svi", ROLE_DEFAULTS["evpn_svi"])
        flag = None if isinstance(enabled, Unreadable) else _flag(enabled)
        if isinstance(enabled, Unreadable):
            p.check([host], None, "evpn_svi", enabled)
            continue
        if flag is None:
            p.add([host], "evpn_svi", enabled, "must be a boolean (true: the bridge gets an address in evpn mode)")
            continue
        if not flag:
            continue
        given = hosts[host].get("evpn_svi_addresses", ROLE_DEFAULTS["evpn_svi_addresses"])
        if isinstance(given, Unreadable):
            p.check([host], None, "evpn_svi_addresses", given)
            continue
        if given is None:
            given = {}
        if not isinstance(given, dict):
            p.add([host], "evpn_svi_addresses", given, "must map network names to an address (CIDR) or a list of them, not %s"
                  % type(given).__name__)
            continue
        for network, value in given.items():
            field = "evpn_svi_addresses.%s" % network
            if network not in networks:
                p.add([host], field, value, "no such network in vxlan_networks (it has %s)" % (", ".join(sorted(networks)) or "none"))
                continue
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not values:
                p.add([host], field, value, "must be an address with its prefix (CIDR) or a non-empty list of them")
                continue
            cidrs = []
            for index, raw in enumerate(values):
                item = "%s[%d]" % (field, index) if isinstance(value, list) else field
                cidr = p.check([host], v.interface_cidr, item, raw)
                if cidr is None:
                    continue
                iface = ipaddress.ip_interface(cidr)
                subnet = subnets.get(network)
                if iface.version == 6 and iface.ip.is_link_local:
                    p.add([host], item, raw, "is an IPv6 link-local address; the kernel assigns those itself")
                elif subnet is not None and subnet.version == iface.version and iface.network != subnet:
                    p.add([host], item, raw, "is not in %s, the subnet of network %s's VMs" % (subnet, network))
                elif iface.version == 4 and iface.network.prefixlen < 31 and iface.ip in (
                        iface.network.network_address, iface.network.broadcast_address):
                    p.add([host], item, raw, "is the network or broadcast address of %s" % iface.network)
                else:
                    cidrs.append(cidr)
            if cidrs and network in carried[host]:
                addresses[network] = cidrs
        for network in sorted(carried[host]):
            if network in addresses or network in given or network not in subnets:
                continue
            subnet = subnets[network]
            # Below the (IPv4 broadcast) last address, never the network's own first address.
            if position >= subnet.num_addresses - 2:
                p.add([host], "evpn_svi_addresses.%s" % network, None, "network %s's subnet %s has no address left for this host's "
                      "bridge (host %d of the overlay, from the top); give one, or set evpn_svi: false" % (network, subnet, position + 1))
                continue
            addresses[network] = ["%s/%d" % (subnet.broadcast_address - 1 - position, subnet.prefixlen)]
        for network, cidrs in addresses.items():
            for cidr in cidrs:
                ip = ipaddress.ip_interface(cidr).ip
                field = "evpn_svi_addresses.%s" % network + ("" if network in given else " (generated)")
                vm = vm_ips.get((network, ip))
                if vm is not None:
                    p.add([host], field, cidr, "is the address of VM %s (%s's %s); give this host's bridge another address"
                          % (vm["ip"], vm["host"], vm["field"]))
                elif (network, ip) in taken:
                    p.add([host], field, cidr, "is already the bridge address of host %s in network %s" % (taken[(network, ip)], network))
                else:
                    taken[(network, ip)] = host
    return {host: {"addresses": entry["addresses"], "problems": list(entry["problems"])} for host, entry in result.items()}


def host_share(overlay_map: dict, host: str) -> list[dict]:
    """One host's networks with flood, fdb and neighbour entries: what vxlan_mesh returns."""
    local = overlay_map["hosts"][host]["underlay_ip"]
    everything = [e for net in overlay_map["networks"].values() for e in net["endpoints"]]
    everything.sort(key=lambda e: e["host"])  # the mesh filter lists endpoints host by host
    result = []
    for net in overlay_map["networks"].values():
        mine = [dict(e, bridge=net["bridge"]) for e in net["endpoints"] if e["host"] == host]
        if not mine:
            continue
        remote = sorted((e for e in net["endpoints"] if e["host"] != host), key=lambda e: e["host"])
        peers = sorted({e["vtep"] for e in remote}, key=_ip_key)
        result.append({
            "name": net["name"], "vni": net["vni"], "bridge": net["bridge"], "vxlan_dev": net["vxlan_dev"], "dstport": net["dstport"],
            "group": net["group"], "local": local, "endpoints": mine, "remote_endpoints": remote,
            # EVPN: this host's bridge address(es) in the network (an SVI), used in evpn mode.
            "bridge_addresses": overlay_map["hosts"][host].get("svi", {}).get(net["name"], []),
            "foreign_endpoints": [e for e in everything if e["network"] != net["name"]],
            "flood": [{"mac": v.ZERO_MAC, "dst": peer} for peer in peers],
            "fdb": [{"mac": e["mac"], "dst": e["vtep"]} for e in remote],
            "neigh": [{"ip": e["ip"], "lladdr": e["mac"]} for e in remote],
        })
    return result


def underlay_problems(overlay_map: dict, host: str, interfaces: dict) -> list[str]:
    """What a host lacks for its variables: the underlay device, its address, enough MTU.
    `interfaces`: overlay_info's `interfaces` section (name -> mtu, addresses...)."""
    entry = overlay_map["hosts"][host]
    dev, ip, mtu = entry["underlay_dev"], entry["underlay_ip"], entry["underlay_mtu"]
    p = Problems()
    iface = interfaces.get(dev)
    if iface is None:
        p.add([host], "vxlan_underlay_dev", dev, "no such interface on the host (it has %s)" % ", ".join(sorted(interfaces)))
        return list(p)
    holders = sorted(name for name, other in interfaces.items()
                     if ip in {str(ipaddress.ip_interface(a).ip) for a in other.get("addresses", [])})
    if dev not in holders:
        where = "; it is on %s" % ", ".join(holders) if holders else ""
        p.add([host], "vxlan_underlay_ip", ip, "is not an address of %s (vxlan_underlay_dev), which has %s%s"
              % (dev, ", ".join(iface.get("addresses") or ["no address"]), where))
    if mtu is not None and iface["mtu"] < mtu:
        p.add([host], "vxlan_underlay_mtu", mtu, "%s has MTU %d; VXLAN devices, bridges and VMs would get %d, more than it can carry"
              % (dev, iface["mtu"], entry["overlay_mtu"]))
    return list(p)
