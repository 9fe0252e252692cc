# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Namespace pinning for the simulated lab: paths, mounts, processes, hostnames.

A lab host is three namespaces (network, mount, UTS) made by unshare(2) in a throwaway thread
and pinned by bind mounts of their nsfs files, so they live on with no process in them:

    /run/overlay-lab/<lab>/                 bind-mounted on itself and made private (a mount
                                            namespace can only be pinned on a non-shared mount)
    /run/overlay-lab/<lab>/fabric/net       the fabric network namespace (the underlay bridge)
    /run/overlay-lab/<lab>/hosts/<host>/net the host's network namespace
    /run/overlay-lab/<lab>/hosts/<host>/mnt the host's mount namespace (own tmpfs on /run/netns)
    /run/overlay-lab/<lab>/hosts/<host>/uts the host's UTS namespace (hostname = <host>)

This file is lab infrastructure: standard library only (no pyroute2, so the connection plugin can
import it cheaply); namespaces, mounts and hostnames are system calls through ctypes, never a
command. The netlink side of the lab (bridge, veths, addresses) is in the lab_host module.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import signal
import socket
import threading
import time
from contextlib import contextmanager

LAB_ROOT = "/run/overlay-lab"
NS_KINDS = ("net", "mnt", "uts")

# Lab and host names become directory names and (hosts) the UTS hostname.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 0x2
CLONE_FS = 0x00000200
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
NETLINK_ROUTE = 0

_libc = ctypes.CDLL(None, use_errno=True)


class LabError(Exception):
    """A lab operation failed; the message is meant for the user."""


def valid_name(value: str) -> bool:
    return bool(_NAME_RE.match(value or ""))


def lab_dir(lab: str) -> str:
    return os.path.join(LAB_ROOT, lab)


def fabric_dir(lab: str) -> str:
    return os.path.join(lab_dir(lab), "fabric")


def fabric_pin(lab: str) -> str:
    return os.path.join(fabric_dir(lab), "net")


def hosts_dir(lab: str) -> str:
    return os.path.join(lab_dir(lab), "hosts")


def host_dir(lab: str, host: str) -> str:
    return os.path.join(hosts_dir(lab), host)


def host_pins(lab: str, host: str) -> dict[str, str]:
    """{'net': path, 'mnt': path, 'uts': path} of one lab host."""
    base = host_dir(lab, host)
    return {kind: os.path.join(base, kind) for kind in NS_KINDS}


def nsenter_argv(lab: str, host: str, kinds=NS_KINDS) -> list[str]:
    """The nsenter(1) prefix that runs a command inside a lab host."""
    pins = host_pins(lab, host)
    option = {"net": "--net", "mnt": "--mount", "uts": "--uts"}
    return ["nsenter"] + ["%s=%s" % (option[kind], pins[kind]) for kind in kinds] + ["--"]


# --- mounts -------------------------------------------------------------------------------------

def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def mounts() -> dict[str, str]:
    """Mount point -> filesystem type in this process's mount namespace (topmost mount wins)."""
    table = {}
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            fields = line.split()
            table[_unescape(fields[4])] = fields[fields.index("-") + 1]
    return table


def is_pinned(path: str, table: dict[str, str]) -> bool:
    return table.get(path) == "nsfs"


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, "%s: %s" % (what, os.strerror(code)))


def mount_private_dir(path: str) -> None:
    """Bind-mount `path` on itself and make it private, so mount namespaces can be pinned in it."""
    os.makedirs(path, mode=0o755, exist_ok=True)
    target = path.encode()
    _check(_libc.mount(target, target, None, MS_BIND, None), "bind-mount %s" % path)
    _check(_libc.mount(None, target, None, MS_PRIVATE, None), "make %s private" % path)


def make_private(path: str) -> None:
    _check(_libc.mount(None, path.encode(), None, MS_PRIVATE, None), "make %s private" % path)


