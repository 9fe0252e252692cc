"""overlay.vxlan.overlay_state against a real kernel: the record, the restore it writes (run
as the boot unit runs it, without Ansible), pruning, and removal of everything recorded.

The "host" is the `underlay` fixture's namespace (the items' `netns`); the VM namespace has a
unique name and is removed in a finalizer even when a test fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from _assertions import differences, warning_texts
from _settled import state_dump
from helpers import ROOT, ip_json, ns_exec, run_module, unique
from pyroute2 import netns

MODULE = "overlay_state"


@pytest.fixture
def vm():
    name = unique("ovxt-vm")
    yield name
    if name in netns.listnetns():
        netns.remove(name)


def lists(host: str, vm: str, with_vm: bool = True) -> dict:
    """The source's static mode on h1, as the roles hand it over (every item in `host`)."""
    return {
        "linux_bridge": [{"name": "br1", "mtu": 1450, "netns": host}],
        "netns_veth": [{"namespace": vm, "name": "tap1", "peer": "tap2", "master": "br1", "addresses": ["100.0.0.2/24"],
                        "mac": "02:00:64:00:00:02", "mtu": 1450, "netns": host}] if with_vm else [],
        "vxlan_link": [{"name": "vxlan0", "vni": 100, "dstport": 4789, "local": "192.168.1.2", "dev": "eth0",
                        "learning": False, "proxy": True, "mtu": 1450, "master": "br1", "netns": host}],
        "bridge_fdb": [{"dev": "vxlan0", "state": "exact", "netns": host,
                        "entries": [{"mac": "02:00:64:00:00:03", "dst": "192.168.1.3"}]}],
        "ip_neigh": [{"dev": "vxlan0", "state": "exact", "netns": host,
                      "entries": [{"ip": "100.0.0.3", "lladdr": "02:00:64:00:00:03"}]}],
    }


