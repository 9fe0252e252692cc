# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Machine labs: booted Debian containers (systemd-nspawn) in the namespace lab's hosts.

Lab-only orchestration, run by role overlay.vxlan.lab with the controller's Python (it needs
pyroute2, like the lab_host module). It runs commands (debootstrap, systemd-nspawn, ssh-keygen),
which is why it lives in the role's files and not in plugins/. Every subcommand except
`supervise` prints one JSON object: {"changed": bool, ...}.

  image      build the root image once into CACHE/<id>/root (id: hash of suite and packages)
  up         keys, upper dirs, one supervisor per machine; wait until each answers on port 22
  down       kill supervisors and containers, remove cgroups and files (found by convention)
  supervise  internal: runs one machine, restarts it when the guest reboots (exit 133)
  fresh-netns  internal: a new network namespace for the next boot (see fresh_netns)

Conventions (destroy finds everything by them, recorded state or not):
  STATE/<lab>/                       keys, known_hosts, ssh_relay.py; STATE=/var/lib/overlay-vxlan-lab
  STATE/<lab>/hosts/<host>/upper     the machine's copy-on-write layer over the shared root
  /sys/fs/cgroup/{systemd,unified}/overlay-lab/<lab>/<host>   the container's cgroups
  argv "machine_lab.py supervise --lab <lab> --host <host>"  the supervisor
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
CGROUP_TREES = ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified")
CGROUP_DIR = "overlay-lab"
CHECK = {"mode": False}  # --check: report what would change, change nothing
REBOOT_EXIT = 133  # systemd-nspawn's exit status when the guest asked for a reboot
IMAGE_RECIPE = 1   # bump when the image preparation below changes: gives a new image id


def load_lab():
    """The lab's namespace helpers (plugins/module_utils/_lab.py, standard library only)."""
    path = HERE.parents[2] / "plugins" / "module_utils" / "_lab.py"
    spec = importlib.util.spec_from_file_location("overlay_vxlan_lab", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lab = load_lab()


def emit(result: dict) -> None:
    print(json.dumps(result, sort_keys=True))


def run(*argv, **kwargs) -> subprocess.CompletedProcess:
    check = kwargs.pop("check", True)
    return subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL, check=check, **kwargs)


# --- the root image -----------------------------------------------------------------------------

def image_id(suite: str, packages: list[str]) -> str:
    text = json.dumps({"recipe": IMAGE_RECIPE, "suite": suite, "packages": sorted(set(packages))})
    return "debian-%s-%s" % (suite, hashlib.sha256(text.encode()).hexdigest()[:12])


def cmd_image(args) -> None:
    packages = sorted(set(args.packages.split(",")))
    ident = image_id(args.suite, packages)
    final = Path(args.cache) / ident
    result = {"changed": False, "id": ident, "path": str(final), "root": str(final / "root")}
    if (final / "image.json").is_file() or CHECK["mode"]:
        emit(dict(result, changed=not (final / "image.json").is_file()))
        return
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    # One builder per cache; a second one waits, then finds the image made.
    with open(Path(args.cache) / ".lock", "w") as lock:
        import fcntl
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "image.json").is_file():
            emit(result)
            return
        for stale in Path(args.cache).glob(ident + ".tmp-*"):  # a killed build: never reused
            shutil.rmtree(stale, ignore_errors=True)
        started = time.monotonic()
        tmp = Path(args.cache) / ("%s.tmp-%d" % (ident, os.getpid()))
        try:
            build_root(tmp / "root", args.suite, args.mirror, packages)
            (tmp / "image.json").write_text(json.dumps({
                "id": ident, "suite": args.suite, "mirror": args.mirror, "packages": packages,
                "build_seconds": round(time.monotonic() - started, 1)}, indent=1) + "\n")
            os.rename(tmp, final)  # atomic: the image exists whole or not at all
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    result.update(changed=True, build_seconds=round(time.monotonic() - started, 1))
    emit(result)


