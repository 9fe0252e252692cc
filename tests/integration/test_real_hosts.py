"""The collection on real machines: booted Debian 12 hosts (systemd as PID 1, sshd, their own
/usr/bin/python3, no pyroute2, no internet), reached over SSH, as a network engineer meets them.

One machine lab (inventories/machines, random lab name) for the whole file; the tests run in
file order and build on each other: check mode on fresh hosts, static converge, idempotence,
a reboot that brings the overlay back without Ansible (the VTEP allow-list first), the
allow-list back after nftables.service restarts and reloads (its ruleset begins with `flush
ruleset`), a reboot without python3-nftables that brings no vxlan device up (fail closed), DOVE
with the agent and etcd under
systemd, EVPN with FRR under systemd (frr.service on the VTEPs and the route reflector ctl, a
reboot, the switch back to static leaving nothing of FRR), teardown. The machine's own network
namespace is compared before and after.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import time

import pytest

for _name in ("lab_fixtures", "machine_fixtures"):
    if _name not in sys.modules:
        pytest.register_assert_rewrite(_name)

from lab_fixtures import ROOT, recap, root_netns_snapshot  # noqa: E402
from machine_fixtures import running_machine_lab  # noqa: E402

SITE = ROOT / "site.yml"
DOVE = ROOT / "playbooks" / "dove.yml"
EVPN = ROOT / "playbooks" / "evpn.yml"
TEARDOWN = ROOT / "playbooks" / "teardown.yml"
OVERLAY = ("h1", "h2", "h3")
VMS = {"h1": "100.0.0.2", "h2": "100.0.0.3", "h3": "100.0.0.4"}
VTEPS = {"h1": "192.168.1.2", "h2": "192.168.1.3", "h3": "192.168.1.4"}
REFLECTOR = ("ctl", "192.168.1.10")
FLOOD = "00:00:00:00:00:00"
# FRR's files in /etc/frr that the package ships (conffiles) and the evpn role writes over.
FRR_FILES = ("daemons", "vtysh.conf", "frr.conf")
# Debian's python3-pyroute2 (0.7.2, too old for the collection) where the package puts it: h2 gets
# this stand-in (the hosts have no internet to install the package), the other hosts stay without.
DEBIAN_PYROUTE2 = "/usr/lib/python3/dist-packages/pyroute2"
DEBIAN_PYROUTE2_STANDIN = "__version__ = '0.7.2'  # stands in for Debian 12's python3-pyroute2\n"
# What older versions of the pyroute2 role left: every program on the host got the collection's pyroute2.
OLD_PTH = "/usr/local/lib/python3.11/dist-packages/overlay-vxlan.pth"
PYROUTE2_SEEN = "/usr/bin/python3 -c 'import pyroute2; print(pyroute2.__version__, pyroute2.__file__)' 2>&1; true"
# What the boot restore (and the modules) import: the code overlay_state wrote beside the record.
PYROUTE2_OURS = ("/usr/bin/python3 -c 'import sys; sys.path.insert(0, \"/var/lib/overlay-vxlan/lib\"); "
                 "from ansible_collections.overlay.vxlan.plugins.module_utils import _netlink as n; "
                 "print(n.pyroute2.__version__, n.pyroute2.__file__)'")
# Everything the collection may leave on a host, and that teardown must remove.
OURS = ("/var/lib/overlay-vxlan", "/usr/local/lib/overlay-vxlan", "/run/overlay-vxlan", "/etc/overlay-vxlan",
        "/etc/systemd/system/overlay-vxlan.service", "/etc/systemd/system/overlay-vxlan-agent.service",
        "/etc/systemd/system/overlay-vxlan-allowlist.service",
        "/etc/systemd/system/nftables.service.wants/overlay-vxlan-allowlist.service",
        "/etc/systemd/system/sysinit.target.wants/overlay-vxlan-allowlist.service",
        "/etc/systemd/system/frr.service.d/overlay-vxlan-allowlist.conf",
        "/etc/systemd/system/frr.service.d",
        OLD_PTH)
PROBE = ROOT / "tests" / "vxlan_probe.py"


@pytest.fixture(scope="module")
def machines():
    before = root_netns_snapshot()
    with running_machine_lab() as lab:
        yield lab
    assert root_netns_snapshot() == before, "the machine's own network namespace changed"


def changed(proc) -> dict[str, int]:
    return {host: counts["changed"] for host, counts in recap(proc.stdout).items()}


def nothing_changed(proc) -> bool:
    """Every overlay host ran and no host changed (site.yml also visits the route reflectors,
    group controller: ctl)."""
    counts = changed(proc)
    return set(OVERLAY) <= set(counts) and not any(counts.values())


def links(lab, host: str) -> set[str]:
    return {item["ifname"] for item in json.loads(lab.ssh(host, "ip -j link show").stdout)}


def present(lab, host: str) -> list[str]:
    return lab.ssh(host, "ls -d %s 2>/dev/null; true" % " ".join(OURS)).stdout.split()


def assert_vms_reach_each_other(lab, hosts=OVERLAY) -> None:
    for host in hosts:
        for peer, address in VMS.items():
            if peer != host:
                proc = lab.ssh(host, "ip netns exec ns1 ping -n -q -c 3 -i 0.2 -W 2 %s" % address, check=False)
                assert proc.returncode == 0, "%s's VM cannot reach %s (%s's VM)\n%s" % (host, address, peer, proc.stdout)


def test_fresh_hosts_have_nothing_of_ours(machines):
    for host in OVERLAY:
        assert links(machines, host) == {"lo", "eth0"}
        assert present(machines, host) == []
        # Debian's own Python, and no pyroute2 on it: the collection has to bring it.
        probe = machines.ssh(host, "/usr/bin/python3 -c 'import pyroute2' 2>&1; echo rc=$?").stdout
        assert "rc=1" in probe and "No module named 'pyroute2'" in probe, probe
    machines.ssh("h2", "mkdir -p %s && printf %%s %s > %s/__init__.py" % (DEBIAN_PYROUTE2, shlex.quote(DEBIAN_PYROUTE2_STANDIN),
                                                                        DEBIAN_PYROUTE2))


def test_check_mode_on_fresh_hosts_shows_the_changes_and_changes_nothing(machines):
    proc = machines.playbook(SITE, "--check", "--diff")
    for host in OVERLAY:
        assert "+02:00:64:00:00:0" in proc.stdout and "vxlan0 fdb" in proc.stdout, proc.stdout[-3000:]
        assert links(machines, host) == {"lo", "eth0"}
        # Only the scratch copy of pyroute2 under /run (a tmpfs) that let the modules read the kernel.
        assert present(machines, host) == ["/run/overlay-vxlan"], present(machines, host)


def test_static_converges_over_ssh_and_a_second_run_changes_nothing(machines):
    machines.ssh("h3", "echo /usr/local/lib/overlay-vxlan/python > %s" % OLD_PTH)  # as an older version left it
    first = machines.playbook(SITE)
    assert all(changed(first)[host] > 0 for host in OVERLAY), first.stdout[-2000:]
    assert "h2 100.0.0.3 (blue)        ok         -          ok" in first.stdout, first.stdout[-3000:]
    for host in OVERLAY:
        assert {"br1", "tap1", "vxlan0"} <= links(machines, host)
        assert machines.ssh(host, "systemctl is-enabled overlay-vxlan").stdout.strip() == "enabled"
        unit = machines.ssh(host, "systemctl is-enabled overlay-vxlan-allowlist; systemctl is-active overlay-vxlan-allowlist")
        assert unit.stdout.split() == ["enabled", "active"], unit.stdout
        # The collection's pyroute2 is the collection's: the host's Python outside it imports the
        # distribution's (h2) or none, as before; no .pth file (h3's, of an older version, is gone).
        seen = machines.ssh(host, PYROUTE2_SEEN).stdout
        if host == "h2":
            assert seen == "0.7.2 %s/__init__.py\n" % DEBIAN_PYROUTE2, seen
        else:
            assert "No module named 'pyroute2'" in seen, (host, seen)
        assert machines.ssh(host, "grep -l overlay-vxlan /usr/local/lib/python3*/dist-packages/*.pth "
                                  "/usr/lib/python3/dist-packages/*.pth 2>/dev/null; true").stdout == "", host
        ours = machines.ssh(host, PYROUTE2_OURS).stdout
        assert ours.startswith("0.9.") and ours.split()[1] == "/usr/local/lib/overlay-vxlan/python/pyroute2/__init__.py", ours
    second = machines.playbook(SITE)
    assert nothing_changed(second), second.stdout[-3000:]


def nft_set(lab, host: str, name: str) -> list:
    """The elements of a set of the host's table inet overlay_vxlan."""
    items = json.loads(lab.ssh(host, "nft -j list set inet overlay_vxlan %s" % name).stdout)["nftables"]
    return next(item["set"] for item in items if "set" in item).get("elem", [])


