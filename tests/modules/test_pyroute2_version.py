"""Every module checks the pyroute2 it finds before it does anything: Debian 12's own
python3-pyroute2 (0.7.2) imports fine but has no IPRoute(netns=...), and used to fail with a raw
TypeError deep inside. The message names host, version found, version needed and the fix."""

from __future__ import annotations

import pytest
from _assertions import assert_old_pyroute2_reported

MODULES = {
    "linux_bridge": {"name": "br1"},
    "netns_veth": {"namespace": "ns1", "name": "tap1", "peer": "tap2"},
    "vxlan_link": {"name": "vxlan0", "vni": 100},
    "bridge_fdb": {"dev": "vxlan0", "entries": []},
    "ip_neigh": {"dev": "vxlan0", "entries": []},
    "overlay_info": {},
    "overlay_plan": {},
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_old_pyroute2_named_with_version_and_fix(module):
    assert_old_pyroute2_reported(module, MODULES[module])
