"""Machine labs on the real kernel: booted Debian containers in the lab hosts' network
namespaces, reached over SSH; reboot, idempotence, repair, destroy.

One lab (inventories/machines with a random lab name) for the whole module, built by the first
test's fixture and destroyed by the last test (and again, checked, by the fixture). The tests
run in file order and share it. Needs root, systemd-nspawn, debootstrap, and the root image
cached in /var/cache/overlay-vxlan or buildable (network; a cold build takes about 2 minutes).
Nothing is skipped: a missing tool is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

for _name in ("lab_fixtures", "machine_fixtures"):
    if _name not in sys.modules:
        pytest.register_assert_rewrite(_name)

from lab_fixtures import (  # noqa: E402
    ANSIBLE_PLAYBOOK,
    LAB_PLAYBOOK,
    ROOT,
    recap,
    root_netns_snapshot,
    underlay_mac,
    unique_lab_name,
)
from machine_fixtures import MACHINE_INVENTORY, MachineLab, machine_inventory_hosts, running_machine_lab  # noqa: E402

TIMES: dict[str, float] = {}


def test_prerequisites():
    assert os.geteuid() == 0, "machine labs need root"
    for tool in ("systemd-nspawn", "debootstrap", "nsenter", "ssh", "ssh-keygen"):
        assert shutil.which(tool), "%s is missing (scripts/setup.sh installs it)" % tool


@pytest.fixture(scope="module")
def before():
    return root_netns_snapshot()


@pytest.fixture(scope="module")
def machines(before):
    started = time.monotonic()
    with running_machine_lab() as lab:
        TIMES["build"] = time.monotonic() - started
        yield lab


def _links(lab: MachineLab, host: str) -> dict[str, dict]:
    """The links of the host's network namespace, read through the lab's pin (not the machine)."""
    out = subprocess.run(["nsenter", "--net=%s" % lab.pins(host)["net"], "ip", "-j", "addr"],
                         capture_output=True, text=True, check=True).stdout
    return {link["ifname"]: link for link in json.loads(out)}


def _boot_id(lab: MachineLab, host: str) -> str:
    return lab.ssh(host, "cat /proc/sys/kernel/random/boot_id").stdout.strip()


def test_build_boots_every_host(machines, before):
    assert recap(machines.build.stdout)["localhost"]["failed"] == 0
    assert set(machines.hosts) == {"h1", "h2", "h3", "ctl"}
    assert set(machines.supervisors()) == set(machines.hosts)
    for host, ip in machines.hosts.items():
        assert machines.machine_pid(host), "no container PID 1 for %s" % host
        eth0 = _links(machines, host)["eth0"]
        assert [(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a["family"] == "inet"] == [(ip, 24)]
        assert eth0["address"] == underlay_mac(ip)
    assert root_netns_snapshot() == before
    print("lab.yml (build, image cached or not): %.1f s" % TIMES["build"])


def test_ansible_reaches_every_machine_over_ssh_with_its_own_python(machines):
    proc = machines.ansible("all", "ansible.builtin.ping", "", "-vvv")
    for host in machines.hosts:
        assert "%s | SUCCESS" % host in proc.stdout, proc.stdout
    assert "SSH: EXEC ssh" in proc.stdout and "ProxyCommand" in proc.stdout
    proc = machines.ansible("all", "ansible.builtin.setup", "gather_subset=!all,!min,python filter=ansible_python")
    executables = [line.split(":", 1)[1].strip() for line in proc.stdout.splitlines() if line.strip().startswith("executable:")]
    assert executables == ["/usr/bin/python3"] * len(machines.hosts), proc.stdout
    assert sorted(line.split(" | ")[0] for line in proc.stdout.splitlines() if " | SUCCESS" in line) == sorted(machines.hosts)


PROBE = """
echo "hostname=$(hostname)"
echo "etcd=$(test -x /usr/bin/etcd && echo present) $(systemctl is-enabled etcd.service) $(systemctl is-active etcd.service)"
echo "pyroute2=$(python3 -c 'import pyroute2' 2>/dev/null && echo yes || echo no)"
echo "hostkeys=$(cd /etc/ssh && echo ssh_host_*)"
echo "fingerprint=$(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2)"
"""


def test_systemd_is_pid1_and_the_system_is_up(machines):
    prints = set()
    for host in machines.hosts:
        assert machines.nsenter(host, "cat", "/proc/1/comm").stdout.strip() == "systemd"
        state = machines.nsenter(host, "timeout", "30", "systemctl", "is-system-running", "--wait", check=False).stdout.strip()
        failed = machines.nsenter(host, "systemctl", "--failed", "--no-legend", check=False).stdout
        assert state in ("running", "degraded"), "%s is %s; failed units:\n%s" % (host, state, failed)
        facts = dict(line.split("=", 1) for line in machines.ssh(host, PROBE).stdout.splitlines())
        assert facts["hostname"] == host
        # etcd is there for DOVE's controller, and nothing starts it
        assert facts["etcd"] == "present disabled inactive"
        # pyroute2 is not in the image: the collection's roles install it
        assert facts["pyroute2"] == "no"
        # one ed25519 host key, unique to the machine
        assert facts["hostkeys"] == "ssh_host_ed25519_key ssh_host_ed25519_key.pub"
        prints.add(facts["fingerprint"])
    assert len(prints) == len(machines.hosts)
    # the underlay works between machines
    machines.ssh("h1", "ping -n -c 2 -i 0.2 -W 2 %s" % machines.hosts["h3"])


def test_reboot_returns_with_the_network_of_a_freshly_powered_machine(machines, before):
    baseline = set(_links(machines, "h2"))
    assert baseline >= {"lo", "eth0"}
    machines.ssh("h2", "ip link add testbr0 type bridge && ip link add tv0 type veth peer name tv1 && "
                       "ip link set tv0 master testbr0 && ip addr add 10.9.9.9/24 dev eth0 && "
                       "ip netns add ns9 && sysctl -qw net.ipv4.ip_forward=1")
    assert {"testbr0", "tv0", "tv1"} <= set(_links(machines, "h2"))
    boot, other = _boot_id(machines, "h2"), _boot_id(machines, "h1")
    supervisor = machines.supervisors()["h2"]

    started = time.monotonic()
    machines.ansible("h2", "ansible.builtin.reboot", "reboot_timeout=120")
    TIMES["reboot"] = time.monotonic() - started
    print("ansible.builtin.reboot of h2: %.1f s" % TIMES["reboot"])

    assert _boot_id(machines, "h2") != boot
    assert _boot_id(machines, "h1") == other  # only h2 rebooted
    assert machines.supervisors()["h2"] == supervisor  # the same supervisor restarted it
    links = _links(machines, "h2")
    assert set(links) == baseline, links.keys()
    eth0 = links["eth0"]
    assert [(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a["family"] == "inet"] == [(machines.hosts["h2"], 24)]
    assert eth0["address"] == underlay_mac(machines.hosts["h2"]) and "UP" in eth0["flags"]
    assert machines.ssh("h2", "sysctl -n net.ipv4.ip_forward").stdout.strip() == "0"
    assert machines.ssh("h2", "ip netns list").stdout == ""
    machines.ssh("h2", "ping -n -c 2 -i 0.2 -W 2 %s" % machines.hosts["h1"])
    assert root_netns_snapshot() == before


def test_second_run_changes_nothing_and_keeps_machines_running(machines):
    pids = {host: machines.machine_pid(host) for host in machines.hosts}
    supervisors = machines.supervisors()
    proc = machines.create()
    assert recap(proc.stdout)["localhost"]["changed"] == 0, proc.stdout
    assert {host: machines.machine_pid(host) for host in machines.hosts} == pids
    assert machines.supervisors() == supervisors


def test_a_dead_machine_is_started_again(machines):
    os.kill(machines.machine_pid("h3"), signal.SIGKILL)
    deadline = time.monotonic() + 20
    while "h3" in machines.supervisors() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "h3" not in machines.supervisors(), "the supervisor should give up on a killed machine"
    # check mode sees it, and starts nothing
    assert recap(machines.playbook(LAB_PLAYBOOK, "--check").stdout)["localhost"]["changed"] > 0
    assert "h3" not in machines.supervisors()
    proc = machines.create()
    assert recap(proc.stdout)["localhost"]["changed"] > 0
    assert "h3" in machines.supervisors()
    assert "SUCCESS" in machines.ansible("h3", "ansible.builtin.ping").stdout
    assert recap(machines.create().stdout)["localhost"]["changed"] == 0


def test_destroy_leaves_nothing_even_after_a_crashed_supervisor(machines, before):
    # A supervisor killed hard (a crash): its machine runs on, and destroy must still find it.
    os.kill(machines.supervisors()["h1"], signal.SIGKILL)
    assert machines.machine_pid("h1")
    started = time.monotonic()
    proc = machines.destroy()
    TIMES["destroy"] = time.monotonic() - started
    print("lab_destroy.yml: %.1f s" % TIMES["destroy"])
    assert recap(proc.stdout)["localhost"]["changed"] > 0
    assert {k: v for k, v in machines.leftovers().items() if v} == {}
    assert recap(machines.destroy().stdout)["localhost"]["changed"] == 0
    assert root_netns_snapshot() == before
    # the cached image stays
    assert any(p.name.startswith("debian-") for p in Path("/var/cache/overlay-vxlan").iterdir())



def test_destroy_after_a_build_killed_half_way(before):
    """SIGKILL the whole lab.yml run as soon as its first machine starts: destroy still finds
    and removes every container, supervisor, cgroup, pin and file (by convention)."""
    lab = MachineLab(unique_lab_name(), MACHINE_INVENTORY, machine_inventory_hosts())
    try:
        build = subprocess.Popen([ANSIBLE_PLAYBOOK, "-i", str(MACHINE_INVENTORY), str(LAB_PLAYBOOK), "-e", "lab_name=" + lab.name],
                                 cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while not lab.supervisors() and build.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(build.pid, signal.SIGKILL)
        build.wait()
        assert lab.supervisors(), "the build was killed before any machine started"
    finally:
        proc = lab.destroy(check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert {k: v for k, v in lab.leftovers().items() if v} == {}
    assert root_netns_snapshot() == before