RR_LEFTOVERS = "ls -d /var/lib/overlay-vxlan /usr/local/lib/overlay-vxlan /etc/systemd/system/overlay-vxlan*.service 2>/dev/null; true"


def tables(lab, host: str) -> list[str]:
    return lab.ssh(host, "nft list tables").stdout.splitlines()


def foreign_probe(lab) -> tuple[list[str], int]:
    """ctl (not in the overlay) sends h1 3 VXLAN datagrams (VNI 100, an inner UDP datagram to
    h1's VM): what the VM received, and h1's `foreign` drop counter afterwards (-1: no table)."""
    lab.ssh("h1", "rm -f /root/got; setsid nohup ip netns exec ns1 python3 /root/vxlan_probe.py listen --timeout 3 "
                  ">/root/got 2>&1 </dev/null &")
    lab.ssh("h1", "for i in $(seq 50); do grep -q listening /root/got && exit 0; sleep 0.1; done; exit 1")
    lab.ssh("ctl", "python3 /root/vxlan_probe.py send --vtep %s --vni 100 --dst-mac %s --dst-ip %s --marker foreign"
                   % (VTEPS["h1"], vm_mac(VMS["h1"]), VMS["h1"]))
    got = lab.ssh("h1", "while pgrep -f '[v]xlan_probe.py listen' >/dev/null; do sleep 0.1; done; cat /root/got").stdout
    listed = lab.ssh("h1", "nft -j list counters table inet overlay_vxlan", check=False)
    counters = {c["counter"]["name"]: c["counter"]["packets"] for c in json.loads(listed.stdout or '{"nftables": []}')["nftables"]
                if "counter" in c}
    return sorted(set(got.split()) - {"listening"}), counters.get("foreign", -1)


