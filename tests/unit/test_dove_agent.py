"""The DOVE agent's plain functions: records, cache, miss parsing, reconcile, config, gateway
stream parsing. No kernel, no store: the netlink messages are built with pyroute2's own message
classes the way the vxlan driver fills them (vxlan_fdb_info: struct ndmsg + NDA_* attributes)
and parsed by pyroute2's marshal, as the agent's bound IPRoute receives them."""

from __future__ import annotations

import json
import socket
import struct
import sys
from pathlib import Path

import pytest
from pyroute2.netlink.rtnl import RTM_NEWLINK, RTM_NEWNEIGH
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl
from pyroute2.netlink.rtnl.ndmsg import ndmsg

from ansible_collections.overlay.vxlan.plugins.module_utils import _validate

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "roles" / "dove_agent" / "files"))

from overlay_vxlan_agent import cache as agent_cache  # noqa: E402
from overlay_vxlan_agent import config as agent_config  # noqa: E402
from overlay_vxlan_agent import daemon, etcd_client, garp, kernel, reconcile  # noqa: E402
from overlay_vxlan_agent import metrics as agent_metrics  # noqa: E402
from overlay_vxlan_agent import records as agent_records  # noqa: E402

PREFIX = "/overlay-vxlan"
MAC2, MAC3, MAC4 = "02:00:64:00:00:02", "02:00:64:00:00:03", "02:00:64:00:00:04"


def ep(ip, mac, vtep, host="h", vni=100):
    return agent_records.Endpoint(vni, ip, mac, vtep, host)


def rec(ip, mac, vtep, host="h", vni=100):
    return {"vni": vni, "ip": ip, "mac": mac, "vtep": vtep, "host": host}


# --- netlink messages (what the kernel sends), built with pyroute2's classes


def wire(msg_class, msg_type, fields, attrs):
    msg = msg_class()
    for key, value in fields.items():
        msg[key] = value
    msg["attrs"] = attrs
    msg["header"]["type"] = msg_type
    msg.encode()
    return msg.data


def miss_l3(ifindex, ip, family=kernel.AF_BRIDGE):
    return wire(ndmsg, kernel.RTM_GETNEIGH, {"family": family, "ifindex": ifindex, "state": 0x04, "ndm_type": 1},
                [("NDA_DST", ip)])


def miss_l2(ifindex, mac, family=kernel.AF_BRIDGE):
    return wire(ndmsg, kernel.RTM_GETNEIGH, {"family": family, "ifindex": ifindex, "state": 0x04, "ndm_type": 1},
                [("NDA_LLADDR", mac)])


def parse_all(datagram):
    return [(msg["header"]["type"], kernel.neigh_entry(msg)) for msg in MarshalRtnl().parse(datagram)]


# --- records


@pytest.mark.parametrize("value,expected", [("02:AA:bb:00:00:01", "02:aa:bb:00:00:01"), ("02-00-00-00-00-01", "02:00:00:00:00:01")])
def test_mac_normalised(value, expected):
    assert agent_records.normalize_mac(value) == expected


@pytest.mark.parametrize("value", ["", "02:00:00:00:00", "zz:00:00:00:00:01", "00:00:00:00:00:00", "01:00:5e:00:00:01",
                                   "ff:ff:ff:ff:ff:ff", 12, None])
def test_bad_macs_rejected(value):
    with pytest.raises(agent_records.RecordError):
        agent_records.normalize_mac(value)


@pytest.mark.parametrize("value", ["", "100.0.0", "239.1.1.1", "0.0.0.0", "255.255.255.255", "ff02::1", "::", 5])
def test_bad_ips_rejected(value):
    with pytest.raises(agent_records.RecordError):
        agent_records.normalize_ip(value)


def test_ipv6_compressed():
    assert agent_records.normalize_ip("2001:db8:0:0::1") == "2001:db8::1"


@pytest.mark.parametrize("value", [0, 16777216, -1, "x", True, 1.5, None])
def test_bad_vni_rejected(value):
    with pytest.raises(agent_records.RecordError):
        agent_records.normalize_vni(value)


