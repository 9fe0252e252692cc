# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Endpoint records: validation, etcd keys and values, the file backend's map, and the trust
policy (which host may claim which VTEP and which VM address).

Every record the agent takes in, from the etcd range and watch and from the file backend,
passes `validate_record` (one door): sizes are capped before anything is parsed, and whatever
JSON, the address parsers or _validate raise for a hostile input (ValueError, RecursionError,
TypeError, UnicodeError, ...) comes out as a RecordError, which the daemon logs and skips.

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
HOST_RE = re.compile(r"[A-Za-z0-9_.-]{1,253}")  # fullmatch only: `$` would let "h2\n" through
# Size caps, checked before any parsing. A record's JSON is about 120 bytes and its key
# prefix + ~80: anything near these caps is garbage or an attack, not an endpoint.
MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 4096
# What the parsers may raise on hostile input besides their own errors: a NUL in an address
# (ValueError from inet_pton), deep nesting (RecursionError from json), huge integers
# (ValueError), wrong types (TypeError, AttributeError), undecodable text (UnicodeError).
PARSE_ERRORS = (ValueError, RecursionError, TypeError, AttributeError, KeyError, IndexError, UnicodeError,
                OverflowError)
REASON_MAX = 300


class RecordError(ValueError):
    """A store record that must not be installed; the message says why."""


class UntrustedRecord(RecordError):
    """A well-formed record the inventory does not vouch for (unknown host, another host's VTEP
    or VM address)."""


class UnservedRecord(RecordError):
    """A well-formed record for a VNI this agent does not serve: not kept, not an error."""


def _short(text: str) -> str:
    return text if len(text) <= REASON_MAX else text[:REASON_MAX - 3] + "..."


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


def _size(value) -> int:
    """Bytes of a key or value as stored (text as UTF-8; a parsed map entry as compact JSON)."""
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    return len(json.dumps(value, separators=(",", ":"), default=repr))


def validate_record(data, key: str | None = None, prefix: str | None = None, policy=None) -> Endpoint:
    """THE door for every record (etcd range/watch with its key, file map entry without):
    dict or JSON text/bytes -> Endpoint, or RecordError naming the fault. Nothing else escapes.

    Sizes are checked first (MAX_KEY_BYTES, MAX_VALUE_BYTES), then the value is parsed and
    checked field by field with the collection's _validate; with a key, the key is parsed too
    and must agree with the value. With a policy (TrustPolicy), the record must also be for a
    served VNI (UnservedRecord) and vouched for by the inventory (UntrustedRecord).
    """
    try:
        endpoint = _sized_parse(data, key, prefix)
        if policy is not None:
            policy.check(endpoint)
        return endpoint
    except RecordError as exc:
        if len(str(exc)) > REASON_MAX:
            raise type(exc)(_short(str(exc))) from None
        raise
    except PARSE_ERRORS as exc:
        raise RecordError(_short("malformed (%s: %s)" % (type(exc).__name__, exc))) from None


def _sized_parse(data, key, prefix) -> Endpoint:
    if key is not None:
        if not isinstance(key, str):
            raise RecordError("key is not text")
        if _size(key) > MAX_KEY_BYTES:
            raise RecordError("key over %d bytes" % MAX_KEY_BYTES)
    if data is None:
        raise RecordError("no value")
    if _size(data) > MAX_VALUE_BYTES:
        raise RecordError("value over %d bytes" % MAX_VALUE_BYTES)
    if key is None:
        return _parse_record(data)
    return _parse_keyed(prefix or "", key, data)


def _parse_record(data) -> Endpoint:
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
    if not isinstance(host, str) or (host and not HOST_RE.fullmatch(host)):
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
    if not HOST_RE.fullmatch(parts[2]):
        raise RecordError("key host: malformed %r" % parts[2])
    return vni, ip, parts[2]


def validate_keyed_record(prefix: str, key: str, value) -> Endpoint:
    """An etcd key/value -> Endpoint; the key must agree with the value (validate_record's door)."""
    return validate_record(value, key=key, prefix=prefix)