def test_nftables_service_restart_and_reload_bring_the_allowlist_back(machines):
    machines.ansible("h1:ctl", "ansible.builtin.copy", "src=%s dest=/root/vxlan_probe.py mode=0644" % PROBE)
    was_active = machines.ssh("h1", "systemctl is-active nftables", check=False).stdout.strip() == "active"
    try:
        # Without the table the probe reaches the VM: the checks below can fail.
        machines.ssh("h1", "nft delete table inet overlay_vxlan")
        assert foreign_probe(machines) == (["foreign"], -1)
        # Debian's /etc/nftables.conf: `flush ruleset`, then its own table inet filter.
        for action in ("restart", "reload"):
            machines.ssh("h1", "systemctl %s nftables" % action)
            assert {"table inet filter", "table inet overlay_vxlan"} <= set(tables(machines, "h1")), action
            assert foreign_probe(machines) == ([], 3), action  # a new table: its counter counts from 0
        journal = machines.ssh("h1", "journalctl -u overlay-vxlan-allowlist --no-pager -o cat").stdout
        assert journal.count("restored vtep_allowlist inet overlay_vxlan") >= 2, journal
        assert_vms_reach_each_other(machines, hosts=("h1",))
    finally:
        if not was_active:  # stopping it flushes the ruleset (and stops the unit): put the table back
            machines.ssh("h1", "systemctl stop nftables; systemctl start overlay-vxlan-allowlist")
        machines.ssh("h1", "rm -f /root/vxlan_probe.py /root/got")
        machines.ssh("ctl", "rm -f /root/vxlan_probe.py")
    assert "table inet overlay_vxlan" in tables(machines, "h1")