def test_record_valid_from_json_bytes():
    value = json.dumps(rec("100.0.0.3", "02:00:64:00:00:03".upper(), "192.168.1.3", "h2")).encode()
    assert agent_records.validate_record(value) == ep("100.0.0.3", MAC3, "192.168.1.3", "h2")


@pytest.mark.parametrize("value,reason", [
    (b"\xff\xfe", "UTF-8"),
    ("{not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({"vni": 100, "ip": "100.0.0.3"}), "missing field"),
    (json.dumps(rec("100.0.0.3", "01:00:5e:00:00:01", "192.168.1.3")), "multicast"),
    (json.dumps(rec("100.0.0.3", MAC3, "127.0.0.1")), "loopback"),
    (json.dumps(rec("100.0.0.3", MAC3, "239.1.1.1")), "unicast"),
    (json.dumps(rec("100.0.0.3", MAC3, "192.168.1.3", vni=0)), "between 1 and 16777215"),
    (json.dumps(rec("100.0.0.3", MAC3, "192.168.1.3", host="a b")), "host"),
])
def test_malformed_records_rejected_with_reason(value, reason):
    with pytest.raises(agent_records.RecordError, match=reason):
        agent_records.validate_record(value)


def test_key_and_value_must_agree():
    value = json.dumps(rec("100.0.0.3", MAC3, "192.168.1.3", "h2"))
    assert agent_records.validate_keyed_record(PREFIX, PREFIX + "/endpoints/100/100.0.0.3/h2", value).host == "h2"
    with pytest.raises(agent_records.RecordError, match="key says vni 200"):
        agent_records.validate_keyed_record(PREFIX, PREFIX + "/endpoints/200/100.0.0.3/h2", value)
    with pytest.raises(agent_records.RecordError, match="key says host h3"):
        agent_records.validate_keyed_record(PREFIX, PREFIX + "/endpoints/100/100.0.0.3/h3", value)
    with pytest.raises(agent_records.RecordError, match="vni/<ip>/<host>|<vni>"):
        agent_records.validate_keyed_record(PREFIX, PREFIX + "/endpoints/100/100.0.0.3", value)
    with pytest.raises(agent_records.RecordError, match="outside"):
        agent_records.validate_keyed_record(PREFIX, "/other/endpoints/100/100.0.0.3/h2", value)


def test_record_key_round_trip():
    endpoint = ep("100.0.0.3", MAC3, "192.168.1.3", "h2")
    key = agent_records.record_key(PREFIX + "/", endpoint)
    assert key == "/overlay-vxlan/endpoints/100/100.0.0.3/h2"
    assert agent_records.validate_keyed_record(PREFIX, key, agent_records.record_value(endpoint)) == endpoint


def test_endpoint_map_keeps_good_entries_and_names_bad_ones():
    records, errors = agent_records.parse_endpoint_map({"endpoints": [
        rec("100.0.0.2", MAC2, "192.168.1.2", "h1"),
        rec("100.0.0.3", "bogus", "192.168.1.3", "h2"),
        rec("100.0.0.4", MAC4, "192.168.1.4", "h3"),
    ]})
    assert sorted(e.ip for e, _rev in records.values()) == ["100.0.0.2", "100.0.0.4"]
    assert errors == [("endpoints[1]", "mac='bogus': is not a MAC address (expected six hex octets, e.g. 02:00:64:00:00:02)")]
    assert agent_records.parse_endpoint_map({"endpoints": "x"}) == ({}, [("endpoints", "is not a list")])


# --- cache


def test_cache_lookup_by_ip_and_mac():
    cache = agent_cache.EndpointCache()
    assert cache.put("k3", ep("100.0.0.3", MAC3, "192.168.1.3"), 5)
    assert cache.by_ip(100, "100.0.0.3").vtep == "192.168.1.3"
    assert cache.by_mac(100, MAC3).ip == "100.0.0.3"
    assert cache.by_ip(200, "100.0.0.3") is None
    assert not cache.put("k3", ep("100.0.0.3", MAC3, "192.168.1.3"), 5)  # unchanged
    assert cache.delete("k3") and not cache.delete("k3")
    assert cache.by_ip(100, "100.0.0.3") is None and cache.by_mac(100, MAC3) is None


def test_cache_move_newest_revision_wins_in_either_order():
    old = ep("100.0.0.4", MAC4, "192.168.1.4", "h3")
    new = ep("100.0.0.4", MAC4, "192.168.1.3", "h2")
    cache = agent_cache.EndpointCache()
    cache.put("h3", old, 10)
    cache.put("h2", new, 11)
    assert cache.by_ip(100, "100.0.0.4") == new and cache.by_mac(100, MAC4) == new
    cache.delete("h3")
    assert cache.by_ip(100, "100.0.0.4") == new
    # delete arrives first, then the put
    cache = agent_cache.EndpointCache()
    cache.put("h3", old, 10)
    cache.delete("h3")
    assert cache.by_ip(100, "100.0.0.4") is None
    cache.put("h2", new, 11)
    assert cache.by_mac(100, MAC4).vtep == "192.168.1.3"


def test_cache_replace_all_drops_vanished():
    cache = agent_cache.EndpointCache()
    cache.put("a", ep("100.0.0.2", MAC2, "192.168.1.2"), 1)
    cache.put("b", ep("100.0.0.3", MAC3, "192.168.1.3"), 2)
    assert cache.replace_all({"b": (ep("100.0.0.3", MAC3, "192.168.1.9"), 3)})
    assert len(cache) == 1 and cache.by_ip(100, "100.0.0.2") is None
    assert cache.by_ip(100, "100.0.0.3").vtep == "192.168.1.9"
    assert not cache.replace_all({"b": (ep("100.0.0.3", MAC3, "192.168.1.9"), 3)})


def test_cache_mac_change_reindexes():
    cache = agent_cache.EndpointCache()
    cache.put("a", ep("100.0.0.2", MAC2, "192.168.1.2"), 1)
    cache.put("a", ep("100.0.0.2", MAC3, "192.168.1.2"), 2)
    assert cache.by_mac(100, MAC2) is None and cache.by_mac(100, MAC3).ip == "100.0.0.2"


# --- netlink parsing


def test_l3miss_parsed_and_classified():
    [(kind, entry)] = parse_all(miss_l3(7, "100.0.0.3"))
    assert kind == kernel.RTM_GETNEIGH and entry["dst"] == "100.0.0.3" and entry["mac"] is None
    assert kernel.classify_miss(kind, entry, {7}) == kernel.Miss("l3", 7, "100.0.0.3")


def test_l3miss_with_inet_family_also_classified():
    [(kind, entry)] = parse_all(miss_l3(7, "100.0.0.3", family=socket.AF_INET))
    assert kernel.classify_miss(kind, entry, {7}).kind == "l3"


def test_l2miss_parsed_and_classified():
    [(kind, entry)] = parse_all(miss_l2(7, MAC3))
    assert kernel.classify_miss(kind, entry, {7}) == kernel.Miss("l2", 7, MAC3)


def test_misses_on_other_devices_or_other_messages_ignored():
    [(kind, entry)] = parse_all(miss_l3(8, "100.0.0.3"))
    assert kernel.classify_miss(kind, entry, {7}) is None
    assert kernel.classify_miss(RTM_NEWNEIGH, entry, {8}) is None
    both = dict(entry, mac=MAC3)
    assert kernel.classify_miss(kernel.RTM_GETNEIGH, both, {8}) is None


def test_several_messages_in_one_datagram():
    datagram = miss_l3(7, "100.0.0.3") + miss_l2(7, MAC4) + miss_l3(7, "100.0.0.2")
    misses = [kernel.classify_miss(k, e, {7}) for k, e in parse_all(datagram)]
    assert [m.key for m in misses] == ["100.0.0.3", MAC4, "100.0.0.2"]


def test_fdb_entry_parsed():
    data = wire(ndmsg, RTM_NEWNEIGH, {"family": kernel.AF_BRIDGE, "ifindex": 7, "state": 0xC0, "flags": kernel.NTF_SELF},
                [("NDA_LLADDR", MAC3.upper()), ("NDA_DST", "192.168.1.3"), ("NDA_PORT", 4789), ("NDA_VNI", 100)])
    [msg] = MarshalRtnl().parse(data)
    entry = kernel.neigh_entry(msg)
    assert (entry["mac"], entry["dst"], entry["port"], entry["vni"], entry["flags"]) == (MAC3, "192.168.1.3", 4789, 100, 2)


def test_ifinfomsg_parsed():
    linkinfo = {"attrs": [("IFLA_INFO_KIND", "vxlan"),
                          ("IFLA_INFO_DATA", {"attrs": [("IFLA_VXLAN_ID", 100), ("IFLA_VXLAN_LOCAL", "192.168.1.2")]})]}
    data = wire(ifinfmsg, RTM_NEWLINK, {"index": 9, "flags": 0x1043},
                [("IFLA_IFNAME", "vxlan0"), ("IFLA_MASTER", 4), ("IFLA_LINKINFO", linkinfo)])
    [msg] = MarshalRtnl().parse(data)
    link = kernel.link_entry(msg)
    assert link == {"index": 9, "flags": 0x1043, "name": "vxlan0", "master": 4, "kind": "vxlan", "vni": 100, "local": "192.168.1.2"}


@pytest.mark.parametrize("ip", ["::ffff:1.2.3.4", "2001:db8::1", "fe80::1", "100.0.0.3"])
def test_kernel_reader_and_record_normaliser_agree(ip):
    """One normaliser: what the kernel reports for an address (pyroute2 parsing NDA_DST) is
    exactly what a record for that address normalises to, and what the modules' _validate gives."""
    [(kind, entry)] = parse_all(miss_l3(7, ip))
    spelled = ip.replace("::ffff:", "0:0:0:0:0:ffff:").upper() if ":" in ip else ip
    assert entry["dst"] == agent_records.normalize_ip(spelled) == _validate.unicast_ip("ip", spelled) == ip
    endpoint = agent_records.validate_record(rec(spelled, MAC3, "192.168.1.3"))
    assert kernel.classify_miss(kind, entry, {7}).key == endpoint.ip


# --- adoption and reconcile


def test_adopt_takes_only_agent_owned_entries():
    neigh = [
        {"family": socket.AF_INET, "ifindex": 7, "state": kernel.NUD_PERMANENT, "dst": "100.0.0.3", "mac": MAC3},
        {"family": socket.AF_INET, "ifindex": 7, "state": 0x02, "dst": "100.0.0.9", "mac": MAC3},  # reachable: kernel's
        {"family": socket.AF_INET, "ifindex": 3, "state": kernel.NUD_PERMANENT, "dst": "10.0.0.1", "mac": MAC2},  # other dev
    ]
    fdb = [
        {"family": kernel.AF_BRIDGE, "ifindex": 7, "state": 0xC0, "flags": kernel.NTF_SELF, "mac": MAC3, "dst": "192.168.1.3"},
        {"family": kernel.AF_BRIDGE, "ifindex": 7, "state": 0xC0, "flags": kernel.NTF_SELF, "mac": agent_records.ZERO_MAC, "dst": "192.168.1.3"},
        {"family": kernel.AF_BRIDGE, "ifindex": 7, "state": 0x80, "flags": 0x04, "mac": MAC4, "dst": None},  # bridge master
        {"family": kernel.AF_BRIDGE, "ifindex": 7, "state": 0x80, "flags": kernel.NTF_SELF, "mac": "33:33:00:00:00:01", "dst": None},
    ]
    owned_neigh, owned_fdb = reconcile.adopt_entries(neigh, fdb, {7: 100})
    assert owned_neigh == {(100, "100.0.0.3"): MAC3}
    assert owned_fdb == {(100, MAC3): "192.168.1.3"}


def make_cache(*endpoints):
    cache = agent_cache.EndpointCache()
    for rev, endpoint in enumerate(endpoints, 1):
        cache.put("%d/%s/%s" % (endpoint.vni, endpoint.ip, endpoint.host), endpoint, rev)
    return cache


def test_reconcile_nothing_to_do():
    cache = make_cache(ep("100.0.0.3", MAC3, "192.168.1.3", "h2"))
    assert reconcile.plan_reconcile({(100, "100.0.0.3"): MAC3}, {(100, MAC3): "192.168.1.3"}, cache, {"192.168.1.2"}) == []


def test_reconcile_removes_what_the_store_forgot():
    cache = make_cache()
    ops = reconcile.plan_reconcile({(100, "100.0.0.3"): MAC3}, {(100, MAC3): "192.168.1.3"}, cache, {"192.168.1.2"})
    assert ops == [("neigh", "delete", 100, "100.0.0.3", MAC3), ("fdb", "delete", 100, MAC3, "192.168.1.3")]


def test_reconcile_repoints_a_moved_vm():
    cache = make_cache(ep("100.0.0.4", MAC4, "192.168.1.3", "h2"))
    ops = reconcile.plan_reconcile({(100, "100.0.0.4"): MAC4}, {(100, MAC4): "192.168.1.4"}, cache, {"192.168.1.2"})
    assert ops == [("fdb", "replace", 100, MAC4, "192.168.1.3")]


def test_reconcile_vm_with_new_mac():
    cache = make_cache(ep("100.0.0.4", MAC2, "192.168.1.4", "h3"))
    ops = reconcile.plan_reconcile({(100, "100.0.0.4"): MAC4}, {(100, MAC4): "192.168.1.4"}, cache, {"192.168.1.2"})
    assert ops == [("fdb", "replace", 100, MAC2, "192.168.1.4"), ("neigh", "replace", 100, "100.0.0.4", MAC2),
                   ("fdb", "delete", 100, MAC4, "192.168.1.4")]


def test_reconcile_vm_moved_here_is_removed():
    cache = make_cache(ep("100.0.0.4", MAC4, "192.168.1.2", "h1"))
    ops = reconcile.plan_reconcile({(100, "100.0.0.4"): MAC4}, {(100, MAC4): "192.168.1.4"}, cache, {"192.168.1.2"})
    assert ops == [("neigh", "delete", 100, "100.0.0.4", MAC4), ("fdb", "delete", 100, MAC4, "192.168.1.4")]


def test_reconcile_reinstalls_interest_that_came_back():
    cache = make_cache(ep("100.0.0.4", MAC4, "192.168.1.3", "h2"))
    ops = reconcile.plan_reconcile({}, {}, cache, {"192.168.1.2"}, interest=[(100, "100.0.0.4"), (100, "100.0.0.9")])
    assert ops == [("fdb", "replace", 100, MAC4, "192.168.1.3"), ("neigh", "replace", 100, "100.0.0.4", MAC4)]


def test_reconcile_keeps_fdb_only_entries_that_are_known():
    cache = make_cache(ep("100.0.0.3", MAC3, "192.168.1.3", "h2"))
    assert reconcile.plan_reconcile({}, {(100, MAC3): "192.168.1.3"}, cache, {"192.168.1.2"}) == []


# --- gratuitous ARP


def test_garp_layout():
    frame = garp.build_garp(MAC3, "100.0.0.3")
    assert len(frame) == 60
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == bytes.fromhex("020064000003") and frame[12:14] == b"\x08\x06"
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 2)
    sha, spa, tha, tpa = frame[22:28], frame[28:32], frame[32:38], frame[38:42]
    assert sha == tha == bytes.fromhex("020064000003") and spa == tpa == socket.inet_aton("100.0.0.3")


