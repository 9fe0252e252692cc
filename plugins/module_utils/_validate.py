# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input validation and normalisation shared by every overlay.vxlan module.

Everything here is a plain function of its arguments: no netlink, no Ansible. Each check raises
InputError naming the field and the offending value, so a module can fail with a clear message
*before* it touches the kernel. Normalised values (lower-case colon MACs, compressed IPs) are
what the modules compare against kernel state, which keeps the second run quiet.
"""

from __future__ import annotations

import ipaddress
import re
import socket

VNI_MAX = 16777215
IFNAMSIZ = 15  # the kernel's IFNAMSIZ is 16 including the terminating NUL
NETNS_NAME_MAX = 64
# Names the collection puts into paths (/run/netns/<name>) and shell commands (ip netns exec, the
# verify role's ping matrix): ASCII letters, digits, '_', '.' and '-', a letter or digit first
# (never an option such as '-n', never hidden or '..'), and no '..' anywhere. The kernel allows
# far more ('$(reboot)' is a valid interface name); the collection does not.
SAFE_NAME_RULE = "a name may have only letters, digits, '_', '.' and '-', a letter or digit first, no '..'"
_SAFE_FIRST = re.compile(r"[A-Za-z0-9]")
_SAFE_REST = re.compile(r"[A-Za-z0-9_.-]")
ZERO_MAC = "00:00:00:00:00:00"

# VXLAN encapsulation overhead: outer Ethernet 14 + outer IP (20 / 40) + UDP 8 + VXLAN 8.
VXLAN_OVERHEAD = {4: 50, 6: 70}

_MAC_PATTERNS = (
    re.compile(r"^([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})$"),
    re.compile(r"^([0-9a-f]{2})([0-9a-f]{2})\.([0-9a-f]{2})([0-9a-f]{2})\.([0-9a-f]{2})([0-9a-f]{2})$"),
    re.compile(r"^([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$"),
)


class OverlayError(Exception):
    """Base error: carries a message meant for the user, never a traceback."""

    def __init__(self, msg: str, field: str | None = None, value=None):
        super().__init__(msg)
        self.msg = msg
        self.field = field
        self.value = value


class InputError(OverlayError):
    """The task's parameters are wrong; the kernel has not been touched."""

    def __init__(self, field: str, value, reason: str):
        super().__init__("%s=%r: %s" % (field, value, reason), field, value)


def _require_text(field: str, value) -> str:
    if value is None:
        raise InputError(field, value, "is required")
    if not isinstance(value, str):
        value = str(value)
    value = value.strip()
    if not value:
        # The usual cause is a Jinja variable that rendered to nothing.
        raise InputError(field, value, "is empty (an undefined or empty variable?)")
    return value


def mac(field: str, value, *, unicast: bool = True, allow_zero: bool = False) -> str:
    """Normalise a MAC to lower-case colon form and check what kind of address it is.

    unicast: refuse group (multicast/broadcast) addresses, which can never be a VM's address.
    allow_zero: accept 00:00:00:00:00:00, which only means something as a flood-list entry.
    """
    text = _require_text(field, value).lower()
    for pattern in _MAC_PATTERNS:
        match = pattern.match(text)
        if match:
            octets = match.groups()
            break
    else:
        raise InputError(field, value, "is not a MAC address (expected six hex octets, e.g. 02:00:64:00:00:02)")
    normalised = ":".join(octets)
    if normalised == ZERO_MAC:
        if not allow_zero:
            raise InputError(field, value, "the all-zero MAC is only valid as a flood-list entry")
        return normalised
    if unicast and int(octets[0], 16) & 1:
        raise InputError(field, value, "is a multicast/broadcast MAC; a unicast MAC is needed here")
    return normalised


def _packed_ip(field: str, value, version: int | None) -> bytes:
    """Parse an address (no prefix) the way the kernel's tools do (inet_pton: strict dotted quad,
    no zone index such as %eth0) and return its network-order bytes. About 20x faster than the
    ipaddress module, which matters for tables of tens of thousands of entries."""
    text = _require_text(field, value)
    try:
        packed = socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
    except OSError:
        raise InputError(field, value, "is not an IPv4 or IPv6 address") from None
    found = 6 if len(packed) == 16 else 4
    if version is not None and found != version:
        raise InputError(field, value, "is IPv%d but IPv%d is used elsewhere in this task" % (found, version))
    return packed


def _ip_text(packed: bytes) -> str:
    # inet_ntop, not ipaddress: it is what netlink read-backs (ours and pyroute2's) produce, e.g.
    # ::ffff:1.2.3.4 stays in that form, so a desired value compares equal to the kernel's.
    return socket.inet_ntop(socket.AF_INET6 if len(packed) == 16 else socket.AF_INET, packed)


def _is_multicast(packed: bytes) -> bool:
    return packed[0] == 0xFF if len(packed) == 16 else 224 <= packed[0] <= 239