def allowlist_applied_this_boot(machines, host: str) -> bool:
    journal = machines.ssh(host, "journalctl -b -u overlay-vxlan-allowlist --no-pager -o cat").stdout
    return "restored vtep_allowlist inet overlay_vxlan" in journal


def started_after(machines, host: str, unit: str, before: str) -> bool:
    """`unit` began to start (this boot) only once `before` was active."""
    def stamp(name: str, prop: str) -> int:
        return int(machines.ssh(host, "systemctl show -P %s %s" % (prop, name)).stdout.strip() or 0)
    active = stamp(before, "ActiveEnterTimestampMonotonic")
    return 0 < active <= stamp(unit, "InactiveExitTimestampMonotonic")


def reboot_and_read_the_restore(machines, host: str) -> str:
    """Reboot a machine (its boot id changes) and return what the boot restore logged."""
    old_boot = machines.ssh(host, "cat /proc/sys/kernel/random/boot_id").stdout
    machines.ansible(host, "ansible.builtin.reboot")
    assert machines.ssh(host, "cat /proc/sys/kernel/random/boot_id").stdout != old_boot
    return machines.ssh(host, "journalctl -b -u overlay-vxlan --no-pager -o cat").stdout


def test_a_rebooted_host_has_its_overlay_back_before_any_converge(machines):
    # h2 has Debian's older pyroute2 (its stand-in): the restore takes the collection's own.
    journal = reboot_and_read_the_restore(machines, "h2")
    # bridge, VM pair, vxlan0, its fdb and neighbour tables, the allow-list; br1's own neighbour
    # table (exact, empty outside evpn) is as wanted on a fresh bridge.
    # The VTEP allow-list is part of the record, and applied first, early at boot by its own unit
    # (before network-pre.target): the restore finds it in place, filtering is back before any
    # vxlan device, and before any converge.
    assert "7 item(s), 5 restored, 2 already as wanted, 0 failed" in journal, journal
    restored = [line.split(": restored ", 1)[1] for line in journal.splitlines() if ": restored " in line]
    assert "vtep_allowlist inet overlay_vxlan" not in restored and "vxlan_link vxlan0" in restored, journal
    assert allowlist_applied_this_boot(machines, "h2")
    assert started_after(machines, "h2", "overlay-vxlan", "overlay-vxlan-allowlist")
    assert "table inet overlay_vxlan" in tables(machines, "h2")
    assert machines.ssh("h2", "systemctl is-active overlay-vxlan-allowlist").stdout.strip() == "active"
    assert_vms_reach_each_other(machines)  # no Ansible has run on h2 since it booted
    after = machines.playbook(SITE)
    assert nothing_changed(after), after.stdout[-3000:]