# --- metrics


def test_percentiles_and_metrics_file(tmp_path):
    assert agent_metrics.percentile([], 0.5) is None
    values = list(range(1, 101))
    assert agent_metrics.percentile(values, 0.5) == 50 and agent_metrics.percentile(values, 0.99) == 99 and agent_metrics.percentile(values, 1.0) == 100
    metrics = agent_metrics.Metrics(ring=10)
    for value in range(20):
        metrics.latency(value)
        metrics.inc("misses_seen")
    path = tmp_path / "m.json"
    metrics.write(str(path))
    data = json.loads(path.read_text())
    assert data["counters"]["misses_seen"] == 20
    assert data["resolve_latency_us"]["count"] == 10 and data["resolve_latency_us"]["max"] == 19


# --- config


INVENTORY_VTEPS = {"h1": ["192.168.1.2"], "h2": ["192.168.1.3"], "h3": "192.168.1.4"}


def base_config(**extra):
    config = {"host": "h1", "vtep": "192.168.1.2", "networks": [{"name": "blue", "vni": 100, "vxlan_dev": "vxlan0", "bridge": "br1"}],
              "local_endpoints": [{"network": "blue", "address": "100.0.0.2/24", "mac": "02:00:64:00:00:02"}],
              "etcd": {"endpoints": "http://192.168.1.10:2379, http://192.168.1.11:2379"},
              "inventory": {"vteps": INVENTORY_VTEPS}}
    config.update(extra)
    return config