def is_private(path: str) -> bool:
    """True if the mount at `path` propagates nowhere (no shared:N / master:N tag)."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
        found = None
        for line in handle:
            fields = line.split()
            if _unescape(fields[4]) == path:
                found = fields[6:fields.index("-")]
    return found is not None and not any(tag.startswith(("shared:", "master:")) for tag in found)


def umount(path: str) -> bool:
    """Unmount `path` (lazily if busy). False if nothing was mounted there."""
    target = path.encode()
    if _libc.umount2(target, 0) == 0:
        return True
    code = ctypes.get_errno()
    if code == errno.EBUSY:
        _check(_libc.umount2(target, MNT_DETACH), "unmount %s" % path)
        return True
    if code in (errno.EINVAL, errno.ENOENT):
        return False
    raise OSError(code, "unmount %s: %s" % (path, os.strerror(code)))


def touch(path: str) -> None:
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT, 0o444))


def remove_tree(path: str, table: dict[str, str] | None = None) -> None:
    """Remove a lab directory bottom-up: unmount what is mounted in it, delete, unmount it, rmdir."""
    if table is None:
        table = mounts()
    prefix = path.rstrip("/") + "/"
    for target in sorted((t for t in table if t.startswith(prefix)), key=len, reverse=True):
        umount(target)
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            _ignore_missing(os.unlink, os.path.join(root, name))
        for name in dirs:
            _ignore_missing(os.rmdir, os.path.join(root, name))
    if path.rstrip("/") in table:
        umount(path)
    _ignore_missing(os.rmdir, path)


def _ignore_missing(func, path: str) -> None:
    try:
        func(path)
    except FileNotFoundError:
        pass


@contextmanager
def lab_lock():
    """Serialise lab changes on this machine (flock on /run/overlay-lab itself: no extra files)."""
    os.makedirs(LAB_ROOT, mode=0o755, exist_ok=True)
    fd = os.open(LAB_ROOT, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --- creating namespaces ------------------------------------------------------------------------

_KIND_FLAGS = {"net": CLONE_NEWNET, "mnt": CLONE_NEWNS, "uts": CLONE_NEWUTS}


def pin_new_namespaces(pins: dict[str, str]) -> None:
    """Create one new namespace of each kind in `pins` ({'net': path, 'mnt': path, 'uts': path})
    and pin it at its path, as `unshare --net=PATH --mount=PATH --uts=PATH --propagation private`
    would, without running a command.

    unshare(2) changes only the calling thread, so a throwaway thread unshares and waits while
    this thread bind-mounts the thread's nsfs files (/proc/self/task/<tid>/ns/<kind>) onto the
    pins, from the machine's own mount namespace. The pins outlive the thread. On a failure the
    pins this call made are unmounted again.
    """
    unshared, pinned_done = threading.Event(), threading.Event()
    state = {}

    def run():
        try:
            if "mnt" in pins:  # a thread sharing its file-system context may not unshare mounts
                _check(_libc.unshare(CLONE_FS), "unshare the file-system context")
            flags = 0
            for kind in pins:
                flags |= _KIND_FLAGS[kind]
            _check(_libc.unshare(flags), "unshare %s namespaces" % "/".join(pins))
            if "mnt" in pins:  # --propagation private: no mount made in the host leaks out, or in
                _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private in the new mount namespace")
            state["tid"] = threading.get_native_id()
        except OSError as exc:
            state["error"] = exc
        unshared.set()
        pinned_done.wait()

    thread = threading.Thread(target=run, name="lab-unshare")
    thread.start()
    made = []
    try:
        unshared.wait()
        if "error" in state:
            raise state["error"]
        for kind, path in pins.items():
            source = "/proc/self/task/%d/ns/%s" % (state["tid"], kind)
            _check(_libc.mount(source.encode(), path.encode(), None, MS_BIND, None), "pin the %s namespace at %s" % (kind, path))
            made.append(path)
    except OSError:
        for path in reversed(made):
            umount(path)
        raise
    finally:
        pinned_done.set()
        thread.join()


def create_fabric_ns(lab: str) -> None:
    os.makedirs(fabric_dir(lab), mode=0o755, exist_ok=True)
    touch(fabric_pin(lab))
    try:
        pin_new_namespaces({"net": fabric_pin(lab)})
    except OSError as exc:
        raise LabError("could not create the fabric namespace: %s" % exc) from None


def create_host_namespaces(lab: str, hosts: list[str]) -> None:
    """Create, pin and initialise the namespaces of several hosts (see pin_new_namespaces and
    init_host); about a millisecond per host."""
    for host in hosts:
        pins = host_pins(lab, host)
        os.makedirs(host_dir(lab, host), mode=0o755, exist_ok=True)
        for path in pins.values():
            touch(path)
        try:
            pin_new_namespaces(pins)
        except OSError as exc:
            raise LabError("could not create the namespaces of lab host %s: %s" % (host, exc)) from None
    for host in hosts:
        init_host(lab, host)


def init_host(lab: str, host: str) -> None:
    """Set the hostname; in the host's mount namespace drop its copies of every namespace pin
    (nsfs bind mounts: other labs, this lab's other hosts, the machine's /run/netns), so the
    host holds no reference to anybody else's namespaces, then mount its own empty /run/netns.
    """
    pins = host_pins(lab, host)
    set_hostname(pins["uts"], host)
    _in_namespace(pins["mnt"], CLONE_NEWNS, _init_mount_namespace)


def _init_mount_namespace() -> None:
    targets = []
    with open("/proc/thread-self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            fields = line.split()
            target = _unescape(fields[4])
            if fields[fields.index("-") + 1] == "nsfs" or target in ("/run/netns", LAB_ROOT) or \
                    target.startswith(("/run/netns/", LAB_ROOT + "/")):
                targets.append(target)
    for target in reversed(targets):  # newest first; children of a detached mount are gone with it
        if _libc.umount2(target.encode(), MNT_DETACH) != 0 and ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
            code = ctypes.get_errno()
            raise OSError(code, "unmount %s in a lab host: %s" % (target, os.strerror(code)))
    os.makedirs("/run/netns", mode=0o755, exist_ok=True)
    _check(_libc.mount(b"tmpfs", b"/run/netns", b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, b"mode=0755"),
           "mount a tmpfs on /run/netns in a lab host")


# --- work inside a pinned namespace from a short-lived thread ----------------------------------
# setns(2) changes only the calling thread, so a throwaway thread can open a netlink socket in a
# lab namespace (the socket stays bound to it), read or set a hostname, or mount inside a host, in
# about a millisecond; pyroute2's IPRoute(netns=...) forks a helper (~8 ms), a child process more.
# A mount namespace can only be entered by a thread with a file-system context of its own, hence
# unshare(CLONE_FS) first.

def _in_namespace(pin: str, nstype: int, func):
    result = {}

    def run():
        try:
            if nstype == CLONE_NEWNS:
                _check(_libc.unshare(CLONE_FS), "unshare the file-system context")
            fd = os.open(pin, os.O_RDONLY)
            try:
                _check(_libc.setns(fd, nstype), "enter %s" % pin)
            finally:
                os.close(fd)
            result["value"] = func()
        except OSError as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, name="lab-setns")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def netlink_socket(pin: str) -> int:
    """A NETLINK_ROUTE socket (its file descriptor) living in the network namespace at `pin`.

    Hand it to pyroute2 as IPRoute(fileno=fd); closing the IPRoute closes it.
    """
    return _in_namespace(
        pin, CLONE_NEWNET, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE).detach()
    )


def set_net_sysctl(pin: str, key: str, value: str) -> None:
    """Write /proc/sys/net/<key> of the network namespace at `pin` (e.g. ipv6/conf/eth0/accept_dad).

    /proc/sys/net shows the network namespace of the task that looks it up, so a thread that
    entered the namespace writes that namespace's value; the machine's stays untouched."""
    def write():
        with open("/proc/sys/net/" + key, "w", encoding="ascii") as handle:
            handle.write(value)

    _in_namespace(pin, CLONE_NEWNET, write)


def get_net_sysctl(pin: str, key: str) -> str:
    def read():
        with open("/proc/sys/net/" + key, encoding="ascii") as handle:
            return handle.read().strip()

    return _in_namespace(pin, CLONE_NEWNET, read)


def get_hostname(pin: str) -> str:
    return _in_namespace(pin, CLONE_NEWUTS, socket.gethostname)


def set_hostname(pin: str, name: str) -> None:
    _in_namespace(pin, CLONE_NEWUTS, lambda: socket.sethostname(name))


# --- processes ----------------------------------------------------------------------------------

def ns_ids(paths) -> set[tuple[int, int]]:
    """(st_dev, st_ino) of the namespaces pinned at `paths` (missing or unpinned paths skipped)."""
    ids = set()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        ids.add((st.st_dev, st.st_ino))
    return ids


def processes_in(ids: set[tuple[int, int]]) -> list[int]:
    """PIDs of processes whose network, mount or UTS namespace is one of `ids`."""
    if not ids:
        return []
    found = []
    own = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        for kind in NS_KINDS:
            try:
                st = os.stat("/proc/%s/ns/%s" % (entry.name, kind))
            except OSError:  # gone, or a zombie (its namespaces are already released)
                break
            if (st.st_dev, st.st_ino) in ids:
                found.append(int(entry.name))
                break
    return sorted(found)


def kill_processes(ids: set[tuple[int, int]], timeout: float) -> list[int]:
    """SIGTERM every process in the namespaces, SIGKILL what is left after `timeout` seconds."""
    victims = processes_in(ids)
    if not victims:
        return []
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        for pid in processes_in(ids):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while processes_in(ids) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not processes_in(ids):
            return victims
    raise LabError("processes %s survived SIGKILL in the lab's namespaces" % processes_in(ids))