def test_a_host_that_cannot_apply_the_allowlist_at_boot_brings_no_vxlan_device_up(machines):
    binding = "/usr/lib/python3/dist-packages/nftables"
    machines.ssh("h2", "mv %s /root/nftables.hidden" % binding)  # python3-nftables "missing"
    try:
        journal = reboot_and_read_the_restore(machines, "h2")
        assert "vxlan0" not in links(machines, "h2") and {"br1", "tap1"} <= links(machines, "h2"), journal
        assert "table inet overlay_vxlan" not in tables(machines, "h2")
        assert ("FAILED vtep_allowlist inet overlay_vxlan: the nftables Python binding is missing on this host: install "
                "python3-nftables (apt install nftables python3-nftables); no VXLAN device is brought up until it is in "
                "place (fail closed)") in journal, journal
        assert "FAILED vxlan_link vxlan0: not applied, the VTEP allow-list is not in place" in journal, journal
        assert machines.ssh("h2", "systemctl is-failed overlay-vxlan", check=False).stdout.strip() == "failed"
    finally:
        machines.ssh("h2", "if [ -e /root/nftables.hidden ]; then mv /root/nftables.hidden %s; fi" % binding)
    machines.ssh("h2", "systemctl restart overlay-vxlan overlay-vxlan-allowlist")
    assert "vxlan0" in links(machines, "h2") and "table inet overlay_vxlan" in tables(machines, "h2")
    assert_vms_reach_each_other(machines)


@pytest.mark.parametrize("mode", ["flood", "multicast"])
def test_the_other_modes_converge_over_ssh(machines, mode):
    proc = machines.playbook(SITE, "-e", "vxlan_mode=%s" % mode)
    assert "h1 100.0.0.2 (blue)        -          ok         ok" in proc.stdout, proc.stdout[-3000:]
    learning = json.loads(machines.ssh("h1", "ip -j -d link show vxlan0").stdout)[0]["linkinfo"]["info_data"]["learning"]
    assert learning is True
    assert_vms_reach_each_other(machines)


def test_dove_under_systemd_and_an_agent_killed_comes_back(machines):
    machines.playbook(DOVE)
    for host in OVERLAY:
        assert machines.ssh(host, "systemctl is-active overlay-vxlan-agent").stdout.strip() == "active"
        # etcd authentication is on by default: each agent logged in as its host's etcd user
        # (the hardened unit can read the password file, 0600 root, as it reads its key)
        journal = machines.ssh(host, "journalctl -u overlay-vxlan-agent -o cat --no-pager").stdout
        assert "authenticated as %s" % host in journal, journal[-2000:]
    assert machines.ssh("ctl", "systemctl is-active etcd").stdout.strip() == "active"
    assert_vms_reach_each_other(machines)
    # The hardened unit (docs/security.md, "The DOVE agent") does the job: every answered miss
    # installed (no kernel error), each announced (AF_PACKET with CAP_NET_RAW), every genuine
    # record believed; and the process holds no capability beyond the two it uses.
    for host in OVERLAY:
        metrics = json.loads(machines.ssh(host, "cat /run/overlay-vxlan-agent/metrics.json").stdout)
        counters = metrics["counters"]
        assert counters["misses_answered"] > 0 and counters["announcements_sent"] > 0, counters
        assert counters["kernel_errors"] == 0 and counters["records_untrusted"] == 0 and counters["records_rejected"] == 0, counters
        caps = machines.ssh(host, "grep CapBnd /proc/$(systemctl show -p MainPID --value overlay-vxlan-agent)/status").stdout.split()[-1]
        assert int(caps, 16) == (1 << 12) | (1 << 13), caps  # CAP_NET_ADMIN, CAP_NET_RAW
    print(machines.ssh("h1", "systemd-analyze security overlay-vxlan-agent | tail -1").stdout)
    again = machines.playbook(DOVE)
    assert all(count == 0 for count in changed(again).values()), again.stdout[-3000:]

    pid = machines.ssh("h3", "systemctl show -p MainPID --value overlay-vxlan-agent").stdout.strip()
    machines.ssh("h3", "kill -KILL %s" % pid)
    back = machines.ssh("h3", "for i in $(seq 50); do p=$(systemctl show -p MainPID --value overlay-vxlan-agent); "
                              "[ \"$p\" != 0 ] && [ \"$p\" != %s ] && systemctl is-active -q overlay-vxlan-agent && "
                              "echo back $p && exit 0; sleep 0.2; done; exit 1" % pid, check=False)
    assert back.returncode == 0, back.stdout
    machines.ssh("h3", "ip neigh flush dev vxlan0 nud permanent; bridge fdb show dev vxlan0 >/dev/null")
    assert_vms_reach_each_other(machines, hosts=("h3",))