def test_config_defaults_and_normalisation():
    config = agent_config.validate_config(base_config())
    assert config["etcd"]["endpoints"] == ["http://192.168.1.10:2379", "http://192.168.1.11:2379"]
    assert config["etcd"]["lease_ttl"] == 10 and config["file"]["poll_interval"] == 0.2
    assert config["local_endpoints"] == [{"vni": 100, "ip": "100.0.0.2", "mac": MAC2, "namespace": None, "vm_if": None}]


@pytest.mark.parametrize("change,message", [
    ({"bogus": 1}, "unknown option"),
    ({"host": ""}, "host"),
    ({"vtep": "239.1.1.1"}, "vtep"),
    ({"backend": "redis"}, "backend"),
    ({"networks": []}, "networks"),
    ({"networks": [{"vni": 0, "vxlan_dev": "vxlan0"}]}, "vni"),
    ({"local_endpoints": [{"vni": 200, "ip": "100.0.0.2", "mac": MAC2}]}, "not one of the served"),
    ({"local_endpoints": [{"vni": 100, "ip": "100.0.0.2"}]}, "needs mac"),
    ({"etcd": {"endpoints": ["ftp://x"]}}, "http"),
    ({"etcd": {"cert": "/c.pem"}}, "go together"),
    ({"etcd": {"endpoints": ["https://192.168.1.10:2379", "http://192.168.1.11:2379"]}}, "all http or all https"),
    ({"etcd": {"endpoints": ["http://192.168.1.10:2379"], "ca_cert": "/ca.pem"}}, "use https URLs"),
    ({"etcd": {"lease_ttl": 1}}, "lease_ttl"),
    ({"etcd": {"nope": 1}}, "unknown option"),
])
def test_config_errors_name_the_field(change, message):
    with pytest.raises(agent_config.ConfigError, match=message):
        agent_config.validate_config(base_config(**change))


