# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that read FRR's EVPN JSON whatever FRR version printed it.

`remote_vteps` is a plain function (unit-tested in tests/unit/test_evpn_json.py; the file is named so beside evpn.py, the peers filters). zebra's
`show evpn vni [VNI] json` has changed shape between releases:

- FRR 8.x, one VNI (`show evpn vni 100 json`): `numRemoteVteps` is the LIST of addresses;
- FRR 8.x, every VNI (`show evpn vni json`): `numRemoteVteps` a count, `remoteVteps` a list of
  address strings;
- FRR 9.x and later: `numRemoteVteps` a count, `remoteVteps` a list of objects
  (`{"ip": "192.168.1.3", "flood": "HER"}`).

Anything else (an L3 VNI's `"n/a"`, a missing key, garbage) gives no address rather than an
error: verify then reports the VTEP as missing, which is what it is as far as zebra says.
"""

from __future__ import annotations

import ipaddress


def _address(item) -> str | None:
    if isinstance(item, dict):
        item = item.get("ip")
    if not isinstance(item, str):
        return None
    try:
        return str(ipaddress.ip_address(item.strip()))
    except ValueError:
        return None


def remote_vteps(vni: dict) -> list[str]:
    """The remote VTEP addresses of one VNI's JSON object, sorted, each once."""
    if not isinstance(vni, dict):
        return []
    listed = vni.get("remoteVteps")
    if not isinstance(listed, list):
        listed = vni.get("numRemoteVteps")  # FRR 8.x's one-VNI view
    if not isinstance(listed, list):
        return []
    found = {address for address in map(_address, listed) if address}
    return sorted(found, key=ipaddress.ip_address)


def vxlan_evpn_remote_vteps(vni):
    return remote_vteps(vni)


class FilterModule:
    def filters(self):
        return {"vxlan_evpn_remote_vteps": vxlan_evpn_remote_vteps}