POLICY_RC = "#!/bin/sh\n# overlay.vxlan image build: no package starts a service here\nexit 101\n"
SSHD_CONF = """# overlay.vxlan machine lab: one ed25519 host key per machine (in its own layer), keys only
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""


def build_root(root: Path, suite: str, mirror: str, packages: list[str]) -> None:
    policy = root / "usr" / "sbin" / "policy-rc.d"
    policy.parent.mkdir(parents=True)
    policy.write_text(POLICY_RC)  # in place before any maintainer script runs
    policy.chmod(0o755)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C.UTF-8")
    run("debootstrap", "--variant=minbase", "--include=" + ",".join(packages), suite, root, mirror,
        env=env, stdout=sys.stderr)
    # debootstrap swaps in (and removes) a policy-rc.d of its own; ours covers the steps below.
    policy.write_text(POLICY_RC)
    policy.chmod(0o755)
    # etcd-server is there for DOVE's controller and frr for EVPN (no internet in the lab), but
    # they start only when the controller / evpn role says so; apt timers would only try the network.
    daemons = [unit for pkg, unit in (("etcd-server", "etcd.service"), ("frr", "frr.service")) if pkg in packages]
    for unit in daemons:
        run("chroot", root, "systemctl", "disable", unit, env=env, stdout=sys.stderr, stderr=sys.stderr)
    for unit in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        run("chroot", root, "systemctl", "mask", unit, env=env, check=False, stdout=sys.stderr, stderr=sys.stderr)
    wants = [path for unit in daemons for path in root.glob("etc/systemd/system/*.wants/" + unit)]
    if wants:
        raise RuntimeError("%s still wanted: %s" % (", ".join(daemons), wants))
    # Host keys and the machine id are per machine (written into each machine's layer).
    for key in root.glob("etc/ssh/ssh_host_*"):
        key.unlink()
    (root / "etc" / "ssh" / "sshd_config.d").mkdir(exist_ok=True)
    (root / "etc" / "ssh" / "sshd_config.d" / "overlay-lab.conf").write_text(SSHD_CONF)
    (root / "etc" / "machine-id").write_text("")
    run("chroot", root, "apt-get", "clean", env=env)
    shutil.rmtree(root / "var" / "lib" / "apt" / "lists", ignore_errors=True)
    (root / "var" / "lib" / "apt" / "lists" / "partial").mkdir(parents=True)
    policy.unlink()


# --- paths and processes ------------------------------------------------------------------------

def state_dir(args) -> Path:
    return Path(args.state) / args.lab


def host_state(args, host: str) -> Path:
    return state_dir(args) / "hosts" / host


def cgroups(lab_name: str, host: str | None = None) -> list[Path]:
    parts = [CGROUP_DIR, lab_name] + ([host] if host else [])
    return [Path(tree, *parts) for tree in CGROUP_TREES]


def machine_name(lab_name: str, host: str) -> str:
    """The nspawn machine name: a valid hostname made of the lab's and the host's names."""
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in "%s-%s" % (lab_name, host))
    return name[:64]


def cmdline(pid: int) -> list[str]:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return [part.decode(errors="replace") for part in handle.read().split(b"\0") if part]
    except OSError:
        return []


def supervisors(lab_name: str) -> dict[str, int]:
    """host -> PID of this lab's running supervisors, found by their command line."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        argv = cmdline(int(entry.name))
        if len(argv) >= 7 and argv[1].endswith("machine_lab.py") and argv[2] == "supervise" and \
                argv[3:5] == ["--lab", lab_name] and argv[5] == "--host" and _alive(int(entry.name)):
            found[argv[6]] = int(entry.name)
    return found


def _alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def cgroup_pids(paths: list[Path]) -> set[int]:
    pids = set()
    for top in paths:
        if top.is_dir():
            for procs in top.rglob("cgroup.procs"):
                try:
                    pids.update(int(p) for p in procs.read_text().split())
                except OSError:
                    pass
    return pids


def kill_cgroups(paths: list[Path], timeout: float = 10.0) -> list[int]:
    """SIGKILL everything in the cgroups (a container's PID 1 dies and its PID namespace with
    it), until they are empty."""
    killed = sorted(cgroup_pids(paths))
    deadline = time.monotonic() + timeout
    while True:
        pids = cgroup_pids(paths)
        if not pids:
            return killed
        if time.monotonic() > deadline:
            raise RuntimeError("processes %s survive in %s" % (sorted(pids), [str(p) for p in paths]))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def remove_cgroups(paths: list[Path]) -> None:
    """rmdir the cgroup directories bottom-up (cgroupfs removes the control files itself)."""
    for top in paths:
        if not top.is_dir():
            continue
        for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            directory.rmdir()
        top.rmdir()


