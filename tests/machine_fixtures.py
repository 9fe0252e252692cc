"""A running machine lab (booted Debian containers reached over SSH) for tests of any scope.

    from machine_fixtures import running_machine_lab   # or the fixture `machine_lab` (module scope)

    @pytest.fixture(scope="module")
    def machines(tmp_path_factory):
        with running_machine_lab() as lab:      # h1 h2 h3 + ctl of inventories/machines
            yield lab                           # destroyed afterwards, even on failure

The lab uses inventories/machines with `-e lab_name=<random name>`, so it never touches the
default `ovm` lab or another test's lab. `MachineLab` adds to `lab_fixtures.Lab`: `ssh()`,
`machine_pid()`, `nsenter()`, `supervisors()`, `leftovers()`. The root image must be buildable
(network) or cached in /var/cache/overlay-vxlan (a cold build takes a few minutes).
"""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
from lab_fixtures import ROOT, Lab, inventory_hosts, unique_lab_name

MACHINE_INVENTORY = ROOT / "inventories" / "machines"
STATE_DIR = Path("/var/lib/overlay-vxlan-lab")
CGROUP_TREES = ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified")


class MachineLab(Lab):
    """A machine lab: `hosts` maps host name -> underlay address."""

    @property
    def state(self) -> Path:
        return STATE_DIR / self.name

    def cgroups(self, host: str | None = None) -> list[Path]:
        return [Path(tree, "overlay-lab", self.name, *([host] if host else [])) for tree in CGROUP_TREES]

    def exists(self) -> bool:
        return super().exists() or self.state.exists() or any(p.exists() for p in self.cgroups()) or bool(self.supervisors())

    def ssh(self, host: str, command: str, check: bool = True, timeout: int = 60) -> subprocess.CompletedProcess:
        """One command on a machine over SSH, the way the inventory connects."""
        relay = "nsenter --net=/run/overlay-lab/%s/fabric/net python3 %s/ssh_relay.py %%h %%p" % (self.name, self.state)
        argv = ["ssh", "-o", "ProxyCommand=" + relay, "-o", "UserKnownHostsFile=%s/known_hosts" % self.state,
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                "-o", "IdentitiesOnly=yes", "-o", "ControlMaster=no", "-o", "ControlPath=none",
                "-i", str(self.state / "id_ed25519"), "root@" + self.hosts[host], command]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError("ssh %s %r failed (rc=%d)\n%s\n%s" % (host, command, proc.returncode, proc.stdout, proc.stderr))
        return proc

    def machine_pid(self, host: str) -> int | None:
        """PID (in the machine's namespace) of the container's PID 1, found in its cgroup."""
        for top in self.cgroups(host)[:1]:
            for procs in top.rglob("cgroup.procs") if top.is_dir() else []:
                for pid in procs.read_text().split():
                    try:
                        status = Path("/proc/%s/status" % pid).read_text()
                    except OSError:
                        continue
                    nspid = [line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")]
                    if nspid and len(nspid[0]) > 1 and nspid[0][-1] == "1":
                        return int(pid)
        return None

    def nsenter(self, host: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        """A command inside the running machine (all of its namespaces), as `machinectl shell` would."""
        pid = self.machine_pid(host)
        assert pid, "machine %s of lab %s is not running" % (host, self.name)
        return subprocess.run(["nsenter", "-t", str(pid), "-a", *cmd], capture_output=True, text=True, check=check,
                              timeout=60)

    def supervisors(self) -> dict[str, int]:
        found = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    argv = Path("/proc/%s/cmdline" % entry.name).read_bytes().split(b"\0")
                except OSError:
                    continue
                argv = [a.decode(errors="replace") for a in argv]
                if len(argv) > 6 and argv[1].endswith("machine_lab.py") and argv[2:5] == ["supervise", "--lab", self.name]:
                    found[argv[6]] = int(entry.name)
        return found

    def leftovers(self) -> dict:
        """Everything of this lab still on the machine: processes, cgroups, mounts, directories."""
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                  if "/%s/" % self.name in line.split()[4] + "/" or self.name in line.split()[3]]
        mine = [str(self.state), "/run/overlay-lab/%s/" % self.name, "/run/overlay-lab/%s " % self.name]
        processes = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    argv = Path("/proc/%s/cmdline" % entry.name).read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if any(token in argv + " " for token in mine) or ("--lab %s " % self.name) in argv + " ":
                    processes[int(entry.name)] = argv
        machine = "%s-" % self.name
        return {
            "supervisors": self.supervisors(),
            "processes": processes,
            "cgroups": [str(p) for p in self.cgroups() if p.exists()],
            "mounts": mounts,
            "directories": [str(p) for p in (Path(self.path), self.state, Path("/run/overlay-vxlan-lab", self.name))
                            if p.exists()] + [str(p) for p in Path("/run/systemd/nspawn/propagate").glob(machine + "*")],
            "lab_namespace_processes": self.processes(),
        }


def machine_inventory_hosts() -> dict[str, str]:
    return inventory_hosts(MACHINE_INVENTORY)


@contextmanager
def running_machine_lab(name: str | None = None):
    """A created machine lab (inventories/machines, random lab name) that is destroyed
    afterwards, even if creation or the body fails; destroy leaving anything behind fails."""
    lab = MachineLab(name or unique_lab_name(), MACHINE_INVENTORY, machine_inventory_hosts())
    try:
        lab.build = lab.create()
        yield lab
    finally:
        proc = None
        if lab.exists() or any(lab.leftovers().values()):  # a test may have destroyed it already
            proc = lab.destroy(check=False)
        left = {k: v for k, v in lab.leftovers().items() if v}
        if (proc is not None and proc.returncode != 0) or left:
            raise AssertionError("machine lab %s not removed (rc=%s): %s\n%s" % (
                lab.name, proc and proc.returncode, left, proc.stdout[-3000:] if proc else ""))


@pytest.fixture(scope="module")
def machine_lab():
    """A running machine lab (h1 h2 h3 ctl) shared by a module's tests, destroyed at the end."""
    with running_machine_lab() as lab:
        yield lab
