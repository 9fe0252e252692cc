"""vxlan_evpn_remote_vteps: zebra's `show evpn vni json` as FRR 8.x and 9.x+ print it."""

from __future__ import annotations

import pytest

from ansible_collections.overlay.vxlan.plugins.filter.evpn_json import remote_vteps

# Shapes as FRR prints them (FRR 8.4.4 on Debian 12 for the first two; FRR's topotests for 9.x+).
FRR8_ONE_VNI = {"vni": 100, "type": "L2", "vtepIp": "192.168.1.2", "numMacs": 4, "numArpNd": 2,
                "numRemoteVteps": ["192.168.1.4", "192.168.1.3"]}
FRR8_EVERY_VNI = {"vni": 100, "type": "L2", "vxlanIf": "vxlan0", "numMacs": 4, "numArpNd": 2,
                  "numRemoteVteps": 2, "tenantVrf": "default", "remoteVteps": ["192.168.1.3", "192.168.1.4"]}
FRR9_ONE_VNI = {"vni": 100, "type": "L2", "numRemoteVteps": 2,
                "remoteVteps": [{"ip": "192.168.1.4", "flood": "HER"}, {"ip": "192.168.1.3", "flood": "HER"}]}


@pytest.mark.parametrize("shape", [FRR8_ONE_VNI, FRR8_EVERY_VNI, FRR9_ONE_VNI], ids=["frr8-one", "frr8-every", "frr9"])
def test_every_shape_gives_the_same_vteps(shape):
    assert remote_vteps(shape) == ["192.168.1.3", "192.168.1.4"]


def test_ipv6_vteps_normalised_and_sorted():
    assert remote_vteps({"remoteVteps": [{"ip": "2001:DB8::4"}, "2001:db8:0::3", "2001:db8::4"]}) == ["2001:db8::3", "2001:db8::4"]


@pytest.mark.parametrize("shape", [
    {"vni": 4001, "type": "L3", "numRemoteVteps": "n/a"},  # an L3 VNI in the every-VNI view
    {"numRemoteVteps": 0},
    {},
    None,
    "garbage",
    {"remoteVteps": [None, 7, {"ip": None}, {"flood": "HER"}, "not-an-address", "192.168.1.999"]},
    {"remoteVteps": "192.168.1.3"},
])
def test_no_address_rather_than_an_error(shape):
    assert remote_vteps(shape) == []
