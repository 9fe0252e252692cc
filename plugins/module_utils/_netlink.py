# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one netlink layer of overlay.vxlan: pyroute2 sessions, namespaces, link lookups,
kernel-value normalisation, error mapping and the undo journal.

Modules stay thin: they validate with _validate, read and change the kernel through here, and
report. Nothing in this file runs `ip`, `bridge` or `brctl`.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import traceback
from contextlib import contextmanager

from ansible_collections.overlay.vxlan.plugins.module_utils._validate import InputError, OverlayError

# Where role overlay.vxlan.pyroute2 unpacks the controller's pyroute2 on a host whose Python has
# none or too old a one (the role's pyroute2_install_dir). Only the collection's own processes
# look there - the modules, the boot restore and the DOVE agent, each through this file, before
# their first pyroute2 import - ahead of the site directories (a distribution's older
# python3-pyroute2) and behind PYTHONPATH (the role's check-mode copy). No .pth file: every other
# program on the host keeps the distribution's pyroute2, or none.
PRIVATE_PYROUTE2_DIR = "/usr/local/lib/overlay-vxlan/python"


def private_pyroute2_first(directory: str = PRIVATE_PYROUTE2_DIR, path: list | None = None) -> bool:
    """Put `directory` on `path` (sys.path) just before its first site directory (site-packages,
    dist-packages), if the directory exists and is not on it yet; True if it was put there."""
    path = sys.path if path is None else path
    if directory in path or not os.path.isdir(directory):
        return False
    sites = [i for i, entry in enumerate(path) if os.path.basename(str(entry).rstrip("/")) in ("site-packages", "dist-packages")]
    path.insert(sites[0] if sites else len(path), directory)
    return True


private_pyroute2_first()

try:
    import pyroute2
    from pyroute2 import IPRoute, NetlinkError

    HAS_PYROUTE2 = True
    PYROUTE2_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised by the missing-library test
    pyroute2 = None
    HAS_PYROUTE2 = False
    PYROUTE2_IMPORT_ERROR = traceback.format_exc()

    class NetlinkError(Exception):  # type: ignore[no-redef]
        code = 0


NETNS_RUN_DIR = "/run/netns"
# On delete these mean "already gone"; they are not failures for an idempotent module.
ABSENT_ERRNOS = frozenset({errno.ENOENT, errno.ENODEV, errno.EADDRNOTAVAIL, errno.ESRCH})

IFF_UP = 0x1


class KernelError(OverlayError):
    """The kernel refused a change; what this run had applied was rolled back."""


# IPRoute(netns=...) and the asyncio core came with 0.9.1; Debian 12's python3-pyroute2 is 0.7.2
# and fails deep inside with "unexpected keyword argument 'netns'". Tested with 0.9.7.
PYROUTE2_MIN_VERSION = (0, 9, 1)
PYROUTE2_FIX = (
    "the role overlay.vxlan.pyroute2 installs it from the controller (site.yml runs it), "
    "or install pyroute2>=%s for this Python yourself" % ".".join(map(str, PYROUTE2_MIN_VERSION))
)


def version_tuple(text: str) -> tuple:
    """'0.9.7' -> (0, 9, 7); '0.9.1rc2' -> (0, 9, 1); anything unreadable -> ()."""
    parts = []
    for piece in str(text).split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def pyroute2_problem() -> str | None:
    """None if this Python can use pyroute2, else one message naming the host, what was found,
    what is needed and the fix."""
    import sys

    need = ".".join(map(str, PYROUTE2_MIN_VERSION))
    if not HAS_PYROUTE2:
        from ansible.module_utils.basic import missing_required_lib

        return missing_required_lib("pyroute2", reason="(version %s or later): %s" % (need, PYROUTE2_FIX))
    found = getattr(pyroute2, "__version__", "unknown")
    if version_tuple(found) < PYROUTE2_MIN_VERSION:
        return "pyroute2 %s found on host %s for %s (in %s); overlay.vxlan needs pyroute2>=%s: %s" % (
            found, os.uname().nodename, sys.executable, os.path.dirname(pyroute2.__file__), need, PYROUTE2_FIX)
    return None


def require_pyroute2(module) -> None:
    problem = pyroute2_problem()
    if problem:
        module.fail_json(msg=problem, exception=PYROUTE2_IMPORT_ERROR, pyroute2_min_version=".".join(map(str, PYROUTE2_MIN_VERSION)))


def netns_path(name: str) -> str:
    return name if name.startswith("/") else os.path.join(NETNS_RUN_DIR, name)


def netns_exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


@contextmanager
def session(netns: str | None = None, field: str = "netns"):
    """One IPRoute for the whole task, opened inside `netns` if given.

    pyroute2 would *create* a missing namespace (its default flags=O_CREAT); a module that only
    uses a namespace must never do that, so we check first and pass flags=0.
    """
    if netns:
        if not netns_exists(netns):
            raise InputError(field, netns, "network namespace does not exist")
        try:
            ipr = IPRoute(netns=netns_path(netns), flags=0)
        except OSError as exc:  # e.g. a stale file under /run/netns that is not a namespace
            raise InputError(field, netns, "cannot be entered: %s" % (exc.strerror or exc)) from None
    else:
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def get_link(ipr, name: str, field: str = "name"):
    """The link message for an exact interface name, or None. `ns1` never matches `ns10`.

    The kernel's lookup by name also matches alternative names (`ip link property add ...
    altname`); a module must never act on the device behind an altname, so that is an error.
    """
    try:
        links = ipr.link("get", ifname=name)
    except NetlinkError as exc:
        if exc.code in ABSENT_ERRNOS:
            return None
        raise
    if not links:
        return None
    real = links[0].get_attr("IFLA_IFNAME")
    if real != name:
        raise InputError(field, name, "is an alternative name of %s; use the interface's own name" % real)
    return links[0]


