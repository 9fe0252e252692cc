"""overlay.vxlan.vtep_allowlist against the real kernel's nftables, inside throwaway namespaces.

Every result is paired with what `nft -j list table inet overlay_vxlan` reads back in the
namespace. What the filter does to real VXLAN traffic (an intruder, a spoofer, legitimate
peers) is tests/integration/test_allowlist.py.
"""

from __future__ import annotations

import json

from helpers import ns_exec, run_module

MEMBERS = [
    {"address": "192.168.1.2", "mac": "02:FA:C0:A8:01:02"},
    {"address": "2001:0db8:1::3", "mac": "02-fb-00-00-00-03"},
    {"address": "192.168.1.9"},  # no MAC known: accepted by address alone, with a warning
]


def table(ns: str) -> dict | None:
    """{'handle': table handle, 'sets': {name: elements}, 'rules': n} or None if absent."""
    proc = ns_exec(ns, "nft", "-j", "-a", "list", "table", "inet", "overlay_vxlan", check=False)
    if proc.returncode != 0:
        return None
    items = json.loads(proc.stdout)["nftables"]
    result = {"sets": {}, "rules": 0, "foreign": None}
    for item in items:
        if "table" in item:
            result["handle"] = item["table"]["handle"]
        elif "set" in item:
            result["sets"][item["set"]["name"]] = sorted(
                " . ".join(e["concat"]) if isinstance(e, dict) else str(e) for e in item["set"].get("elem", []))
        elif "rule" in item:
            result["rules"] += 1
        elif "counter" in item and item["counter"]["name"] == "foreign":
            result["foreign"] = item["counter"]["handle"]
    return result


def other_table(ns: str) -> str:
    return ns_exec(ns, "nft", "list", "table", "inet", "host_rules").stdout


def test_check_apply_idempotent_update_in_place_and_absent(ns):
    name = ns.name
    # the host's own rules: never touched
    ns_exec(name, "nft", "add table inet host_rules; add chain inet host_rules c { type filter hook input priority 0; }; "
            "add rule inet host_rules c tcp dport 22 accept")
    host_rules = other_table(name)
    args = {"netns": name, "members": MEMBERS, "ports": [4789, 8472]}

    checked = run_module("vtep_allowlist", args, check=True)
    assert checked["changed"] and not checked.get("failed"), checked
    assert table(name) is None  # check mode changed nothing
    assert checked["diff"]["before"] == {"exists": False}
    assert checked["diff"]["after"]["members"] == [
        {"address": "192.168.1.2", "mac": "02:fa:c0:a8:01:02"}, {"address": "192.168.1.9", "mac": None},
        {"address": "2001:db8:1::3", "mac": "02:fb:00:00:00:03"}]
    assert "no underlay MAC known for 192.168.1.9" in json.dumps(checked["warnings"])

    applied = run_module("vtep_allowlist", args)
    assert applied["changed"] and applied["counters"] == {"foreign": {"packets": 0, "bytes": 0}, "spoofed": {"packets": 0, "bytes": 0}}
    made = table(name)
    assert made["sets"]["ports"] == ["4789", "8472"]
    assert made["sets"]["members4"] == ["192.168.1.2", "192.168.1.9"] and made["sets"]["members6"] == ["2001:db8:1::3"]
    assert made["sets"]["bound4"] == ["192.168.1.2 . 02:fa:c0:a8:01:02"]
    assert made["sets"]["bound6"] == ["2001:db8:1::3 . 02:fb:00:00:00:03"]
    assert made["sets"]["unbound4"] == ["192.168.1.9"] and made["rules"] == 9

    again = run_module("vtep_allowlist", args)
    assert not again["changed"] and again["commands"] == []
    assert run_module("vtep_allowlist", args, check=True)["changed"] is False

    # a member leaves, another joins: the sets change in place (same table, same counter objects)
    args["members"] = MEMBERS[:2] + [{"address": "2001:db8:1::4", "mac": "02:fb:00:00:00:04"}]
    updated = run_module("vtep_allowlist", args)
    assert updated["changed"] and all("element" in cmd for cmd in updated["commands"]), updated["commands"]
    after = table(name)
    assert (after["handle"], after["foreign"]) == (made["handle"], made["foreign"])
    assert after["sets"]["members4"] == ["192.168.1.2"] and after["sets"]["unbound4"] == []
    assert after["sets"]["bound6"] == ["2001:db8:1::3 . 02:fb:00:00:00:03", "2001:db8:1::4 . 02:fb:00:00:00:04"]

    # a rule deleted by hand: the table is replaced in one transaction and is whole again
    handles = json.loads(ns_exec(name, "nft", "-j", "-a", "list", "chain", "inet", "overlay_vxlan", "vxlan").stdout)
    last = [item["rule"]["handle"] for item in handles["nftables"] if "rule" in item][-1]
    ns_exec(name, "nft", "delete", "rule", "inet", "overlay_vxlan", "vxlan", "handle", str(last))
    repaired = run_module("vtep_allowlist", args)
    assert repaired["changed"] and repaired["commands"][0] == "delete table inet overlay_vxlan"
    assert table(name)["rules"] == 9 and not run_module("vtep_allowlist", args)["changed"]

    # bind_mac false (a routed underlay): every member by address alone
    routed = run_module("vtep_allowlist", dict(args, bind_mac=False))
    assert routed["changed"] and table(name)["sets"]["bound6"] == [] and table(name)["sets"]["unbound6"] == ["2001:db8:1::3", "2001:db8:1::4"]

    gone = run_module("vtep_allowlist", {"netns": name, "state": "absent"}, check=True)
    assert gone["changed"] and table(name) is not None
    assert run_module("vtep_allowlist", {"netns": name, "state": "absent"})["changed"]
    assert table(name) is None
    assert not run_module("vtep_allowlist", {"netns": name, "state": "absent"})["changed"]
    assert other_table(name) == host_rules


def test_bad_input_is_refused_before_nftables_is_touched(ns):
    for members, field in (([{"address": "ff05::1"}], "members[0].address"),
                           ([{"address": "192.168.1.2", "mac": "01:00:5e:00:00:01"}], "members[0].mac"),
                           ([{"address": "192.168.1.2"}, {"address": "192.168.1.2"}], "members[1].address")):
        result = run_module("vtep_allowlist", {"netns": ns.name, "members": members})
        assert result.get("failed") and result["field"] == field, result
    assert run_module("vtep_allowlist", {"netns": ns.name, "table": "bad name"})["field"] == "table"
    assert run_module("vtep_allowlist", {"netns": ns.name, "ports": [0]})["field"] == "ports[0]"
    missing = run_module("vtep_allowlist", {"netns": "ovxt-does-not-exist"})
    assert missing.get("failed") and missing["msg"] == "netns='ovxt-does-not-exist': network namespace does not exist"
    assert table(ns.name) is None