def restore(path: str) -> subprocess.CompletedProcess:
    """What the boot unit runs: the written script, a plain Python, no Ansible on the path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-I", os.path.join(path, "restore.py")], capture_output=True, text=True,
                          env=env, timeout=60)


def configuration(ns: str) -> dict:
    """state_dump without what a re-created device gets anew from the kernel (ifindex, random
    MACs of bridge and host-side veth, and the bridge's own fdb entries for those MACs)."""
    dump = state_dump(ns)
    for item in dump["links"] + dump["addrs"]:
        for key in ("ifindex", "link_index", "address", "broadcast", "perm_address"):
            item.pop(key, None)
        for data in ("info_data", "info_slave_data"):  # bridge ids are made of the bridge's MAC
            for key in ("id", "bridge_id", "root_id", "designated_root", "designated_bridge"):
                item.get("linkinfo", {}).get(data, {}).pop(key, None)
    dump["fdb"] = [e for e in dump["fdb"] if e.get("ifname") == "vxlan0" and "dst" in e]
    return dump


def links(ns: str) -> set[str]:
    return {item["ifname"] for item in ip_json(ns, "link", "show")}


def test_record_restore_prune_absent(underlay, vm, tmp_path):
    path = str(tmp_path / "state")
    host = underlay.name
    args = dict(lists(host, vm), path=path)

    checked = run_module(MODULE, args, check=True)
    assert checked["changed"] is True and "state.json" in checked["files"], checked
    assert not os.path.exists(path), "check mode wrote files"

    first = run_module(MODULE, args)
    assert first["changed"] is True and not first.get("failed"), first
    record = json.loads((tmp_path / "state" / "state.json").read_text())
    assert record["resources"]["vxlan_link"][0]["vni"] == 100 and record["resources"]["vxlan_link"][0]["state"] == "present"
    assert run_module(MODULE, args)["changed"] is False, "second run must be quiet"
    # The restore only needs Python and pyroute2: the code it runs was written beside the record.
    assert "ansible" not in os.listdir(os.path.join(path, "lib")), os.listdir(os.path.join(path, "lib"))

    # A fresh host: the restore builds everything the record lists, with the modules' own code.
    built = restore(path)
    assert built.returncode == 0, built.stderr
    assert "5 item(s), 5 restored" in built.stdout, built.stdout
    assert {"br1", "tap1", "vxlan0"} <= links(host)
    assert ns_exec(vm, "ip", "-br", "addr", "show", "tap2").stdout.split()[2] == "100.0.0.2/24"
    converged = configuration(host)
    again = restore(path)
    assert again.returncode == 0 and "0 restored, 5 already as wanted" in again.stdout, again.stdout

    # "Reboot": the runtime state goes; the restore brings back exactly the same kernel state.
    for dev in ("vxlan0", "tap1", "br1"):
        ns_exec(host, "ip", "link", "del", dev)
    netns.remove(vm)
    back = restore(path)
    assert back.returncode == 0 and "5 restored" in back.stdout, (back.stdout, back.stderr)
    restored = configuration(host)
    for key in converged:
        assert restored[key] == converged[key], differences(converged[key], restored[key])
    assert vm in netns.listnetns()

    # The VM leaves the inventory: its namespace and veth pair leave the host (check mode first).
    smaller = dict(lists(host, vm, with_vm=False), path=path)
    would = run_module(MODULE, smaller, check=True)
    assert would["changed"] is True and would["removed"] == ["netns_veth %s/tap1" % vm], would
    assert vm in netns.listnetns() and "tap1" in links(host)
    pruned = run_module(MODULE, smaller)
    assert pruned["removed"] == ["netns_veth %s/tap1" % vm], pruned
    assert vm not in netns.listnetns() and "tap1" not in links(host)
    assert {"br1", "vxlan0"} <= links(host)
    assert run_module(MODULE, smaller)["changed"] is False

    # Teardown: everything recorded goes, then the record.
    gone = run_module(MODULE, {"path": path, "state": "absent"})
    assert gone["changed"] is True and set(gone["removed"]) == {"vxlan_link vxlan0", "linux_bridge br1"}, gone
    assert not os.path.exists(path)
    assert links(host) == {"lo", "eth0", "eth0-peer"}
    assert run_module(MODULE, {"path": path, "state": "absent"})["changed"] is False


def test_restore_reports_what_failed_and_goes_on(underlay, vm, tmp_path):
    """A record whose underlay device is gone: the vxlan device and its tables fail, named;
    the bridge and the VM are still restored; the script exits non-zero (the unit fails)."""
    path = str(tmp_path / "state")
    args = dict(lists(underlay.name, vm), path=path)
    assert run_module(MODULE, args)["changed"] is True
    ns_exec(underlay.name, "ip", "link", "del", "eth0")
    result = restore(path)
    assert result.returncode == 1, result
    assert "FAILED vxlan_link vxlan0: dev='eth0': no such interface" in result.stderr, result.stderr
    assert {"br1", "tap1"} <= links(underlay.name) and "vxlan0" not in links(underlay.name)


def test_bad_item_is_named_and_nothing_written(underlay, tmp_path):
    path = str(tmp_path / "state")
    result = run_module(MODULE, {"path": path, "vxlan_link": [{"name": "vxlan0", "vni": "abc"}]})
    assert result["failed"] is True and result["changed"] is False, result
    assert "vxlan_link[0]" in result["msg"] and "vni" in result["msg"], result["msg"]
    assert "Traceback" not in result["_stderr"]
    assert not os.path.exists(path)


def test_restore_script_does_not_import_ansible(underlay, vm, tmp_path):
    """At boot there is no Ansible on the host: the restore must not need it."""
    path = str(tmp_path / "state")
    assert run_module(MODULE, dict(lists(underlay.name, vm), path=path))["changed"] is True
    probe = ("import sys, runpy\nsys.argv=[%r]\n"
             "class Block:\n def find_spec(self, name, *a):\n  if name == 'ansible' or name.startswith('ansible.'):\n"
             "   raise ImportError('no ansible at boot: ' + name)\nsys.meta_path.insert(0, Block())\n"
             "runpy.run_path(%r, run_name='__main__')\n") % (os.path.join(path, "restore.py"), os.path.join(path, "restore.py"))
    result = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert str(ROOT) not in open(os.path.join(path, "restore.py")).read()


def test_the_record_is_private_to_root_and_an_older_0644_one_is_rewritten_0600(underlay, vm, tmp_path):
    path = str(tmp_path / "state")
    args = dict(lists(underlay.name, vm), path=path)
    assert run_module(MODULE, args)["changed"] is True
    record = os.path.join(path, "state.json")
    assert oct(os.stat(record).st_mode & 0o777) == "0o600"
    assert oct(os.stat(os.path.join(path, "restore.py")).st_mode & 0o777) == "0o644"
    assert [name for name in os.listdir(path) if name.startswith(".tmp-")] == [], "a temporary file was left"
    os.chmod(record, 0o644)  # as an older version wrote it
    again = run_module(MODULE, args)
    assert again["changed"] is True and again["files"] == ["state.json"], again
    assert oct(os.stat(record).st_mode & 0o777) == "0o600"
    assert run_module(MODULE, args)["changed"] is False


def _recorded_options(path: str) -> dict:
    return json.loads(open(os.path.join(path, "state.json")).read())


# A damaged record, as a crash, a full disk or a hand edit leaves it, and what it is named for.
DAMAGED = {
    "empty": (lambda good: b"", "is empty (0 bytes)"),
    "blanks": (lambda good: b"\n  \n", "is empty (4 bytes)"),
    "torn": (lambda good: good[: len(good) // 2], "is not valid JSON ("),
    "not json": (lambda good: b"format = 1\n", "is not valid JSON (Expecting value: line 1 column 1"),
    "not utf-8": (lambda good: b"\xff\xfe{}", "is not UTF-8 text (byte 0 of 4)"),
    "a list": (lambda good: b"[]", "holds a JSON list, not a record"),
    "other format": (lambda good: json.dumps(dict(json.loads(good), format=2)).encode(), "has format 2; this code reads format 1"),
    "no resources": (lambda good: b'{"format": 1}', "has no resources object (resources=None)"),
    "unknown resource": (lambda good: json.dumps(dict(json.loads(good), resources={"iptables": []})).encode(),
                         "lists resources.iptables, which is none of linux_bridge"),
    "item not an object": (lambda good: json.dumps(dict(json.loads(good), resources={"linux_bridge": ["br1"]})).encode(),
                           "has a resources.linux_bridge[0] that is not an object"),
}


@pytest.fixture
def damaged_record(underlay, vm, tmp_path):
    """A record written by the module (with its restore.py), and a function that damages it."""
    path = str(tmp_path / "state")
    assert run_module(MODULE, dict(lists(underlay.name, vm), path=path))["changed"] is True
    record = os.path.join(path, "state.json")
    good = open(record, "rb").read()

    def damage(case: str) -> tuple[bytes, str]:
        spoil, reason = DAMAGED[case]
        data = spoil(good)
        with open(record, "wb") as handle:
            handle.write(data)
        return data, reason

    return path, record, damage


def test_a_damaged_record_restores_nothing_and_the_restore_fails(underlay, damaged_record):
    path, record, damage = damaged_record
    for case in DAMAGED:
        _data, reason = damage(case)
        result = restore(path)
        assert result.returncode == 2, (case, result)
        assert result.stderr.startswith("overlay-vxlan-restore: %s %s" % (record, reason)), (case, result.stderr)
        assert "nothing restored" in result.stderr and "Traceback" not in result.stderr, (case, result.stderr)
        assert links(underlay.name) == {"lo", "eth0", "eth0-peer"}, case


def test_a_record_with_one_bad_item_restores_nothing_not_half(underlay, damaged_record):
    """The bridge item is fine, the vxlan device's lacks its VNI: checked whole first, so not
    even the bridge is built."""
    path, record, _damage = damaged_record
    document = _recorded_options(path)
    vni = document["resources"]["vxlan_link"][0].pop("vni")
    open(record, "w").write(json.dumps(document))
    result = restore(path)
    assert result.returncode == 2, result
    assert "%s has a resources.vxlan_link[0] without vni; nothing restored" % record in result.stderr, result.stderr
    assert links(underlay.name) == {"lo", "eth0", "eth0-peer"}
    document["resources"]["vxlan_link"][0]["vni"] = vni
    document["resources"]["ip_neigh"][0]["colour"] = "blue"  # an option no module has
    open(record, "w").write(json.dumps(document))
    result = restore(path)
    assert result.returncode == 2 and "has a resources.ip_neigh[0] with unknown colour" in result.stderr, result.stderr
    assert links(underlay.name) == {"lo", "eth0", "eth0-peer"}


def test_a_damaged_record_stops_the_converge_and_nothing_is_pruned(underlay, vm, damaged_record):
    """Pruning goes by the record: taken for "nothing recorded", a damaged one would let the VM
    that left the inventory stay on the host for good. The run fails instead, naming the file;
    prune=false replaces it (and says so); state=absent removes nothing."""
    path, record, damage = damaged_record
    assert restore(path).returncode == 0 and vm in netns.listnetns()
    smaller = dict(lists(underlay.name, vm, with_vm=False), path=path)
    for case in ("torn", "empty", "a list"):
        data, reason = damage(case)
        for check in (True, False):
            result = run_module(MODULE, smaller, check=check)
            assert result.get("failed") is True and result["changed"] is False, (case, result)
            assert result["msg"].startswith("%s %s" % (record, reason)), (case, result["msg"])
            assert "nothing changed: pruning goes by it" in result["msg"] and "prune=false" in result["msg"], result["msg"]
            assert "Traceback" not in result["_stderr"]
            assert open(record, "rb").read() == data, "the damaged record was touched"
            assert vm in netns.listnetns() and "tap1" in links(underlay.name)
    gone = run_module(MODULE, {"path": path, "state": "absent"})
    assert gone.get("failed") is True and "nothing removed: it lists what to remove" in gone["msg"], gone
    assert os.path.exists(record) and {"br1", "tap1", "vxlan0"} <= links(underlay.name)

    replaced = run_module(MODULE, dict(smaller, prune=False))
    assert replaced["changed"] is True and not replaced.get("failed"), replaced
    assert "%s holds a JSON list, not a record (an object with format and resources); replaced (prune=false)" % record \
        in warning_texts(replaced), replaced.get("warnings")
    assert _recorded_options(path)["resources"]["netns_veth"] == [] and vm in netns.listnetns()
    assert oct(os.stat(record).st_mode & 0o777) == "0o600"
