"""vxlan_evpn_vnis_check / vxlan_evpn_vnis: evpn_vnis (per-VNI RD and route targets) checked and
normalised; every bad value named with its host, variable and value."""

from __future__ import annotations

import pytest

from ansible_collections.overlay.vxlan.plugins.filter.evpn_vnis import normalise_vnis, vnis_problems

NETWORKS = [100, "200"]


def test_good_items_have_no_problem_and_normalise_sorted_by_vni():
    vnis = [{"vni": "200", "route_targets_import": ["*:200", "65001:200"], "route_targets_export": "65001:200"},
            {"vni": 100, "rd": "192.168.1.2:100", "route_targets": ["65000:1100", "4200000000:7", "65000:1100"],
             "route_targets_import": ["192.0.2.1:5"]},
            {"vni": 300, "rd": "auto"}]
    assert vnis_problems(vnis[:2], "h1", NETWORKS) == []
    assert normalise_vnis(vnis) == [
        {"vni": 100, "rd": "192.168.1.2:100", "import": ["192.0.2.1:5", "4200000000:7", "65000:1100"],
         "export": ["4200000000:7", "65000:1100"]},
        {"vni": 200, "rd": "", "import": ["*:200", "65001:200"], "export": ["65001:200"]},
        {"vni": 300, "rd": "", "import": [], "export": []},
    ]
    # No networks given: any VNI; nothing given: nothing to say.
    assert vnis_problems(vnis, "h1") == [] and vnis_problems([], "h1") == [] and vnis_problems(None, "h1") == []
    # Written as the user wrote them, normalised the way FRR shows them (leading zeros, blanks).
    assert normalise_vnis([{"vni": 100, "rd": " 065000:0100", "route_targets": ["65000:01"]}]) == [
        {"vni": 100, "rd": "65000:100", "import": ["65000:1"], "export": ["65000:1"]}]


@pytest.mark.parametrize(("item", "message"), [
    ({"vni": 0}, "host h1: evpn_vnis[0].vni=0: must be a VNI 1..16777215"),
    ({"vni": 16777216}, "evpn_vnis[0].vni=16777216: must be"),
    ({"vni": True}, "evpn_vnis[0].vni=True: must be"),
    ({"vni": "1OO"}, "evpn_vnis[0].vni='1OO': must be"),
    ({}, "evpn_vnis[0].vni=None: must be"),
    ({"vni": 300}, "evpn_vnis[0].vni=300: no network of the overlay has this VNI (the VNIs are 100, 200)"),
    ({"vni": 100, "rd": "65000"}, "host h1: evpn_vnis[0].rd='65000': must be auto, ASN:NN"),
    ({"vni": 100, "rd": "0:100"}, "evpn_vnis[0].rd='0:100'"),
    ({"vni": 100, "rd": "4294967296:1"}, "evpn_vnis[0].rd='4294967296:1'"),
    ({"vni": 100, "rd": "4200000000:65536"}, "evpn_vnis[0].rd='4200000000:65536'"),
    ({"vni": 100, "rd": "192.168.1.300:1"}, "evpn_vnis[0].rd='192.168.1.300:1'"),
    ({"vni": 100, "rd": "192.168.1.2:65536"}, "evpn_vnis[0].rd='192.168.1.2:65536'"),
    ({"vni": 100, "rd": "*:100"}, "evpn_vnis[0].rd='*:100'"),
    ({"vni": 100, "rd": 65000}, "evpn_vnis[0].rd=65000"),
    ({"vni": 100, "route_targets": ["*:100"]}, "evpn_vnis[0].route_targets[0]='*:100': must be ASN:NN"),
    ({"vni": 100, "route_targets_export": ["*:100"]}, "evpn_vnis[0].route_targets_export[0]='*:100'"),
    ({"vni": 100, "route_targets_import": ["100"]}, "evpn_vnis[0].route_targets_import[0]='100': must be ASN:NN"),
    ({"vni": 100, "route_targets_import": ["65000:100", "65000;200"]}, "evpn_vnis[0].route_targets_import[1]='65000;200'"),
    ({"vni": 100, "route_targets": 65000}, "evpn_vnis[0].route_targets=65000: must be a list of route targets"),
    ({"vni": 100, "route_target": ["65000:1"]}, "evpn_vnis[0]: unknown key(s) route_target: the keys are vni, rd, route_targets"),
    ("100", "host h1: evpn_vnis[0]='100': must be a dict"),
])
def test_each_bad_value_is_named(item, message):
    problems = vnis_problems([item], "h1", NETWORKS)
    assert len(problems) == 1 and message in problems[0], problems


def test_a_vni_twice_and_every_problem_at_once():
    problems = vnis_problems([{"vni": 100}, {"vni": "100", "rd": "x"}, {"vni": 7, "route_targets": ["y"]}], "h2", NETWORKS)
    assert problems == [
        "host h2: evpn_vnis[1].vni='100': the same VNI as evpn_vnis[0]",
        "host h2: evpn_vnis[1].rd='x': must be auto, ASN:NN (ASN 1..4294967295; NN up to 4294967295 with a 2-byte ASN, "
        "else up to 65535) or IPv4:NN (NN up to 65535)",
        "host h2: evpn_vnis[2].vni=7: no network of the overlay has this VNI (the VNIs are 100, 200)",
        "host h2: evpn_vnis[2].route_targets[0]='y': must be ASN:NN (ASN 1..4294967295; NN up to 4294967295 with a "
        "2-byte ASN, else up to 65535) or IPv4:NN (NN up to 65535)",
    ]
    assert vnis_problems({"vni": 100}, "h3") == [
        "host h3: evpn_vnis={'vni': 100}: must be a list (each a dict with vni and rd and/or route targets)"]