def vm_mac(address: str) -> str:
    return "02:00:" + ":".join("%02x" % int(octet) for octet in address.split("."))


def remote_vms(host: str) -> dict[str, str]:
    """MAC -> VTEP of every VM not on `host`."""
    return {vm_mac(VMS[peer]): VTEPS[peer] for peer in OVERLAY if peer != host}


def vxlan_fdb(lab, host: str) -> dict[str, object]:
    """vxlan0's own (`self`, with a dst) entries, read on the host: zebra's extern_learn MACs,
    the flood list and any other (static) entry."""
    entries = [e for e in json.loads(lab.ssh(host, "bridge -j fdb show dev vxlan0").stdout) if "dst" in e]
    return {
        "extern_learn": {e["mac"]: e["dst"] for e in entries if "extern_learn" in e.get("flags", [])},
        "flood": sorted(e["dst"] for e in entries if e["mac"] == FLOOD),
        "other": sorted("%s dst %s" % (e["mac"], e["dst"]) for e in entries
                        if e["mac"] != FLOOD and "extern_learn" not in e.get("flags", [])),
        "neigh": json.loads(lab.ssh(host, "ip -j neigh show dev vxlan0").stdout or "[]"),
    }


def evpn_tables_as_zebra_sets_them(host: str) -> dict[str, object]:
    return {"extern_learn": remote_vms(host), "flood": sorted(v for h, v in VTEPS.items() if h != host),
            "other": [], "neigh": []}


def wait_for_evpn_tables(lab, hosts=OVERLAY, timeout: float = 40) -> dict[str, dict]:
    """Each host's vxlan0 table once zebra has installed every remote VM and VTEP (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        tables = {host: vxlan_fdb(lab, host) for host in hosts}
        if all(tables[h] == evpn_tables_as_zebra_sets_them(h) for h in hosts) or time.monotonic() > deadline:
            return tables
        time.sleep(1)


def frr_state(lab, host: str) -> dict[str, object]:
    """frr.service and FRR's processes and files on a host, as the host reports them."""
    unit = lab.ssh(host, "systemctl is-active frr; systemctl is-enabled frr", check=False).stdout.split()
    daemons = lab.ssh(host, "pgrep -x 'watchfrr|zebra|bgpd|staticd' -l; true").stdout.split("\n")
    # The package's own checksums of its conffiles: which /etc/frr files differ from them (or are missing).
    conffiles = lab.ssh(host, "dpkg-query -W -f='${Conffiles}\\n' frr").stdout.split("\n")
    modified = []
    for line in conffiles:
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ["/etc/frr/" + f for f in FRR_FILES]:
            ok = lab.ssh(host, "echo '%s  %s' | md5sum --quiet -c 2>/dev/null" % (parts[1], parts[0]), check=False)
            if ok.returncode != 0:
                modified.append(parts[0])
    return {
        "active": unit[0] if unit else "",
        "enabled": unit[1] if len(unit) > 1 else "",
        "daemons": sorted(line.split()[1] for line in daemons if line.strip()),
        "modified": sorted(modified),
        "ours": lab.ssh(host, "grep -l -- '(overlay.vxlan evpn role)' /etc/frr/* 2>/dev/null; "
                              "ls -d /etc/frr/*.overlay-vxlan-orig 2>/dev/null; true").stdout.split(),
    }