def make_cgroups(paths: list[Path]) -> None:
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)


# --- a freshly powered machine's network namespace -----------------------------------------------

def fresh_netns(lab_name: str, host: str, cfg: dict) -> None:
    """Replace the host's network namespace by a new one holding only lo and eth0, as a machine
    that was just powered on has: eth0 (the lab's veth, same MAC, same fabric peer) moves over
    and gets its underlay address and the lab's permanent neighbours back. Whatever an earlier
    boot made (links, addresses, routes, sysctls, ns1's veth) goes with the old namespace.
    Under the lab lock, so lab_host never sees the swap half-done."""
    from pyroute2 import IPRoute

    pin = lab.host_pins(lab_name, host)["net"]
    fresh = os.path.join(lab.host_dir(lab_name, host), ".net-fresh")
    dev, (ip, prefix) = cfg["dev"], cfg["cidr"].split("/")
    with lab.lab_lock():
        if os.path.exists(fresh):
            lab.umount(fresh)
        lab.touch(fresh)
        lab.pin_new_namespaces({"net": fresh})
        try:
            old = IPRoute(fileno=lab.netlink_socket(pin))
            try:
                index = old.link_lookup(ifname=dev)
                if not index:
                    raise RuntimeError("lab host %s has no %s (run playbooks/lab.yml)" % (host, dev))
                index = index[0]
                neighbours = [(n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR")) for n in old.neigh("dump", ifindex=index)
                              if n["ifindex"] == index and n["state"] & 0x80 and n.get_attr("NDA_LLADDR")]
                mtu = old.link("get", index=index)[0].get_attr("IFLA_MTU")
                old.link("set", index=index, state="down")
                fd = os.open(fresh, os.O_RDONLY)
                try:
                    old.link("set", index=index, net_ns_fd=fd)
                finally:
                    os.close(fd)
            finally:
                old.close()
            new = IPRoute(fileno=lab.netlink_socket(fresh))
            try:
                index = new.link_lookup(ifname=dev)[0]
                new.link("set", index=new.link_lookup(ifname="lo")[0], state="up")
                new.addr("add", index=index, address=ip, prefixlen=int(prefix))
                new.link("set", index=index, mtu=mtu, state="up")
                for dst, lladdr in neighbours:
                    new.neigh("replace", ifindex=index, dst=dst, lladdr=lladdr, state=0x80)
            finally:
                new.close()
            lab.umount(pin)
            lab._check(lab._libc.mount(fresh.encode(), pin.encode(), None, lab.MS_BIND, None), "re-pin %s" % pin)
        finally:
            lab.umount(fresh)
            os.unlink(fresh)


def cmd_fresh_netns(args) -> None:
    cfg = json.loads((host_state(args, args.host) / "machine.json").read_text())
    fresh_netns(args.lab, args.host, cfg)


# --- one machine: the supervisor -----------------------------------------------------------------

def nspawn_argv(lab_name: str, host: str, cfg: dict) -> list[str]:
    return ["systemd-nspawn", "--quiet", "--boot", "--register=no", "--keep-unit",
            "--directory=" + cfg["root"], "--read-only",
            "--overlay=%s:%s:/" % (cfg["root"], cfg["upper"]),
            "--machine=" + machine_name(lab_name, host), "--hostname=" + host,
            "--network-namespace-path=" + lab.host_pins(lab_name, host)["net"],
            "--capability=CAP_NET_ADMIN", "--resolv-conf=off", "--timezone=off",
            "--link-journal=no", "--console=read-only"]


def cmd_supervise(args) -> None:
    """Run one machine until it powers off, is killed, or this process gets SIGTERM; a guest
    reboot (exit 133) starts it again on a fresh network namespace and fresh cgroups."""
    paths = cgroups(args.lab, args.host)
    stopping = {"flag": False, "child": None}

    def on_term(_sig, _frame):
        stopping["flag"] = True
        if stopping["child"] is not None:
            stopping["child"].send_signal(signal.SIGTERM)  # nspawn: orderly guest shutdown

    signal.signal(signal.SIGTERM, on_term)
    env = dict(os.environ, SYSTEMD_NSPAWN_API_VFS_WRITABLE="network")
    boots = 0
    while not stopping["flag"]:
        # Read on every boot: a lab.yml that changed the image or address takes effect at reboot.
        cfg = json.loads((host_state(args, args.host) / "machine.json").read_text())
        kill_cgroups(paths)
        remove_cgroups(paths)
        make_cgroups(paths)
        # In a child: pyroute2 would stay resident in this long-lived process (~15 MiB each).
        run(sys.executable, Path(__file__).resolve(), "fresh-netns", "--lab", args.lab, "--host", args.host,
            "--state", args.state)
        if stopping["flag"]:
            break
        boots += 1
        print("%s: boot %d of %s" % (time.strftime("%F %T"), boots, args.host), flush=True)

        def enter_cgroups():  # the nspawn process itself goes in; this supervisor stays out
            for path in paths:
                (path / "cgroup.procs").write_text("0\n")

        child = subprocess.Popen(nspawn_argv(args.lab, args.host, cfg), stdin=subprocess.DEVNULL,
                                 env=env, preexec_fn=enter_cgroups)
        stopping["child"] = child
        booted = time.monotonic()
        code = child.wait()
        stopping["child"] = None
        print("%s: systemd-nspawn exited %d" % (time.strftime("%F %T"), code), flush=True)
        if code != REBOOT_EXIT:
            break
        if time.monotonic() - booted < 2:  # a guest that reboots at once must not spin a CPU
            time.sleep(1)
    kill_cgroups(paths)
    remove_cgroups(paths)


# --- up / down -------------------------------------------------------------------------------------

def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    if path.is_file() and path.read_text() == text:
        return False
    if CHECK["mode"]:
        return True
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)
    return True


