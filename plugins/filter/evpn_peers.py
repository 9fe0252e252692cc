# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""evpn_peers: the external BGP neighbours of an EVPN host (not inventory hosts), checked and
normalised for frr.conf.

`peers_problems` and `normalise_peers` are plain functions (unit-tested in
tests/unit/test_evpn_peers.py). playbooks/validate.yml runs the check on every overlay host before
any host changes; the evpn role runs it again (route reflectors are not in validate.yml's play)
and renders the normalised list. A problem names the host, the variable and the value; a password
is never shown, only its length.
"""

from __future__ import annotations

import ipaddress
import re

from ansible.module_utils.parsing.convert_bool import boolean

KEYS = ("address", "interface", "remote_as", "password", "bfd", "ttl_security_hops", "description")
ASN_MAX = 4294967295
# The characters bgpd takes in a password on one frr.conf line (the role's rule for evpn_bgp_password).
PASSWORD = re.compile(r"^[A-Za-z0-9!#$%&()*+,./:;<=>?@^_{|}~\[\]-]{1,80}$")
# A Linux interface name (IFNAMSIZ - 1), no blank or slash.
INTERFACE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
# One frr.conf line: printable ASCII, no blank at either end (bgpd would drop it).
DESCRIPTION = re.compile(r"^[!-~]([ -~]{0,78}[!-~])?$")


def show(value) -> str:
    """A value as the problems quote it: text in single quotes, anything else as Python writes it."""
    return repr(value) if not isinstance(value, str) else "'%s'" % value


def item_problems(item, at: str, keys: tuple, shape: str) -> tuple[bool, list[str]]:
    """The form of one item of a list of dicts (evpn_peers, evpn_vnis): (whether it is a dict, its
    problems) - not a dict: one problem naming it and the `shape` wanted; a dict: its unknown keys."""
    if not isinstance(item, dict):
        return False, ["%s=%s: must be a dict with %s" % (at, show(item), shape)]
    unknown = sorted(str(k) for k in item if k not in keys)
    return True, ["%s: unknown key(s) %s: the keys are %s" % (at, ", ".join(unknown), ", ".join(keys))] if unknown else []


def _asn(value):
    """An AS number (int), 'internal', 'external', or None when it is none of them."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if value in ("internal", "external"):
            return value
        if not re.fullmatch(r"[0-9]{1,10}", value):
            return None
        value = int(value)
    if isinstance(value, int) and 1 <= value <= ASN_MAX:
        return value
    return None


def _address(value):
    """The normalised address of a usable unicast neighbour, or None."""
    if not isinstance(value, str):
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if address.is_multicast or address.is_unspecified or address.is_loopback or address.is_link_local:
        return None
    return str(address)


def _bool(value):
    """True or False as Ansible reads a boolean (yes, no, true, 1 ...), or None."""
    try:
        return boolean(value, strict=True)
    except TypeError:
        return None


def _int(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,3}", value):
        return int(value)
    return value if isinstance(value, int) else None


def peers_problems(peers, host: str, local_asn=65000, taken: dict | None = None) -> list[str]:
    """Every problem of one host's evpn_peers, each naming host, variable and value.

    `taken`: addresses this host already peers with or from (its own peering address, the route
    reflectors') -> what they are; an external peer on one of them would be a second neighbour
    statement for the same address."""
    where = "host %s: evpn_peers" % host
    if peers is None:
        return []
    if not isinstance(peers, list):
        return ["%s=%s: must be a list of peers (each a dict with address or interface, and remote_as)" % (where, show(peers))]
    problems = []
    taken = {_address(str(k)) or str(k): v for k, v in (taken or {}).items()}
    seen: dict[str, int] = {}
    if _asn(local_asn) is None or isinstance(_asn(local_asn), str):
        problems.append("host %s: evpn_asn=%s: must be an AS number 1..%d" % (host, show(local_asn), ASN_MAX))
    for index, peer in enumerate(peers):
        at = "%s[%d]" % (where, index)
        is_dict, found = item_problems(peer, at, KEYS, "address or interface, and remote_as")
        problems += found
        if not is_dict:
            continue
        has_address, has_interface = peer.get("address") not in (None, ""), peer.get("interface") not in (None, "")
        name = None
        if has_address and has_interface:
            problems.append("%s: address=%s and interface=%s: give one of them (interface: BGP unnumbered)"
                            % (at, show(peer["address"]), show(peer["interface"])))
        elif has_address:
            name = _address(peer["address"])
            if name is None:
                problems.append("%s.address=%s: must be a unicast IPv4 or IPv6 address (not multicast, loopback, "
                                "link-local or unspecified; a link-local neighbour is an interface)" % (at, show(peer["address"])))
            elif name in taken:
                problems.append("%s.address=%s: is %s, already a BGP neighbour or the peering address of this host"
                                % (at, show(peer["address"]), taken[name]))
        elif has_interface:
            value = peer["interface"]
            if isinstance(value, str) and INTERFACE.fullmatch(value) and value not in (".", ".."):
                name = value
            else:
                problems.append("%s.interface=%s: must be an interface name (1-15 of A-Z a-z 0-9 _ . : -)" % (at, show(value)))
        else:
            problems.append("%s: has neither address nor interface: give one" % at)
        if name is not None:
            if name in seen:
                problems.append("%s: %s=%s: the same neighbour as evpn_peers[%d]" % (
                    at, "address" if has_address else "interface", show(peer.get("address") or peer.get("interface")), seen[name]))
            else:
                seen[name] = index
        if "remote_as" not in peer:
            problems.append("%s: has no remote_as: give an AS number 1..%d, internal or external" % (at, ASN_MAX))
        elif _asn(peer["remote_as"]) is None:
            problems.append("%s.remote_as=%s: must be an AS number 1..%d, internal or external" % (at, show(peer["remote_as"]), ASN_MAX))
        password = peer.get("password")
        if password not in (None, "") and not (isinstance(password, str) and PASSWORD.fullmatch(password)):
            length = len(password) if isinstance(password, str) else 0
            problems.append("%s.password (%s): must be 1-80 printable ASCII characters without blanks, quotes or backslashes"
                            % (at, "%d characters" % length if isinstance(password, str) else "not a string"))
        if "bfd" in peer and _bool(peer["bfd"]) is None:
            problems.append("%s.bfd=%s: must be a boolean" % (at, show(peer["bfd"])))
        if "ttl_security_hops" in peer:
            hops = _int(peer["ttl_security_hops"])
            if hops is None or not 0 <= hops <= 254:
                problems.append("%s.ttl_security_hops=%s: must be 0..254 (0: off)" % (at, show(peer["ttl_security_hops"])))
        description = peer.get("description")
        if description not in (None, "") and not (isinstance(description, str) and DESCRIPTION.fullmatch(description)):
            problems.append("%s.description=%s: must be 1-80 printable ASCII characters, no blank at either end"
                            % (at, show(description)))
    return problems


def normalise_peers(peers, local_asn=65000) -> list[dict]:
    """The peers as frr.conf needs them (check them first: values that are not valid are skipped):
    neighbor (the address, normalised, or the interface), interface (bool), remote_as (int,
    'internal' or 'external'), ebgp (bool), password ('' for none), bfd, ttl_security_hops (int),
    description ('' for none)."""
    local = _asn(local_asn)
    result = []
    for peer in peers or []:
        if not isinstance(peer, dict):
            continue
        interface = peer.get("interface") not in (None, "")
        neighbor = peer["interface"] if interface else _address(peer.get("address"))
        remote_as = _asn(peer.get("remote_as"))
        if neighbor is None or remote_as is None:
            continue
        ebgp = remote_as == "external" or (isinstance(remote_as, int) and remote_as != local)
        result.append({
            "neighbor": neighbor,
            "interface": interface,
            "remote_as": remote_as,
            "ebgp": ebgp,
            "password": peer.get("password") or "",
            "bfd": _bool(peer.get("bfd", False)) is True,
            "ttl_security_hops": _int(peer.get("ttl_security_hops", 0)) or 0,
            "description": peer.get("description") or "",
        })
    return result


def vxlan_evpn_peers_check(peers, host, local_asn=65000, taken=None):
    return peers_problems(peers, host, local_asn, taken)


def vxlan_evpn_peers(peers, local_asn=65000):
    return normalise_peers(peers, local_asn)


class FilterModule:
    def filters(self):
        return {"vxlan_evpn_peers_check": vxlan_evpn_peers_check, "vxlan_evpn_peers": vxlan_evpn_peers}