def test_evpn_runs_frr_under_systemd_and_a_second_run_changes_nothing(machines):
    # From DOVE (the test before): the agents stop, the tables empty, then FRR starts.
    for host in (*OVERLAY, REFLECTOR[0]):
        assert frr_state(machines, host) == {"active": "inactive", "enabled": "disabled", "daemons": [],
                                             "modified": [], "ours": []}, host
    first = machines.playbook(EVPN)
    # The verify role's summary, once per VTEP: routes in bgpd's table, zebra's entries on vxlan0.
    # (the callback wraps long messages: compare with the whitespace collapsed)
    assert re.sub(r"\s+", " ", first.stdout).count("EVPN: 6 type-2 (3 with an IP) and 3 type-3 routes, 2 extern_learn "
                                                   "entries, 2 remote MAC+IP on the bridges") == len(OVERLAY), \
        first.stdout[-3000:]
    for host in (*OVERLAY, REFLECTOR[0]):
        state = frr_state(machines, host)
        assert (state["active"], state["enabled"]) == ("active", "enabled"), (host, state)
        assert {"watchfrr", "zebra", "bgpd"} <= set(state["daemons"]), (host, state)
        # systemd's own process tree: the daemons are frr.service's, not started beside it.
        cgroup = machines.ssh(host, "cat /proc/$(pgrep -x bgpd)/cgroup").stdout
        assert "/system.slice/frr.service" in cgroup, (host, cgroup)
        assert machines.ssh(host, "systemctl is-active overlay-vxlan-agent", check=False).stdout.strip() != "active"
    # The route reflector has an Established l2vpn evpn session with every VTEP.
    summary = json.loads(machines.ssh(REFLECTOR[0], "vtysh -c 'show bgp l2vpn evpn summary json'").stdout)
    assert {peer: s["state"] for peer, s in summary["peers"].items()} == dict.fromkeys(VTEPS.values(), "Established")
    # ... through its own allow-list (site.yml's route reflector play): TCP 179 from its clients
    # only, no VXLAN port, put back at boot by the restore unit and after nftables reloads.
    assert sorted(nft_set(machines, REFLECTOR[0], "bgp4")) == sorted(VTEPS.values())
    assert (nft_set(machines, REFLECTOR[0], "bgp_ports"), nft_set(machines, REFLECTOR[0], "ports")) == ([179], [])
    units = machines.ssh(REFLECTOR[0], "systemctl is-enabled overlay-vxlan overlay-vxlan-allowlist").stdout.split()
    assert units == ["enabled", "enabled"], units
    # Zebra's entries only: every remote VM extern_learn at its VTEP, the flood list, no static entry.
    tables = wait_for_evpn_tables(machines)
    assert tables == {host: evpn_tables_as_zebra_sets_them(host) for host in OVERLAY}
    port = json.loads(machines.ssh("h1", "bridge -j -d link show dev vxlan0").stdout)[0]
    assert (port["learning"], port["neigh_suppress"]) == (False, True), port
    assert_vms_reach_each_other(machines)
    again = machines.playbook(EVPN)
    assert nothing_changed(again) and changed(again)[REFLECTOR[0]] == 0, again.stdout[-3000:]


def test_a_rebooted_evpn_host_has_frr_and_its_overlay_back_before_any_converge(machines):
    # frr.service (enabled) starts at boot before the network; the restore makes br1, ns1 and
    # vxlan0 (no table: zebra's), and zebra picks vxlan0 up when it appears.
    journal = reboot_and_read_the_restore(machines, "h3")
    # bridge (with its address), VM pair, vxlan0, br1's permanent entry for the local VM; the
    # allow-list (TCP 179 too) was in place already, from its own unit, before FRR started.
    assert "5 item(s), 4 restored, 1 already as wanted, 0 failed" in journal, journal
    assert allowlist_applied_this_boot(machines, "h3")
    assert started_after(machines, "h3", "frr", "overlay-vxlan-allowlist")
    state = frr_state(machines, "h3")
    assert (state["active"], state["enabled"]) == ("active", "enabled") and {"zebra", "bgpd"} <= set(state["daemons"])
    tables = wait_for_evpn_tables(machines)
    assert tables == {host: evpn_tables_as_zebra_sets_them(host) for host in OVERLAY}
    assert_vms_reach_each_other(machines)  # no Ansible has run on h3 since it booted
    after = machines.playbook(EVPN)
    assert nothing_changed(after) and changed(after)[REFLECTOR[0]] == 0, after.stdout[-3000:]