def ssh_keygen(path: Path, comment: str) -> bool:
    if path.is_file() and path.with_name(path.name + ".pub").is_file():
        return False
    if CHECK["mode"]:
        return True
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + ".pub")):
        if stale.exists():
            stale.unlink()
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path, stdout=subprocess.DEVNULL)
    return True


def prepare_layer(args, host: str, ip: str, client_pub: str) -> tuple[bool, str]:
    """The machine's own files in its upper layer: host key, root's authorized key, machine id,
    hostname. Returns (changed, host public key)."""
    upper = host_state(args, host) / "upper"
    changed = ssh_keygen(upper / "etc" / "ssh" / "ssh_host_ed25519_key", "root@%s" % host)
    changed |= write_if_changed(upper / "root" / ".ssh" / "authorized_keys", client_pub, 0o600)
    if not CHECK["mode"]:
        (upper / "root" / ".ssh").chmod(0o700)
    if not (upper / "etc" / "machine-id").is_file():
        changed |= write_if_changed(upper / "etc" / "machine-id", uuid.uuid4().hex + "\n", 0o444)
    changed |= write_if_changed(upper / "etc" / "hostname", host + "\n")
    pub = upper / "etc" / "ssh" / "ssh_host_ed25519_key.pub"
    return changed, pub.read_text().split()[:2] if pub.is_file() else ["?", "?"]


def ensure_fabric_address(lab_name: str, bridge: str, address: str) -> bool:
    """The relay's source address on the fabric bridge (in the fabric namespace only)."""
    from pyroute2 import IPRoute

    ip, prefix = address.split("/")
    if CHECK["mode"] and not lab.is_pinned(lab.fabric_pin(lab_name), lab.mounts()):
        return True  # the lab itself is still to be made
    ipr = IPRoute(fileno=lab.netlink_socket(lab.fabric_pin(lab_name)))
    try:
        index = ipr.link_lookup(ifname=bridge)
        if not index:
            raise RuntimeError("lab %s has no fabric bridge %s (run playbooks/lab.yml)" % (lab_name, bridge))
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.addr("dump", index=index[0])}
        if (ip, int(prefix)) in have:
            return False
        if CHECK["mode"]:
            return True
        ipr.addr("add", index=index[0], address=ip, prefixlen=int(prefix))
        return True
    finally:
        ipr.close()


def ssh_ready(lab_name: str, ip: str) -> bool:
    """Does the machine's sshd greet us? Asked from inside the fabric namespace (a thread)."""
    def probe():
        try:
            with socket.create_connection((ip, 22), timeout=0.5) as sock:
                return sock.recv(4).startswith(b"SSH-")
        except OSError:
            return False
    return lab._in_namespace(lab.fabric_pin(lab_name), lab.CLONE_NEWNET, probe)


