# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""evpn_vnis: per-VNI route distinguisher and route targets of an EVPN VTEP (default: FRR's
automatic ones, router-id:index and AS:VNI), checked and normalised for frr.conf.

`vnis_problems` and `normalise_vnis` are plain functions (unit-tested in
tests/unit/test_evpn_vnis.py). playbooks/validate.yml runs the check on every overlay host before
any host changes; the evpn role renders the normalised list (a `vni` block per item).
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.overlay.vxlan.plugins.filter.evpn_peers import item_problems, show

KEYS = ("vni", "rd", "route_targets", "route_targets_import", "route_targets_export")
ASN_MAX = 4294967295
VALUE = re.compile(r"^([^:]+):([0-9]{1,10})$")
FORMS = "ASN:NN (ASN 1..4294967295; NN up to 4294967295 with a 2-byte ASN, else up to 65535) or IPv4:NN (NN up to 65535)"


def _community(value, wildcard: bool = False):
    """An RD/RT as frr.conf writes it (`65000:100`, `192.0.2.1:100`, `*:100` for an import when
    `wildcard`), or None when it is none of them."""
    if not isinstance(value, str):
        return None
    match = VALUE.fullmatch(value.strip())
    if not match:
        return None
    admin, number = match.group(1), int(match.group(2))
    if admin == "*":
        return "*:%d" % number if wildcard and number <= ASN_MAX else None
    if re.fullmatch(r"[0-9]{1,10}", admin):
        asn = int(admin)
        if not 1 <= asn <= ASN_MAX or number > (ASN_MAX if asn <= 65535 else 65535):
            return None
        return "%d:%d" % (asn, number)
    try:
        address = ipaddress.IPv4Address(admin)
    except ValueError:
        return None
    return "%s:%d" % (address, number) if number <= 65535 else None


def _vni(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,8}", value):
        value = int(value)
    return value if isinstance(value, int) and 1 <= value <= 16777215 else None


def _list(value):
    """A list of values (one string is a list of one), or None when it is neither."""
    if isinstance(value, str):
        return [value]
    return list(value) if isinstance(value, list) else None


def vnis_problems(vnis, host: str, networks_vnis=()) -> list[str]:
    """Every problem of one host's evpn_vnis, each naming host, variable and value.

    `networks_vnis`: the VNIs of the overlay's networks; an item for another VNI would configure
    a VNI this host has no vxlan device for."""
    where = "host %s: evpn_vnis" % host
    if vnis is None:
        return []
    if not isinstance(vnis, list):
        return ["%s=%s: must be a list (each a dict with vni and rd and/or route targets)" % (where, show(vnis))]
    known = {v for v in (_vni(n) for n in networks_vnis) if v is not None}
    problems, seen = [], {}
    for index, item in enumerate(vnis):
        at = "%s[%d]" % (where, index)
        is_dict, found = item_problems(item, at, KEYS, "vni and rd and/or route targets")
        problems += found
        if not is_dict:
            continue
        vni = _vni(item.get("vni"))
        if vni is None:
            problems.append("%s.vni=%s: must be a VNI 1..16777215" % (at, show(item.get("vni"))))
        elif vni in seen:
            problems.append("%s.vni=%s: the same VNI as evpn_vnis[%d]" % (at, show(item.get("vni")), seen[vni]))
        else:
            seen[vni] = index
            if known and vni not in known:
                problems.append("%s.vni=%s: no network of the overlay has this VNI (the VNIs are %s)"
                                % (at, show(item.get("vni")), ", ".join(str(v) for v in sorted(known))))
        rd = item.get("rd", "auto")
        if rd not in (None, "", "auto") and _community(rd) is None:
            problems.append("%s.rd=%s: must be auto, %s" % (at, show(rd), FORMS))
        for key in KEYS[2:]:
            if key not in item:
                continue
            values = _list(item[key])
            if values is None:
                problems.append("%s.%s=%s: must be a list of route targets" % (at, key, show(item[key])))
                continue
            for position, value in enumerate(values):
                if _community(value, wildcard=key == "route_targets_import") is None:
                    allowed = FORMS + (", or *:NN (any AS)" if key == "route_targets_import" else "")
                    problems.append("%s.%s[%d]=%s: must be %s" % (at, key, position, show(value), allowed))
    return problems


def normalise_vnis(vnis) -> list[dict]:
    """The items as frr.conf needs them, sorted by VNI (check them first: invalid values are
    skipped): vni (int), rd ('' for auto), import and export (route targets, sorted, no
    duplicates; empty: FRR's automatic one). `route_targets` counts for both directions."""
    result = {}
    for item in vnis or []:
        if not isinstance(item, dict) or _vni(item.get("vni")) is None:
            continue
        both = [_community(v) for v in _list(item.get("route_targets")) or []]
        imports = [_community(v, wildcard=True) for v in _list(item.get("route_targets_import")) or []]
        exports = [_community(v) for v in _list(item.get("route_targets_export")) or []]
        rd = item.get("rd")
        result[_vni(item["vni"])] = {
            "vni": _vni(item["vni"]),
            "rd": (_community(rd) or "") if rd not in (None, "", "auto") else "",
            "import": sorted({v for v in both + imports if v}),
            "export": sorted({v for v in both + exports if v}),
        }
    return [result[vni] for vni in sorted(result)]


def vxlan_evpn_vnis_check(vnis, host, networks_vnis=()):
    return vnis_problems(vnis, host, networks_vnis or ())


def vxlan_evpn_vnis(vnis):
    return normalise_vnis(vnis)


class FilterModule:
    def filters(self):
        return {"vxlan_evpn_vnis_check": vxlan_evpn_vnis_check, "vxlan_evpn_vnis": vxlan_evpn_vnis}