def test_file_backend_needs_no_etcd_endpoints():
    config = agent_config.validate_config(base_config(backend="file", etcd={"endpoints": []}, file={"path": "/tmp/map.json"}))
    assert config["backend"] == "file"


# --- etcd gateway helpers


def test_prefix_range_end():
    assert etcd_client.prefix_range_end("/a/") == b"/a0"
    assert etcd_client.prefix_range_end("ab\xff") == "ab\xff".encode()[:-1] + b"\xc0"
    assert etcd_client.prefix_range_end("") == b"\0"


def test_json_stream_split_across_chunks():
    one = json.dumps({"result": {"created": True}})
    two = json.dumps({"result": {"events": []}})
    docs, rest = etcd_client.iter_json_stream(one + "\n" + two[:10])
    assert docs == [{"result": {"created": True}}] and rest == two[:10]
    docs, rest = etcd_client.iter_json_stream(rest + two[10:] + "\n")
    assert docs == [{"result": {"events": []}}] and rest == ""


def b64(text):
    import base64

    return base64.b64encode(text.encode()).decode()


def test_watch_events_put_delete_and_cancel():
    doc = {"result": {"events": [
        {"kv": {"key": b64(PREFIX + "/endpoints/100/100.0.0.3/h2"), "value": b64("{}"), "mod_revision": "12"}},
        {"type": "DELETE", "kv": {"key": b64(PREFIX + "/endpoints/100/100.0.0.4/h3"), "mod_revision": "13"}},
    ]}}
    assert etcd_client.watch_events(doc) == [("PUT", PREFIX + "/endpoints/100/100.0.0.3/h2", b"{}", 12),
                                       ("DELETE", PREFIX + "/endpoints/100/100.0.0.4/h3", b"", 13)]
    assert etcd_client.watch_events({"result": {"created": True}}) == []
    with pytest.raises(etcd_client.WatchCanceled):
        etcd_client.watch_events({"result": {"canceled": True, "compact_revision": "5"}})
    with pytest.raises(etcd_client.StoreError):
        etcd_client.watch_events({"error": {"message": "boom"}})