def in_own_netns(lab_name: str, host: str) -> bool:
    """False if the machine's processes live in another network namespace than the host's pin
    (True while none is there yet: booting)."""
    pin = lab.ns_ids([lab.host_pins(lab_name, host)["net"]])
    seen = lab.ns_ids("/proc/%d/ns/net" % pid for pid in cgroup_pids([cgroups(lab_name, host)[0] / "payload"]))
    return not seen or bool(seen & pin)


def stop_machine(args, host: str, pid: int | None) -> None:
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)  # first, so nothing restarts what is killed below
        except ProcessLookupError:
            pass
    paths = cgroups(args.lab, host)
    kill_cgroups(paths)
    remove_cgroups(paths)
    shutil.rmtree(Path("/run/systemd/nspawn/propagate") / machine_name(args.lab, host), ignore_errors=True)


def cmd_up(args) -> None:
    hosts = json.loads(args.hosts)  # {host: "ip/prefix"}
    base = state_dir(args)
    # The image is found by its id, not handed over by the image task: check mode (which skips
    # both commands) then templates nothing from a result that does not exist.
    root = Path(args.cache) / image_id(args.suite, args.packages.split(",")) / "root"
    if not (root.parent / "image.json").is_file():
        if CHECK["mode"]:  # the image step would build it first
            emit({"changed": True, "msg": "no root image yet at %s" % root.parent})
            return
        emit({"changed": False, "failed": True, "msg": "no root image at %s (run the image step)" % root.parent})
        sys.exit(1)
    result = {"changed": False, "started": [], "stopped": [], "running": [], "state_dir": str(base)}
    if not CHECK["mode"]:
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o700)
    key = base / "id_ed25519"
    result["changed"] |= ssh_keygen(key, "overlay-vxlan-lab@%s" % args.lab)
    client_pub = key.with_name("id_ed25519.pub").read_text() if key.with_name("id_ed25519.pub").is_file() else ""
    result["changed"] |= write_if_changed(base / "ssh_relay.py", (HERE / "ssh_relay.py").read_text(), 0o755)
    result["changed"] |= ensure_fabric_address(args.lab, args.bridge, args.fabric_ip)
    # A container cannot load kernel modules, and its first `ip link add type vxlan` would fail
    # on a machine where nothing loaded them yet (no device is made by loading them).
    for module in ("vxlan", "bridge", "veth"):
        if not os.path.isdir("/sys/module/" + module) and shutil.which("modprobe") and not CHECK["mode"]:
            loaded = run("modprobe", "-q", module, check=False).returncode == 0 and os.path.isdir("/sys/module/" + module)
            result["changed"] |= loaded

    running = supervisors(args.lab)
    for host in sorted((set(running) | {p.name for p in (base / "hosts").glob("*")}) - set(hosts)):
        if not CHECK["mode"]:
            stop_machine(args, host, running.pop(host, None))  # left the inventory
            shutil.rmtree(host_state(args, host), ignore_errors=True)
        result["stopped"].append(host)
        result["changed"] = True

    known = []
    for host, cidr in sorted(hosts.items()):
        changed, pub = prepare_layer(args, host, cidr.split("/")[0], client_pub)
        result["changed"] |= changed
        known.append("%s %s %s\n" % (cidr.split("/")[0], pub[0], pub[1]))
        cfg = {"root": str(root), "upper": str(host_state(args, host) / "upper"), "cidr": cidr, "dev": args.dev}
        result["changed"] |= write_if_changed(host_state(args, host) / "machine.json", json.dumps(cfg, sort_keys=True) + "\n")
    result["changed"] |= write_if_changed(base / "known_hosts", "".join(known))

    for host in sorted(hosts):
        if host in running and not in_own_netns(args.lab, host):
            # lab_host made this host's namespaces again: the container sits in the old one
            if not CHECK["mode"]:
                stop_machine(args, host, running.pop(host))
            result["stopped"].append(host)
        elif host in running:
            result["running"].append(host)
            continue
        result["started"].append(host)
        result["changed"] = True
        if CHECK["mode"]:
            continue
        stop_machine(args, host, None)  # a machine whose supervisor died: clear what it left
        log = open(host_state(args, host) / "console.log", "ab")
        subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "supervise", "--lab", args.lab,
                          "--host", host, "--state", args.state], stdin=subprocess.DEVNULL, stdout=log,
                         stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        log.close()

    deadline = time.monotonic() + args.timeout
    waiting = {} if CHECK["mode"] else {host: hosts[host].split("/")[0] for host in result["started"]}
    started = time.monotonic()
    while waiting:
        for host in [h for h, ip in waiting.items() if ssh_ready(args.lab, ip)]:
            del waiting[host]
        if not waiting:
            break
        dead = [h for h in waiting if h not in supervisors(args.lab)]
        if dead or time.monotonic() > deadline:
            tails = {h: (host_state(args, h) / "console.log").read_text(errors="replace")[-1500:] for h in waiting}
            emit(dict(result, failed=True, msg="machines not reachable on port 22 (%s): %s" % (
                "stopped" if dead else "timeout %ss" % args.timeout, sorted(waiting)), console=tails))
            sys.exit(1)
        time.sleep(0.1)
    result["boot_seconds"] = round(time.monotonic() - started, 2)
    emit(result)