def test_an_evpn_host_that_cannot_apply_the_allowlist_at_boot_starts_no_bgpd(machines):
    binding = "/usr/lib/python3/dist-packages/nftables"
    machines.ssh("h3", "mv %s /root/nftables.hidden" % binding)  # python3-nftables "missing"
    try:
        reboot_and_read_the_restore(machines, "h3")
        assert "table inet overlay_vxlan" not in tables(machines, "h3")
        # FRR did not start (fail closed): no bgpd listens unfiltered, and its journal says why.
        assert machines.ssh("h3", "systemctl is-active frr", check=False).stdout.strip() != "active"
        assert machines.ssh("h3", "pgrep -x bgpd", check=False).returncode != 0
        journal = machines.ssh("h3", "journalctl -b -u frr --no-pager -o cat").stdout
        assert "table inet overlay_vxlan (the BGP allow-list) is not in place: FRR is not started (fail closed)" in journal, journal
    finally:
        machines.ssh("h3", "if [ -e /root/nftables.hidden ]; then mv /root/nftables.hidden %s; fi" % binding)
    machines.ssh("h3", "systemctl restart overlay-vxlan-allowlist overlay-vxlan && systemctl start frr")
    tables_now = wait_for_evpn_tables(machines)
    assert tables_now == {host: evpn_tables_as_zebra_sets_them(host) for host in OVERLAY}
    assert_vms_reach_each_other(machines)


def test_leaving_evpn_for_static_leaves_nothing_of_frr(machines):
    machines.playbook(SITE)
    for host in (*OVERLAY, REFLECTOR[0]):
        # No FRR process, frr.service stopped and disabled, the package's own /etc/frr files back
        # (as the package shipped them), nothing of the role's left there.
        assert frr_state(machines, host) == {"active": "inactive", "enabled": "disabled", "daemons": [],
                                             "modified": [], "ours": []}, host
    for host in OVERLAY:
        fdb = vxlan_fdb(machines, host)
        # No extern_learn entry, no zebra flood list: static's full mesh and ARP proxy entries.
        assert fdb["extern_learn"] == {} and fdb["flood"] == [], (host, fdb)
        assert fdb["other"] == sorted("%s dst %s" % item for item in remote_vms(host).items()), (host, fdb)
        assert sorted(n["dst"] for n in fdb["neigh"]) == sorted(VMS[p] for p in OVERLAY if p != host), (host, fdb)
    port = json.loads(machines.ssh("h2", "bridge -j -d link show dev vxlan0").stdout)[0]
    assert (port["learning"], port["neigh_suppress"]) == (True, False), port
    # The route reflector's allow-list, its record, units and pyroute2 are gone with FRR.
    assert "table inet overlay_vxlan" not in tables(machines, REFLECTOR[0])
    assert machines.ssh(REFLECTOR[0], RR_LEFTOVERS).stdout.split() == []
    assert_vms_reach_each_other(machines)
    again = machines.playbook(SITE)
    assert nothing_changed(again) and changed(again)[REFLECTOR[0]] == 0, again.stdout[-3000:]


def test_teardown_leaves_nothing_and_a_second_one_changes_nothing(machines):
    machines.playbook(TEARDOWN)
    for host in OVERLAY:
        assert links(machines, host) == {"lo", "eth0"}
        assert present(machines, host) == [], present(machines, host)
        assert machines.ssh(host, "ls /run/netns 2>/dev/null; true").stdout.split() == []
        assert "table inet overlay_vxlan" not in tables(machines, host)
    # Debian's own pyroute2 is not the collection's to remove.
    assert machines.ssh("h2", PYROUTE2_SEEN).stdout == "0.7.2 %s/__init__.py\n" % DEBIAN_PYROUTE2
    assert machines.ssh("ctl", "systemctl is-active etcd", check=False).stdout.strip() == "inactive"
    again = machines.playbook(TEARDOWN)
    assert all(count == 0 for count in changed(again).values()), again.stdout[-3000:]