class FakeKernel:
    """Records the table writes an Agent makes (for the miss/reconcile paths only)."""

    def __init__(self):
        self.calls = []

    def fdb_replace(self, ifindex, mac, vtep):
        self.calls.append(("fdb", ifindex, mac, vtep))

    def neigh_replace(self, ifindex, ip, mac):
        self.calls.append(("neigh", ifindex, ip, mac))

    def neigh_delete(self, ifindex, ip):
        self.calls.append(("neigh-del", ifindex, ip))

    def fdb_delete(self, ifindex, mac, vtep):
        self.calls.append(("fdb-del", ifindex, mac, vtep))


def make_agent():
    config = agent_config.validate_config(base_config(announce=False, metrics_file=""))
    instance = daemon.Agent(config)
    instance.kernel = FakeKernel()
    instance.devices = {7: {"vni": 100, "vxlan_dev": "vxlan0", "ifindex": 7, "bridge_index": 4}}
    instance.vni_index = {100: 7}
    return instance


def test_agent_answers_l3miss_with_fdb_first_then_neigh():
    instance = make_agent()
    instance.handle_item(("snapshot", [(PREFIX + "/endpoints/100/100.0.0.3/h2", json.dumps(rec("100.0.0.3", MAC3, "192.168.1.3", "h2")), 4)]))
    instance.handle_miss(kernel.Miss("l3", 7, "100.0.0.3"), daemon.time.monotonic())
    assert instance.kernel.calls == [("fdb", 7, MAC3, "192.168.1.3"), ("neigh", 7, "100.0.0.3", MAC3)]
    counters = instance.metrics.counters
    assert (counters["misses_seen"], counters["misses_answered"], counters["misses_l3"]) == (1, 1, 1)
    assert len(instance.metrics.latencies) == 1


