from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".collections"))
sys.path.insert(0, str(ROOT / "tests"))

pytest.register_assert_rewrite("lab_fixtures")

from helpers import Namespace  # noqa: E402
from lab_fixtures import lab, lab_factory  # noqa: E402,F401  (fixtures shared by the lab tests)


@pytest.fixture
def ns():
    """An empty network namespace with lo up; removed even if the test fails."""
    space = Namespace()
    try:
        with space.ipr() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        yield space
    finally:
        space.remove()


@pytest.fixture
def underlay(ns):
    """`ns` with an underlay: eth0 (a veth; no dummy driver here) up with 192.168.1.2/24."""
    with ns.ipr() as ipr:
        ipr.link("add", ifname="eth0", kind="veth", peer="eth0-peer")
        eth0 = ipr.link_lookup(ifname="eth0")[0]
        ipr.addr("add", index=eth0, address="192.168.1.2", prefixlen=24)
        ipr.link("set", index=eth0, state="up")
        ipr.link("set", index=ipr.link_lookup(ifname="eth0-peer")[0], state="up")
    return ns


@pytest.fixture
def vxlan(underlay):
    """`underlay` with br1 and vxlan0 (VNI 100, port 4789, local 192.168.1.2, dev eth0) on it."""
    with underlay.ipr() as ipr:
        eth0 = ipr.link_lookup(ifname="eth0")[0]
        ipr.link("add", ifname="br1", kind="bridge")
        br1 = ipr.link_lookup(ifname="br1")[0]
        ipr.link("add", ifname="vxlan0", kind="vxlan", vxlan_id=100, vxlan_port=4789,
                 vxlan_link=eth0, vxlan_local="192.168.1.2", vxlan_learning=0, vxlan_proxy=1)
        vx = ipr.link_lookup(ifname="vxlan0")[0]
        ipr.link("set", index=vx, master=br1)
        ipr.link("set", index=vx, state="up")
        ipr.link("set", index=br1, state="up")
    return underlay