def ip_version(ip: str) -> int:
    """4 or 6 for an address already normalised by this module."""
    return 6 if ":" in ip else 4


def ip_address(field: str, value, *, version: int | None = None):
    """Parse an address (no prefix) and return an ipaddress object."""
    return ipaddress.ip_address(_packed_ip(field, value, version))


def unicast_ip(field: str, value, *, version: int | None = None) -> str:
    """A normalised unicast address; `version` (4/6) refuses the other family."""
    packed = _packed_ip(field, value, version)
    if _is_multicast(packed) or not any(packed) or packed == b"\xff\xff\xff\xff":
        raise InputError(field, value, "must be a unicast address")
    return _ip_text(packed)


def multicast_ip(field: str, value, *, version: int | None = None) -> str:
    packed = _packed_ip(field, value, version)
    if not _is_multicast(packed):
        raise InputError(field, value, "is not a multicast address (224.0.0.0/4 or ff00::/8)")
    return _ip_text(packed)


def interface_cidr(field: str, value) -> str:
    """An address with its prefix, as put on an interface (host bits are kept)."""
    text = _require_text(field, value)
    if "/" not in text:
        raise InputError(field, value, "needs a prefix length, e.g. 100.0.0.2/24")
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise InputError(field, value, "is not an address with prefix (CIDR)") from None
    if "%" in text:
        raise InputError(field, value, "a zone index (%...) is not part of an interface address")
    if iface.ip.is_multicast or iface.ip.is_unspecified:
        raise InputError(field, value, "must be a unicast address")
    return str(iface)


def unsafe_name(text: str) -> str | None:
    """What breaks the safe-name rule (SAFE_NAME_RULE) in `text`, in words, or None."""
    if not _SAFE_FIRST.fullmatch(text[:1]):
        return "starts with %r" % text[:1]
    bad = [c for c in text if not _SAFE_REST.fullmatch(c)]
    if bad:
        return "contains %r" % bad[0]
    if ".." in text:
        return "contains '..'"
    return None


def ifname(field: str, value) -> str:
    """Check an interface name the way the kernel's dev_valid_name() does, but with a message,
    and then the collection's safe-name rule."""
    text = _require_text(field, value)
    if len(text) > IFNAMSIZ:
        raise InputError(field, value, "is %d characters; interface names are at most %d" % (len(text), IFNAMSIZ))
    if text in (".", ".."):
        raise InputError(field, value, "is not a valid interface name")
    bad = [c for c in text if c in "/:%" or c.isspace()]
    if bad:
        # '%' too: the kernel would take "tap%d" as a template and create tap0 instead.
        raise InputError(field, value, "contains %r; interface names cannot contain '/', ':', '%%' or whitespace" % bad[0])
    problem = unsafe_name(text)
    if problem:
        raise InputError(field, value, "%s (%s)" % (problem, SAFE_NAME_RULE))
    return text


def namespace_name(field: str, value) -> str:
    """A named network namespace: a file under /run/netns, so a name, not a path."""
    text = _require_text(field, value)
    if text.startswith("/"):
        raise InputError(field, value, "is not a valid namespace name: a path; a namespace is a name under /run/netns")
    problem = unsafe_name(text) or ("is %d characters" % len(text) if len(text) > NETNS_NAME_MAX else None)
    if problem:
        raise InputError(field, value, "is not a valid namespace name: %s (%s, at most %d characters)"
                         % (problem, SAFE_NAME_RULE, NETNS_NAME_MAX))
    return text


def netns_name(field: str, value) -> str:
    """A named network namespace (a file under /run/netns) or an absolute path to a pinned one
    (each part of the path a safe name: no '..', no whitespace)."""
    text = _require_text(field, value)
    if not text.startswith("/"):
        return namespace_name(field, value)
    for part in text[1:].split("/"):
        problem = ("its part %r %s" % (part, unsafe_name(part)) if unsafe_name(part) else None) if part else "it has an empty part"
        if problem:
            raise InputError(field, value, "is not a valid namespace path: %s (in each part %s)" % (problem, SAFE_NAME_RULE))
    return text


def int_range(field: str, value, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise InputError(field, value, "must be an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InputError(field, value, "must be an integer") from None
    if not low <= number <= high:
        raise InputError(field, value, "must be between %d and %d" % (low, high))
    return number


def vni(field: str, value) -> int:
    return int_range(field, value, 1, VNI_MAX)


def port(field: str, value) -> int:
    return int_range(field, value, 1, 65535)


def no_duplicates(field: str, keys) -> None:
    """Fail on the first key seen twice (keys are already-normalised tuples or strings)."""
    seen = set()
    for index, key in enumerate(keys):
        if key in seen:
            raise InputError("%s[%d]" % (field, index), key, "is listed twice")
        seen.add(key)
