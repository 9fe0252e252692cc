# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent's configuration file: defaults, and validation that names the first bad field."""

from __future__ import annotations

import json
import os
import re
import stat
import urllib.parse

from overlay_vxlan_agent.records import HOST_RE, RecordError, normalize_ip, normalize_mac, normalize_vni

DEFAULT_CONFIG = {
    "host": None,
    "vtep": None,
    "backend": "etcd",
    "networks": [],
    "local_endpoints": [],
    # Who is believed (records.TrustPolicy): vteps = {host: [VTEP address, ...]} of every
    # overlay host, endpoints = [{vni, ip, mac, host}] the inventory places on a host.
    "inventory": {"vteps": None, "endpoints": []},
    "max_records_per_vni": 16384,
    "etcd": {
        "endpoints": ["http://127.0.0.1:2379"],
        "prefix": "/overlay-vxlan",
        "lease_ttl": 10,
        "timeout": 3.0,
        "ca_cert": None,
        "cert": None,
        "key": None,
        "api_path": "auto",
        # etcd authentication: the user, and a file holding its password (never the password
        # itself in this file, which is world-readable): load_config adds "password", a Secret
        "user": None,
        "password_file": None,
    },
    "file": {"path": "/etc/overlay-vxlan/endpoints.json", "poll_interval": 0.2},
    "announce": True,
    "interest_ttl": 300,
    "metrics_file": "/run/overlay-vxlan-agent/metrics.json",
    "metrics_interval": 1.0,
    "log_level": "info",
}


# An etcd user name as the agent sends it: visible characters, no spaces or control characters.
USER_RE = re.compile(r"[!-~]{1,128}")
MAX_PASSWORD_BYTES = 4096


class ConfigError(ValueError):
    pass


class Secret:
    """The etcd password: never in a repr, a log line or an exception text (reveal() gives it)."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self):
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other):
        return isinstance(other, Secret) and other._value == self._value

    __hash__ = None


def load_config(path: str) -> dict:
    """Read and validate the configuration file, and the password file it names (also on SIGHUP)."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except OSError as exc:
        raise ConfigError("cannot read %s: %s" % (path, exc.strerror)) from None
    except ValueError as exc:
        raise ConfigError("%s is not JSON: %s" % (path, exc)) from None
    config = validate_config(raw)
    etcd = config["etcd"]
    if config["backend"] == "etcd" and etcd["user"]:
        etcd["password"] = Secret(read_password(etcd["password_file"]))
    return config


def read_password(path: str) -> str:
    """The password in `path`: one line, its line end stripped. Refused when every user of the
    host may read (or write) the file: it lets its holder write this host's records."""
    field = "etcd.password_file"
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError("%s: %s is not a regular file" % (field, path))
            if info.st_mode & (stat.S_IROTH | stat.S_IWOTH):
                raise ConfigError("%s: %s is open to every user (mode %04o): make it 0600, owned by the agent's user"
                                  % (field, path, stat.S_IMODE(info.st_mode)))
            data = handle.read(MAX_PASSWORD_BYTES + 1)
    except OSError as exc:
        raise ConfigError("%s: cannot read %s: %s" % (field, path, exc.strerror)) from None
    if len(data) > MAX_PASSWORD_BYTES:
        raise ConfigError("%s: %s is over %d bytes (it should hold one password)" % (field, path, MAX_PASSWORD_BYTES))
    try:
        password = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ConfigError("%s: %s is not UTF-8 text" % (field, path)) from None
    if not password:
        raise ConfigError("%s: %s is empty" % (field, path))
    if "\n" in password or "\r" in password:
        raise ConfigError("%s: %s holds more than one line" % (field, path))
    return password


