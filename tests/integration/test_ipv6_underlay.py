"""The lab with an IPv6 underlay (inventories/lab6) on the real kernel.

What an IPv6 underlay adds to the lab: /64 addresses, NDP instead of ARP (permanent neighbour
entries, MACs derived from the addresses), and duplicate address detection, which would leave
every address "tentative" (unusable as a source, so a VXLAN device bound to it sends nothing)
for about a second after the lab is made. The overlay converging and verifying over it is the
molecule scenario `ipv6`.
"""

from __future__ import annotations

import json

from lab_fixtures import ROOT, recap, root_netns_snapshot

LAB6 = ROOT / "inventories" / "lab6"
HOSTS6 = {"h1": "2001:db8:1::2", "h2": "2001:db8:1::3", "h3": "2001:db8:1::4", "ctl": "2001:db8:1::10"}


def _eth0(lab, host: str) -> dict:
    return json.loads(lab.enter(host, "ip", "-j", "-6", "addr", "show", "dev", "eth0").stdout)[0]


def _changed(proc) -> int:
    return recap(proc.stdout)["localhost"]["changed"]


def test_ipv6_lab_has_usable_addresses_at_once_and_repairs_dad(lab_factory):
    root_before = root_netns_snapshot()
    lab = lab_factory(HOSTS6, inventory=LAB6, create=False)
    assert _changed(lab.create()) == 1

    for host, ip in HOSTS6.items():
        eth0 = _eth0(lab, host)
        globals_ = [a for a in eth0["addr_info"] if a["scope"] == "global"]
        assert [(a["local"], a["prefixlen"]) for a in globals_] == [(ip, 64)]
        # no address is tentative right after creation: DAD is off on the underlay device
        assert not any(a.get("tentative") or a.get("dadfailed") for a in eth0["addr_info"]), eth0
        assert lab.enter(host, "sysctl", "-n", "net.ipv6.conf.eth0.accept_dad").stdout.strip() == "0"
        # NDP entries are permanent for every other host, with the lab's derived MACs
        neigh = json.loads(lab.enter(host, "ip", "-j", "-6", "neigh", "show", "dev", "eth0", "nud", "permanent").stdout)
        assert {n["dst"] for n in neigh} == {peer_ip for peer, peer_ip in HOSTS6.items() if peer != host}
        for peer, peer_ip in HOSTS6.items():
            if peer != host:
                lab.ping(host, peer_ip, count=1)
    assert _changed(lab.create()) == 0

    # Drift: DAD turned back on and the address re-added (tentative, then usable only after
    # the DAD timer): lab.yml turns DAD off and adds the address again without it.
    lab.enter("h2", "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=1", "net.ipv6.conf.eth0.dad_transmits=50")
    lab.enter("h2", "ip", "addr", "del", "2001:db8:1::3/64", "dev", "eth0")
    lab.enter("h2", "ip", "addr", "add", "2001:db8:1::3/64", "dev", "eth0")
    assert any(a.get("tentative") for a in _eth0(lab, "h2")["addr_info"])
    repaired = lab.create()
    assert _changed(repaired) == 1
    assert not any(a.get("tentative") for a in _eth0(lab, "h2")["addr_info"])
    assert lab.enter("h2", "sysctl", "-n", "net.ipv6.conf.eth0.accept_dad").stdout.strip() == "0"
    lab.ping("h1", "2001:db8:1::3", count=1)
    assert _changed(lab.create()) == 0
    assert root_netns_snapshot() == root_before