def cmd_down(args) -> None:
    base = state_dir(args)
    running = supervisors(args.lab)
    hosts = set(running) | {p.name for p in (base / "hosts").glob("*")}
    top = cgroups(args.lab)
    for tree in top:
        if tree.is_dir():
            hosts |= {p.name for p in tree.iterdir() if p.is_dir()}
    changed = bool(hosts) or base.exists() or any(p.exists() for p in top)
    if CHECK["mode"]:
        emit({"changed": changed, "machines": sorted(hosts), "killed": []})
        return
    killed = []
    for pid in running.values():  # all supervisors first: none may restart a machine we kill
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for host in sorted(hosts):
        killed += kill_cgroups(cgroups(args.lab, host))
        stop_machine(args, host, None)
    remove_cgroups(top)
    shutil.rmtree(base, ignore_errors=True)
    emit({"changed": changed, "machines": sorted(hosts), "killed": killed})


def cmd_image_remove(args) -> None:
    cache = Path(args.cache)
    images = sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []
    if not CHECK["mode"]:
        shutil.rmtree(cache, ignore_errors=True)
    emit({"changed": bool(images), "removed": images})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    image = sub.add_parser("image")
    image.add_argument("--cache", required=True)
    image.add_argument("--suite", default="bookworm")
    image.add_argument("--mirror", default="http://deb.debian.org/debian")
    image.add_argument("--packages", required=True, help="comma-separated")
    remove = sub.add_parser("image-remove")
    remove.add_argument("--cache", required=True)
    for name in ("up", "down", "supervise", "fresh-netns"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--lab", required=True)
        cmd.add_argument("--state", default="/var/lib/overlay-vxlan-lab")
        if name in ("supervise", "fresh-netns"):
            cmd.add_argument("--host", required=True)
        if name == "up":
            cmd.add_argument("--hosts", required=True, help='JSON {"h1": "192.168.1.2/24"}')
            cmd.add_argument("--cache", required=True, help="the image cache (see image)")
            cmd.add_argument("--suite", default="bookworm")
            cmd.add_argument("--packages", required=True, help="comma-separated, as for image")
            cmd.add_argument("--dev", default="eth0")
            cmd.add_argument("--bridge", default="underlay0")
            cmd.add_argument("--fabric-ip", required=True, help="address/prefix on the fabric bridge")
            cmd.add_argument("--timeout", type=float, default=60)
    for cmd in sub.choices.values():
        cmd.add_argument("--check", action=argparse.BooleanOptionalAction, default=False,
                         help="report what would change, change nothing (Ansible's check mode)")
    args = parser.parse_args()
    CHECK["mode"] = args.check
    if getattr(args, "lab", None) is not None and not lab.valid_name(args.lab):
        parser.error("bad lab name %r" % args.lab)
    {"image": cmd_image, "image-remove": cmd_image_remove, "up": cmd_up, "down": cmd_down,
     "supervise": cmd_supervise, "fresh-netns": cmd_fresh_netns}[args.command](args)


if __name__ == "__main__":
    main()
