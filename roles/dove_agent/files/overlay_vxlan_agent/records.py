# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Endpoint records: validation, etcd keys and values, the file backend's map.

MACs, IPs and VNIs are normalised by the collection's own `_validate` (the code the modules
compare kernel state with), so a record, a module parameter and a kernel read-back of the same
address are the same text: `::ffff:1.2.3.4` stays `::ffff:1.2.3.4` (inet_ntop), which is also
what pyroute2 prints for the kernel's NDA_DST.
"""

from __future__ import annotations

import ipaddress
import json
import re

from ansible_collections.overlay.vxlan.plugins.module_utils import _validate

VNI_MAX = _validate.VNI_MAX
ZERO_MAC = _validate.ZERO_MAC
HOST_RE = re.compile(r"^[A-Za-z0-9_.-]{1,253}$")


class RecordError(ValueError):
    """A store record that must not be installed; the message says why."""


class Endpoint(tuple):
    """One VM endpoint: (vni, ip, mac, vtep, host). Immutable, hashable, comparable."""

    __slots__ = ()
    _fields = ("vni", "ip", "mac", "vtep", "host")

    def __new__(cls, vni, ip, mac, vtep, host=""):
        return tuple.__new__(cls, (vni, ip, mac, vtep, host))

    vni = property(lambda self: self[0])
    ip = property(lambda self: self[1])
    mac = property(lambda self: self[2])
    vtep = property(lambda self: self[3])
    host = property(lambda self: self[4])

    def as_dict(self) -> dict:
        return {name: self[index] for index, name in enumerate(self._fields)}  # (zip(strict=) is 3.10+)

    def __repr__(self):
        return "Endpoint(vni=%d, ip=%s, mac=%s, vtep=%s, host=%s)" % self


def _checked(check, field: str, value, kinds: tuple, kind_name: str):
    """One of _validate's checks on a record field; its InputError as a RecordError."""
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise RecordError("%s: not %s: %r" % (field, kind_name, value))
    try:
        return check(field, value)
    except _validate.InputError as exc:
        raise RecordError(exc.msg) from None


def normalize_mac(value, field: str = "mac") -> str:
    """Lower-case colon form of a unicast, non-zero MAC (_validate.mac); RecordError otherwise."""
    return _checked(_validate.mac, field, value, (str,), "a string")


def normalize_ip(value, field: str = "ip") -> str:
    """inet_ntop text of a unicast IPv4/IPv6 address (_validate.unicast_ip); RecordError otherwise."""
    return _checked(_validate.unicast_ip, field, value, (str,), "a string")


def normalize_vni(value, field: str = "vni") -> int:
    """A VNI 1..16777215 (_validate.vni); integers or their text only (not 1.5, not True)."""
    return _checked(_validate.vni, field, value, (int, str), "an integer")


def validate_record(data) -> Endpoint:
    """A store record (dict or JSON text/bytes) -> Endpoint, or RecordError naming the fault."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise RecordError("value is not UTF-8") from None
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise RecordError("value is not JSON (%s)" % exc) from None
    if not isinstance(data, dict):
        raise RecordError("value is not a JSON object")
    missing = [name for name in ("vni", "ip", "mac", "vtep") if name not in data]
    if missing:
        raise RecordError("missing field(s): %s" % ", ".join(missing))
    host = data.get("host", "")
    if host is None:
        host = ""
    if not isinstance(host, str) or (host and not HOST_RE.match(host)):
        raise RecordError("host: malformed %r" % (host,))
    ip = normalize_ip(data["ip"], "ip")
    vtep = normalize_ip(data["vtep"], "vtep")
    if ipaddress.ip_address(vtep).is_loopback:
        raise RecordError("vtep: loopback address %r" % data["vtep"])
    return Endpoint(normalize_vni(data["vni"]), ip, normalize_mac(data["mac"]), vtep, host)


def record_key(prefix: str, endpoint: Endpoint) -> str:
    """The etcd key of a record: <prefix>/endpoints/<vni>/<ip>/<host>."""
    return "%s/endpoints/%d/%s/%s" % (prefix.rstrip("/"), endpoint.vni, endpoint.ip, endpoint.host)


def record_value(endpoint: Endpoint) -> str:
    return json.dumps(endpoint.as_dict(), sort_keys=True, separators=(",", ":"))


def parse_key(prefix: str, key: str):
    """(vni, ip, host) from an etcd key, or RecordError."""
    base = prefix.rstrip("/") + "/endpoints/"
    if not key.startswith(base):
        raise RecordError("key outside %s" % base)
    parts = key[len(base):].split("/")
    if len(parts) != 3 or not all(parts):
        raise RecordError("key is not <vni>/<ip>/<host>")
    vni = normalize_vni(parts[0], "key vni")
    ip = normalize_ip(parts[1], "key ip")
    if not HOST_RE.match(parts[2]):
        raise RecordError("key host: malformed %r" % parts[2])
    return vni, ip, parts[2]


def validate_keyed_record(prefix: str, key: str, value) -> Endpoint:
    """An etcd key/value -> Endpoint; the key must agree with the value."""
    vni, ip, host = parse_key(prefix, key)
    endpoint = validate_record(value)
    if (endpoint.vni, endpoint.ip) != (vni, ip):
        raise RecordError("key says vni %d ip %s, value says vni %d ip %s" % (vni, ip, endpoint.vni, endpoint.ip))
    if endpoint.host and endpoint.host != host:
        raise RecordError("key says host %s, value says host %s" % (host, endpoint.host))
    return Endpoint(endpoint.vni, endpoint.ip, endpoint.mac, endpoint.vtep, host)


def parse_endpoint_map(data) -> tuple[dict, list]:
    """The file backend's map ({"endpoints": [...]} or a bare list) -> ({key: (Endpoint, rev)}, errors).

    Later entries win over earlier ones for the same (vni, ip, host); malformed entries are
    reported in `errors` as (position, reason) and left out.
    """
    if isinstance(data, dict):
        items = data.get("endpoints", [])
    else:
        items = data
    if not isinstance(items, list):
        return {}, [("endpoints", "is not a list")]
    records: dict = {}
    errors = []
    for position, item in enumerate(items):
        try:
            endpoint = validate_record(item)
        except RecordError as exc:
            errors.append(("endpoints[%d]" % position, str(exc)))
            continue
        records["%d/%s/%s" % (endpoint.vni, endpoint.ip, endpoint.host)] = (endpoint, position + 1)
    return records, errors