def validate_config(raw) -> dict:
    """Merge defaults and check every field; ConfigError names the first bad one."""
    if not isinstance(raw, dict):
        raise ConfigError("configuration is not a JSON object")
    config = json.loads(json.dumps(DEFAULT_CONFIG))
    for key, value in raw.items():
        if key not in config:
            raise ConfigError("unknown option %r" % key)
        if isinstance(config[key], dict):
            if not isinstance(value, dict):
                raise ConfigError("%s: must be an object" % key)
            unknown = set(value) - set(config[key])
            if unknown:
                raise ConfigError("%s: unknown option(s) %s" % (key, ", ".join(sorted(unknown))))
            config[key].update(value)
        else:
            config[key] = value
    if not isinstance(config["host"], str) or not HOST_RE.fullmatch(config["host"] or ""):
        raise ConfigError("host: required, letters/digits/._- only")
    try:
        config["vtep"] = normalize_ip(config["vtep"] or "", "vtep")
    except RecordError as exc:
        raise ConfigError(str(exc)) from None
    if config["backend"] not in ("etcd", "file"):
        raise ConfigError("backend: must be etcd or file, not %r" % config["backend"])
    if not isinstance(config["networks"], list) or not config["networks"]:
        raise ConfigError("networks: at least one network is required")
    seen_vni = set()
    for position, net in enumerate(config["networks"]):
        field = "networks[%d]" % position
        if not isinstance(net, dict) or not net.get("vxlan_dev"):
            raise ConfigError("%s: needs vxlan_dev" % field)
        try:
            net["vni"] = normalize_vni(net.get("vni"), field + ".vni")
        except RecordError as exc:
            raise ConfigError(str(exc)) from None
        if net["vni"] in seen_vni:
            raise ConfigError("%s: vni %d listed twice" % (field, net["vni"]))
        seen_vni.add(net["vni"])
        net.setdefault("name", str(net["vni"]))
        net.setdefault("bridge", None)
    names = {net["name"]: net["vni"] for net in config["networks"]}
    endpoints = []
    for position, ep in enumerate(config["local_endpoints"] or []):
        field = "local_endpoints[%d]" % position
        if not isinstance(ep, dict):
            raise ConfigError("%s: must be an object" % field)
        vni = ep.get("vni")
        if vni is None and ep.get("network") in names:
            vni = names[ep["network"]]
        try:
            vni = normalize_vni(vni, field + ".vni")
            ip = normalize_ip(str(ep.get("ip") or ep.get("address") or "").split("/", maxsplit=1)[0], field + ".ip")
            mac = normalize_mac(ep["mac"], field + ".mac") if ep.get("mac") else None
        except RecordError as exc:
            raise ConfigError(str(exc)) from None
        if vni not in seen_vni:
            raise ConfigError("%s: vni %d is not one of the served networks" % (field, vni))
        if mac is None and not (ep.get("namespace") and ep.get("vm_if")):
            raise ConfigError("%s: needs mac, or namespace and vm_if to read it from" % field)
        endpoints.append({"vni": vni, "ip": ip, "mac": mac, "namespace": ep.get("namespace"), "vm_if": ep.get("vm_if")})
    config["local_endpoints"] = endpoints
    config["inventory"] = _inventory(config["inventory"], seen_vni)
    limit = config["max_records_per_vni"]
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError("max_records_per_vni: a positive integer")
    etcd = config["etcd"]
    if isinstance(etcd["endpoints"], str):
        etcd["endpoints"] = [item.strip() for item in etcd["endpoints"].split(",") if item.strip()]
    if config["backend"] == "etcd":
        if not etcd["endpoints"]:
            raise ConfigError("etcd.endpoints: at least one URL is required")
        for url in etcd["endpoints"]:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError("etcd.endpoints: %r is not an http(s) URL" % url)
        if bool(etcd["cert"]) != bool(etcd["key"]):
            raise ConfigError("etcd.cert and etcd.key go together")
        schemes = {urllib.parse.urlsplit(url).scheme for url in etcd["endpoints"]}
        if len(schemes) > 1:
            # failover would otherwise fall back to plain HTTP when the https members are down
            raise ConfigError("etcd.endpoints: all http or all https, not both (%s)" % ", ".join(etcd["endpoints"]))
        if schemes == {"http"} and (etcd["ca_cert"] or etcd["cert"]):
            raise ConfigError("etcd.ca_cert / etcd.cert are set but the endpoints are plain http: use https URLs")
        if not isinstance(etcd["lease_ttl"], int) or etcd["lease_ttl"] < 2:
            raise ConfigError("etcd.lease_ttl: an integer >= 2 seconds")
        if not str(etcd["prefix"]).startswith("/"):
            raise ConfigError("etcd.prefix: must start with /")
        _credentials(etcd, schemes)
    elif not config["file"]["path"]:
        raise ConfigError("file.path: required for the file backend")
    if str(config["log_level"]).lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("log_level: debug, info, warning or error")
    return config


