"""Shared helpers and fixtures for tests that need a running simulated lab.

Import the fixtures from conftest (`from lab_fixtures import lab, lab_factory  # noqa: F401`).

- `root_netns_snapshot()`: the machine's own network namespace (links, addresses, IPv4 and IPv6
  routes) with volatile fields dropped; compare two snapshots to prove nothing leaked into it.
- `Lab`: one lab (name, inventory, hosts) with `create()`, `destroy()`, `enter()` (a command in
  a host via nsenter), `ping()`, `ansible()`/`playbook()` runs against its inventory.
- `running_lab(hosts, directory)`: a context manager that yields a created lab and always
  destroys it, usable from fixtures of any scope.
- fixtures `lab_factory` (make any number of labs in a test, all destroyed at the end) and `lab`
  (a running 3-host lab; `@pytest.mark.parametrize("lab", [8], indirect=True)` for 8 hosts).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / ".collections") not in sys.path:
    sys.path.insert(0, str(ROOT / ".collections"))

from ansible_collections.overlay.vxlan.plugins.module_utils import _lab  # noqa: E402

BIN = Path(sys.executable).parent
ANSIBLE_PLAYBOOK = str(BIN / "ansible-playbook")
ANSIBLE = str(BIN / "ansible")
LAB_PLAYBOOK = ROOT / "playbooks" / "lab.yml"
DESTROY_PLAYBOOK = ROOT / "playbooks" / "lab_destroy.yml"
DEFAULT_INVENTORY = ROOT / "inventories" / "lab"

_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
# Fields that change on their own (counters, address lifetimes, route expiry).
_VOLATILE = frozenset({"stats", "stats64", "valid_life_time", "preferred_life_time", "expires", "used", "updated"})


# --- the machine's own network namespace ---------------------------------------------------------

def _ip_json(*args: str):
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out) if out.strip() else []


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def root_netns_snapshot() -> dict:
    """`ip -j link`, `ip -j addr`, `ip -j route` and `ip -j -6 route` of the namespace this
    process is in (the machine's own), volatile fields removed."""
    return {
        "link": _strip(_ip_json("link", "show")),
        "addr": _strip(_ip_json("addr", "show")),
        "route": _strip(_ip_json("route", "show", "table", "all")),
        "route6": _strip(_ip_json("-6", "route", "show", "table", "all")),
    }


# --- running Ansible ----------------------------------------------------------------------------

def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host: {'localhost': {'ok': 4, 'changed': 1, ...}}."""
    return {m.group(1): {"ok": int(m.group(2)), "changed": int(m.group(3)), "unreachable": int(m.group(4)),
                         "failed": int(m.group(5))} for m in _RECAP.finditer(output)}


def _run(argv: list, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", PY_COLORS="0", ANSIBLE_NOCOLOR="1")
    return subprocess.run([str(a) for a in argv], cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout)


def unique_lab_name() -> str:
    """8 characters: OVERLAY_VXLAN_LAB_PREFIX (default "t"; engineers sharing a machine give
    their own) and random hex."""
    prefix = os.environ.get("OVERLAY_VXLAN_LAB_PREFIX", "t")[:4] or "t"
    return prefix + uuid.uuid4().hex[:8 - len(prefix)]


def underlay_ip(index: int) -> str:
    """h1 -> 192.168.1.2, h2 -> 192.168.1.3 ... like the source document (beyond h253: a /16)."""
    return str(ipaddress.IPv4Address("192.168.1.1") + index)


def _host_map(hosts: int | dict[str, str]) -> dict[str, str]:
    if isinstance(hosts, int):
        return {"h%d" % i: underlay_ip(i) for i in range(1, hosts + 1)}
    return dict(hosts)


def write_inventory(path: Path, lab_name: str, hosts: int | dict[str, str], prefix: int | None = None) -> Path:
    """An inventory with `hosts` (a count, named h1..hN, or {name: underlay_ip}) in group lab.

    prefix: the underlay prefix length; default 24, or 16 when the hosts do not fit a /24.
    """
    hosts = _host_map(hosts)
    if prefix is None:
        prefix = 24 if len(hosts) <= 253 else 16
    lines = ["---", "all:", "  children:", "    lab:", "      vars:",
             "        ansible_connection: overlay.vxlan.lab",
             '        ansible_python_interpreter: "{{ ansible_playbook_python }}"',
             "        lab_name: %s" % lab_name,
             "        lab_underlay_prefix: %d" % prefix,
             "      hosts:" if hosts else "      hosts: {}"]
    lines += ["        %s: {vxlan_underlay_ip: %s}" % (name, ip) for name, ip in hosts.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def inventory_hosts(inventory: Path, group: str = "lab") -> dict[str, str]:
    """{host: vxlan_underlay_ip} of a group of an existing inventory (ansible-inventory --list)."""
    proc = _run([str(BIN / "ansible-inventory"), "-i", inventory, "--list"])
    if proc.returncode != 0:
        raise AssertionError("ansible-inventory failed: %s" % proc.stderr)
    data = json.loads(proc.stdout)
    hostvars = data.get("_meta", {}).get("hostvars", {})

    def members(name):
        entry = data.get(name, {})
        found = list(entry.get("hosts", []))
        for child in entry.get("children", []):
            found += members(child)
        return found

    return {host: hostvars[host]["vxlan_underlay_ip"] for host in sorted(set(members(group)))}


def underlay_mac(ip: str) -> str:
    """The MAC the lab gives an IPv4 underlay address (02:fa + the address)."""
    return "02:fa:" + ":".join("%02x" % int(octet) for octet in ip.split("."))


# --- a lab --------------------------------------------------------------------------------------

class Lab:
    """One simulated lab. `hosts` maps host name -> underlay address."""

    def __init__(self, name: str, inventory: Path, hosts: dict[str, str]):
        self.name = name
        self.inventory = Path(inventory)
        self.hosts = dict(hosts)

    @property
    def path(self) -> str:
        return _lab.lab_dir(self.name)

    def pins(self, host: str) -> dict[str, str]:
        return _lab.host_pins(self.name, host)

    def exists(self) -> bool:
        return os.path.exists(self.path)

    # running things
    def playbook(self, playbook, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = _run([ANSIBLE_PLAYBOOK, "-i", self.inventory, playbook, "-e", "lab_name=%s" % self.name, *extra])
        if check and proc.returncode != 0:
            raise AssertionError("%s failed (rc=%d)\n%s\n%s" % (playbook, proc.returncode, proc.stdout, proc.stderr))
        return proc

    def ansible(self, pattern: str, module: str, args: str = "", *extra: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = [ANSIBLE, "-i", self.inventory, pattern, "-e", "lab_name=%s" % self.name, "-m", module]
        if args:
            argv += ["-a", args]
        proc = _run(argv + list(extra))
        if check and proc.returncode != 0:
            raise AssertionError("ansible %s -m %s failed (rc=%d)\n%s\n%s" % (pattern, module, proc.returncode, proc.stdout, proc.stderr))
        return proc

    def create(self, check: bool = True) -> subprocess.CompletedProcess:
        return self.playbook(LAB_PLAYBOOK, check=check)

    def destroy(self, check: bool = True) -> subprocess.CompletedProcess:
        return self.playbook(DESTROY_PLAYBOOK, check=check)

    def enter(self, host: str, *cmd: str, check: bool = True, netns: str | None = None, **kwargs) -> subprocess.CompletedProcess:
        """Run a command inside a lab host (optionally inside one of its own named namespaces)."""
        argv = _lab.nsenter_argv(self.name, host)
        if netns:
            argv += ["ip", "netns", "exec", netns]
        return subprocess.run(argv + list(cmd), capture_output=True, text=True, check=check, **kwargs)

    def ping(self, host: str, address: str, count: int = 3, netns: str | None = None) -> None:
        """Assert that `host` (or its namespace `netns`) reaches `address`: at least one of
        `count` echo requests answered (one lost packet on a busy machine is not a failure)."""
        proc = self.enter(host, "ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "2", address, check=False, netns=netns)
        if proc.returncode != 0:
            fabric = subprocess.run(["nsenter", "--net=%s" % _lab.fabric_pin(self.name), "bridge", "link"],
                                    capture_output=True, text=True, check=False).stdout
            raise AssertionError("%s%s cannot ping %s\n%s\nneighbours: %s\nfabric ports:\n%s" % (
                host, "/" + netns if netns else "", address, proc.stdout,
                self.enter(host, "ip", "neigh", check=False, netns=netns).stdout, fabric))

    def spawn(self, host: str, *cmd: str) -> subprocess.Popen:
        """Start a long-running process inside a lab host (a stand-in for an agent)."""
        return subprocess.Popen(_lab.nsenter_argv(self.name, host) + list(cmd), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def namespace_ids(self) -> set[tuple[int, int]]:
        paths = [_lab.fabric_pin(self.name)] + [p for host in self.hosts for p in self.pins(host).values()]
        return _lab.ns_ids(paths)

    def processes(self) -> list[int]:
        return _lab.processes_in(self.namespace_ids())


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@contextmanager
def running_lab(hosts: int | dict[str, str], directory: Path, *, name: str | None = None, prefix: int | None = None):
    """A created lab that is destroyed afterwards, even if the body (or creation) fails."""
    name = name or unique_lab_name()
    hosts = _host_map(hosts)
    lab = Lab(name, write_inventory(Path(directory) / name / "hosts.yml", name, hosts, prefix), hosts)
    try:
        lab.create()
        yield lab
    finally:
        _destroy_all([lab])


def _destroy_all(labs: list[Lab]) -> None:
    left = []
    for lab in labs:
        if lab.exists():
            proc = lab.destroy(check=False)
            if proc.returncode != 0 or lab.exists():
                left.append("%s (rc=%d)\n%s" % (lab.name, proc.returncode, proc.stdout[-2000:]))
    if left:
        raise AssertionError("labs not removed: %s" % "; ".join(left))


@pytest.fixture
def lab_factory(tmp_path):
    """make(hosts=3, inventory=None, name=None, create=True) -> Lab; all are destroyed at the end.

    `inventory`: use an existing inventory (e.g. inventories/lab) instead of writing one; `hosts`
    then says what it contains ({name: ip}) for the test's convenience.
    """
    made = []

    def make(hosts: int | dict[str, str] = 3, inventory: Path | None = None, name: str | None = None,
             create: bool = True) -> Lab:
        name = name or unique_lab_name()
        hosts = _host_map(hosts)
        if inventory is None:
            inventory = write_inventory(tmp_path / name / "hosts.yml", name, hosts)
        lab = Lab(name, inventory, hosts)
        made.append(lab)
        if create:
            lab.create()
        return lab

    try:
        yield make
    finally:
        _destroy_all(made)


@pytest.fixture
def lab(request, lab_factory):
    """A running lab of `request.param` hosts (default 3), destroyed after the test."""
    return lab_factory(getattr(request, "param", 3))