def test_agent_unknown_local_and_malformed():
    instance = make_agent()
    instance.handle_item(("snapshot", [
        (PREFIX + "/endpoints/100/100.0.0.2/h1", json.dumps(rec("100.0.0.2", MAC2, "192.168.1.2", "h1")), 3),
        (PREFIX + "/endpoints/100/100.0.0.5/h2", json.dumps(rec("100.0.0.5", "ff:ff:ff:ff:ff:ff", "192.168.1.3", "h2")), 4),
    ]))
    instance.handle_miss(kernel.Miss("l3", 7, "100.0.0.2"), 0)  # local VM: not installed
    instance.handle_miss(kernel.Miss("l3", 7, "100.0.0.5"), 0)  # malformed record: unknown
    instance.handle_miss(kernel.Miss("l2", 7, MAC4), 0)  # unknown
    assert instance.kernel.calls == []
    counters = instance.metrics.counters
    assert (counters["misses_local"], counters["misses_unknown"], counters["records_rejected"]) == (1, 2, 1)


def test_agent_watch_delete_removes_installed_entries():
    instance = make_agent()
    key = PREFIX + "/endpoints/100/100.0.0.3/h2"
    instance.handle_item(("snapshot", [(key, json.dumps(rec("100.0.0.3", MAC3, "192.168.1.3", "h2")), 4)]))
    instance.handle_miss(kernel.Miss("l3", 7, "100.0.0.3"), 0)
    instance.kernel.calls.clear()
    assert instance.handle_item(("events", [("DELETE", key, b"", 9)]))
    instance.reconcile()
    assert instance.kernel.calls == [("neigh-del", 7, "100.0.0.3"), ("fdb-del", 7, MAC3, "192.168.1.3")]
    assert instance.owned_neigh == {} and instance.owned_fdb == {}
    # it comes back (the VM asked for it recently): installed again without a miss
    instance.kernel.calls.clear()
    instance.handle_item(("events", [("PUT", key, json.dumps(rec("100.0.0.3", MAC3, "192.168.1.3", "h2")).encode(), 10)]))
    instance.reconcile()
    assert instance.kernel.calls == [("fdb", 7, MAC3, "192.168.1.3"), ("neigh", 7, "100.0.0.3", MAC3)]