def _credentials(etcd: dict, schemes: set):
    """etcd.user and etcd.password_file: both or neither; the password only over TLS."""
    user, path = etcd["user"], etcd["password_file"]
    if bool(user) != bool(path):
        raise ConfigError("etcd.user and etcd.password_file go together (the user's password is read from the file)")
    if not user:
        etcd["user"] = etcd["password_file"] = None
        return
    if not isinstance(user, str) or not USER_RE.fullmatch(user):
        raise ConfigError("etcd.user: 1 to 128 visible characters, no spaces")
    if not isinstance(path, str) or not os.path.isabs(path):
        raise ConfigError("etcd.password_file: an absolute path")
    if schemes != {"https"}:
        raise ConfigError("etcd.user: the password would cross the network in clear over http: use https endpoints")


def _inventory(inventory: dict, served) -> dict:
    """The trust map: every overlay host's VTEP address(es), and which host each VM address is on."""
    vteps = inventory["vteps"]
    if not isinstance(vteps, dict) or not vteps:
        raise ConfigError("inventory.vteps: required, {host: [VTEP address, ...]} of every overlay host "
                          "(records from any other host or address are refused)")
    trusted = {}
    for host, addresses in vteps.items():
        field = "inventory.vteps.%s" % host
        if not isinstance(host, str) or not HOST_RE.fullmatch(host):
            raise ConfigError("inventory.vteps: malformed host name %r" % (host,))
        if isinstance(addresses, str):
            addresses = [addresses]
        if not isinstance(addresses, list) or not addresses:
            raise ConfigError("%s: a list of VTEP addresses" % field)
        try:
            trusted[host] = sorted({normalize_ip(address, field) for address in addresses})
        except RecordError as exc:
            raise ConfigError(str(exc)) from None
    endpoints, owner = [], {}
    items = inventory["endpoints"] or []
    if not isinstance(items, list):
        raise ConfigError("inventory.endpoints: a list of {vni, ip, mac, host}")
    for position, item in enumerate(items):
        field = "inventory.endpoints[%d]" % position
        if not isinstance(item, dict):
            raise ConfigError("%s: must be an object" % field)
        try:
            vni = normalize_vni(item.get("vni"), field + ".vni")
            ip = normalize_ip(item.get("ip"), field + ".ip")
            mac = normalize_mac(item["mac"], field + ".mac") if item.get("mac") else None
        except RecordError as exc:
            raise ConfigError(str(exc)) from None
        host = item.get("host")
        if host not in trusted:
            raise ConfigError("%s.host: %r is not one of inventory.vteps" % (field, host))
        for ident in ((vni, ip), (vni, mac)) if mac else ((vni, ip),):
            if owner.setdefault(ident, host) != host:
                raise ConfigError("%s: %s in vni %d is on host %s and on host %s" % (field, ident[1], vni, owner[ident], host))
        if vni in served:  # the other networks' VMs are never looked up here
            endpoints.append({"vni": vni, "ip": ip, "mac": mac, "host": host})
    return {"vteps": trusted, "endpoints": endpoints}