def require_link(ipr, field: str, name: str, kind: str | None = None):
    link = get_link(ipr, name, field)
    if link is None:
        raise InputError(field, name, "no such interface%s" % (" (it is never created implicitly)" if kind else ""))
    if kind is not None and link_kind(link) != kind:
        raise InputError(field, name, "is a %s, not a %s" % (link_kind(link) or "plain device", kind))
    return link


def created_earlier(ipr, module, field: str, name: str) -> bool:
    """True in check mode when `name` is missing: a device another task of the same run creates
    first (a role builds the bridge, then the veth pairs and vxlan devices in it, then their
    tables), so check mode goes on and says so. A real run still refuses a missing device."""
    if not module.check_mode or get_link(ipr, name, field) is not None:
        return False
    module.warn("check mode: %s=%s does not exist yet; assuming an earlier task of this run creates it "
                "(a real run refuses it)" % (field, name))
    return True


def link_kind(link) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info else None


def link_info_data(link) -> dict:
    """IFLA_INFO_DATA as a plain dict of attribute name -> value (unknown attributes dropped)."""
    info = link.get_attr("IFLA_LINKINFO")
    data = info.get_attr("IFLA_INFO_DATA") if info else None
    if not data or isinstance(data, (str, bytes)):
        return {}
    return {name: value for name, value in data["attrs"] if name != "UNKNOWN"}


def link_is_up(link) -> bool:
    return bool(link["flags"] & IFF_UP)


def index_names(ipr) -> dict[int, str]:
    return {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.link("dump")}


def link_name(ipr, index: int | None) -> str | None:
    if not index:
        return None
    try:
        return ipr.link("get", index=index)[0].get_attr("IFLA_IFNAME")
    except NetlinkError:
        return None


def addresses_of(ipr, index: int) -> list[str]:
    """CIDRs on an interface, IPv6 link-local excluded (the kernel adds those by itself)."""
    result = []
    for addr in ipr.addr("dump", index=index):
        if addr["index"] != index:  # older kernels ignore the dump filter
            continue
        ip = addr.get_attr("IFA_ADDRESS") if addr["family"] == 10 else (addr.get_attr("IFA_LOCAL") or addr.get_attr("IFA_ADDRESS"))
        if addr["family"] == 10 and ip.lower().startswith("fe80:"):
            continue
        result.append("%s/%d" % (ip, addr["prefixlen"]))
    return sorted(result)


def host_has_address(ipr, ip: str) -> bool:
    for addr in ipr.addr("dump"):
        for key in ("IFA_LOCAL", "IFA_ADDRESS"):
            value = addr.get_attr(key)
            if value and value.lower() == ip.lower():
                return True
    return False


def describe_netlink_error(exc) -> str:
    code = getattr(exc, "code", 0) or getattr(exc, "errno", 0) or 0
    name = errno.errorcode.get(code, str(code))
    return "%s (%s)" % (os.strerror(code) if code else str(exc), name)


class Journal:
    """What this run changed, newest last, each with the step that undoes it.

    Modules record every successful kernel change here; on a kernel error the journal undoes
    them in reverse order, so a failed task leaves the host as it found it.
    """

    def __init__(self):
        self._steps: list[tuple[str, object]] = []

    def record(self, description: str, undo) -> None:
        self._steps.append((description, undo))

    def __len__(self) -> int:
        return len(self._steps)

    def rollback(self) -> list[str]:
        """Undo everything; return descriptions of undo steps that themselves failed."""
        failures = []
        while self._steps:
            description, undo = self._steps.pop()
            try:
                undo()
            except (NetlinkError, OSError) as exc:
                failures.append("%s: %s" % (description, describe_netlink_error(exc)))
        return failures

    def fail(self, what: str, exc) -> KernelError:
        """Roll back and build the error to raise for a kernel refusal during `what`."""
        undone = len(self._steps)
        failures = self.rollback()
        msg = "kernel refused %s: %s" % (what, describe_netlink_error(exc) if isinstance(exc, (NetlinkError, OSError)) else exc)
        if undone:
            msg += "; rolled back %d earlier change(s) of this run" % undone
        if failures:
            msg += "; ROLLBACK INCOMPLETE: %s" % "; ".join(failures)
        return KernelError(msg)


def run_module(module, body) -> None:
    """Run a module body, turning our errors into a clean fail_json (no traceback, changed=False)."""
    try:
        result = body()
    except InputError as exc:
        module.fail_json(msg=exc.msg, changed=False, field=exc.field)
    except KernelError as exc:
        module.fail_json(msg=exc.msg, changed=False)
    except NetlinkError as exc:
        module.fail_json(msg="netlink error: %s" % describe_netlink_error(exc), changed=False)
    module.exit_json(**result)