def _parse_keyed(prefix: str, key: str, value) -> Endpoint:
    vni, ip, host = parse_key(prefix, key)
    endpoint = _parse_record(value)
    if (endpoint.vni, endpoint.ip) != (vni, ip):
        raise RecordError("key says vni %d ip %s, value says vni %d ip %s" % (vni, ip, endpoint.vni, endpoint.ip))
    if endpoint.host and endpoint.host != host:
        raise RecordError("key says host %s, value says host %s" % (host, endpoint.host))
    return Endpoint(endpoint.vni, endpoint.ip, endpoint.mac, endpoint.vtep, host)


def iter_endpoint_map(data):
    """The file backend's map ({"endpoints": [...]} or a bare list) -> (position, entry) pairs,
    each entry still to pass validate_record; RecordError if the map itself has no list."""
    items = data.get("endpoints", []) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise RecordError("endpoints: is not a list")
    return [("endpoints[%d]" % position, item) for position, item in enumerate(items)]


def map_key(endpoint: Endpoint) -> str:
    """The file backend's source key of a record (what an etcd key says: vni, ip, host)."""
    return "%d/%s/%s" % (endpoint.vni, endpoint.ip, endpoint.host)


def parse_endpoint_map(data, policy=None) -> tuple[dict, list]:
    """The file backend's map -> ({key: (Endpoint, rev)}, errors), every entry through
    validate_record (and the policy, if given).

    Later entries win over earlier ones for the same (vni, ip, host); rejected entries are
    reported in `errors` as (position, reason) and left out.
    """
    try:
        items = iter_endpoint_map(data)
    except RecordError as exc:
        return {}, [tuple(str(exc).split(": ", 1))]
    records: dict = {}
    errors = []
    for position, (where, item) in enumerate(items):
        try:
            endpoint = validate_record(item, policy=policy)
        except RecordError as exc:
            errors.append((where, str(exc)))
            continue
        records[map_key(endpoint)] = (endpoint, position + 1)
    return records, errors


class TrustPolicy:
    """Which well-formed records this agent believes: the inventory's word, from the config's
    `inventory` (rendered by the role from the overlay group) and its served networks.

    A record is kept only if its VNI is served here (else UnservedRecord), its host is an
    inventory host and its vtep one of that host's VTEP addresses, and neither its IP nor its
    MAC belongs in the inventory to another host (else UntrustedRecord). Whoever can write the
    store can then no longer point a VM's address at a VTEP of their choosing.
    """

    def __init__(self, vnis, vteps: dict, endpoints=()):
        self.vnis = frozenset(vnis)
        self.vteps = {host: frozenset(addresses) for host, addresses in vteps.items()}
        self.ip_owner: dict = {}
        self.mac_owner: dict = {}
        for item in endpoints:
            self.ip_owner[(item["vni"], item["ip"])] = item["host"]
            if item.get("mac"):
                self.mac_owner[(item["vni"], item["mac"])] = item["host"]

    @classmethod
    def from_config(cls, config: dict) -> TrustPolicy:
        """The policy of a validated configuration; this host's own VTEP is always its own."""
        inventory = config.get("inventory") or {}
        vteps = {host: set(addresses) for host, addresses in (inventory.get("vteps") or {}).items()}
        vteps.setdefault(config["host"], set()).add(config["vtep"])
        return cls([net["vni"] for net in config["networks"]], vteps, inventory.get("endpoints") or ())

    def check(self, endpoint: Endpoint) -> None:
        if endpoint.vni not in self.vnis:
            raise UnservedRecord("vni %d is not served here" % endpoint.vni)
        allowed = self.vteps.get(endpoint.host)
        if allowed is None:
            raise UntrustedRecord("host %r is not an inventory host" % endpoint.host)
        if endpoint.vtep not in allowed:
            raise UntrustedRecord("vtep %s is not a VTEP of host %s (inventory: %s)"
                                  % (endpoint.vtep, endpoint.host, ", ".join(sorted(allowed))))
        for what, owners, value in (("ip", self.ip_owner, endpoint.ip), ("mac", self.mac_owner, endpoint.mac)):
            owner = owners.get((endpoint.vni, value))
            if owner is not None and owner != endpoint.host:
                raise UntrustedRecord("%s %s in vni %d belongs to host %s in the inventory, not %s"
                                      % (what, value, endpoint.vni, owner, endpoint.host))
