"""One overlay model: each rule shared by several parts of the collection is stated once
(module_utils/_overlay_rules.py) and every other statement of it is checked against that one,
so the lists cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.overlay.vxlan.plugins.filter import params
from ansible_collections.overlay.vxlan.plugins.module_utils import _overlay_map as om
from ansible_collections.overlay.vxlan.plugins.module_utils import _overlay_rules as rules
from ansible_collections.overlay.vxlan.plugins.module_utils import _validate as v

ROOT = Path(__file__).resolve().parents[2]
# Variables that name a control-plane mode (vxlan_mode, and a role's own copy of it).
MODE_OPTION = re.compile(r"(^|_)mode$")


def mode_options():
    """(where, option, spec) of every option named *_mode in the roles' argument_specs and the filters' docs."""
    found = []
    for path in sorted(ROOT.glob("roles/*/meta/argument_specs.yml")):
        for entry, spec in (yaml.safe_load(path.read_text())["argument_specs"] or {}).items():
            for name, option in (spec.get("options") or {}).items():
                if MODE_OPTION.search(name):
                    found.append(("%s (%s)" % (path.relative_to(ROOT), entry), name, option))
    for path in sorted(ROOT.glob("plugins/filter/*.yml")):
        for name, option in (yaml.safe_load(path.read_text())["DOCUMENTATION"].get("options") or {}).items():
            if name == "mode" and "choices" in option:
                found.append((str(path.relative_to(ROOT)), name, option))
    return found


def test_every_mode_variable_offers_exactly_the_modes():
    found = mode_options()
    names = {name for _, name, _ in found}
    assert {"vxlan_mode", "verify_mode", "mode"} <= names, names  # the test cannot pass by finding nothing
    for where, name, option in found:
        assert option.get("choices") == list(rules.MODES), (where, name, option.get("choices"))


def test_the_mode_list_is_defined_once():
    defined = [p for p in ROOT.glob("plugins/**/*.py") if re.search(r"^MODES\b", p.read_text(), re.M)]
    assert [p.relative_to(ROOT).as_posix() for p in defined] == ["plugins/module_utils/_overlay_rules.py"]
    assert om.ROLE_DEFAULTS["vxlan_mode"] in rules.MODES


def test_no_other_source_spells_the_mode_list_or_the_overhead():
    """The mode list and the VXLAN overhead are written once; roles use the vxlan_overlay_mtu filter."""
    listed = re.compile(r"""["']multicast["'],\s*["']flood["'],\s*["']static["']""")
    overhead = re.compile(r"""\b(50|70)\s+(if|else)\b|[-+]\s*\(?\s*(50|70)\b(?!\s*[%\w])""")
    for path in sorted(ROOT.glob("plugins/**/*.py")):
        if path.name != "_overlay_rules.py":
            assert not listed.search(path.read_text()), path
    for path in sorted(list(ROOT.glob("roles/*/tasks/*.yml")) + list(ROOT.glob("roles/*/vars/*.yml"))
                       + list(ROOT.glob("roles/*/templates/*.j2")) + list(ROOT.glob("playbooks/*.yml"))):
        match = overhead.search(path.read_text())
        assert match is None, (path, match and match.group(0))
    assert sum("VXLAN_OVERHEAD = " in p.read_text() for p in ROOT.glob("plugins/**/*.py")) == 1


@pytest.mark.parametrize("mtu, ip, expected", [(1500, "192.168.1.2", 1450), ("9000", "fd00::1", 8930), (1500, "::ffff:1.2.3.4", 1430)])
def test_overlay_mtu_is_the_underlay_mtu_minus_the_family_overhead(mtu, ip, expected):
    assert params.overlay_mtu(mtu, ip) == expected == int(mtu) - v.VXLAN_OVERHEAD[6 if ":" in ip else 4]


@pytest.mark.parametrize("mtu, ip", [("x", "192.168.1.2"), (1500, "239.1.1.1"), (1500, "")])
def test_overlay_mtu_names_both_values_when_it_cannot(mtu, ip):
    with pytest.raises(Exception, match=r"underlay MTU %r, underlay address %r" % (mtu, ip)):
        params.overlay_mtu(mtu, ip)


def test_the_mode_rules_are_the_same_words_everywhere():
    blue = {"name": "blue", "group": None}
    rule = "network blue has no group; multicast mode needs one (or use vxlan_mode=flood)"
    assert params.mode_problems([blue], "multicast") == ["vxlan_mode='multicast': " + rule]
    assert params.mode_problems([dict(blue, group="239.1.1.1")], "multicast") == params.mode_problems([blue], "flood") == []
    assert params.mode_problems([blue], "bgp") == ["vxlan_mode=bgp: choose one of multicast, flood, static, dove, evpn"]
    # The inventory check says the same of the same network.
    hosts = {"h1": {"vxlan_underlay_ip": "192.168.1.2", "vxlan_mode": "multicast", "vxlan_networks": [{"name": "blue", "vni": 100}],
                    "vxlan_endpoints": [{"network": "blue", "namespace": "ns1", "host_if": "tap1", "vm_if": "tap2", "address": "100.0.0.2/24"}]}}
    assert om.build(hosts)[1] == ["host h1: vxlan_mode='multicast': " + rule]
    with pytest.raises(Exception, match=re.escape(rule)):
        params.overlay_params([dict(blue, vxlan_dev="vxlan0", vni=100, dstport=4789, local="192.168.1.2", bridge="br1",
                                    endpoints=[], flood=[], fdb=[], neigh=[])], "multicast", "eth0", 1450)
