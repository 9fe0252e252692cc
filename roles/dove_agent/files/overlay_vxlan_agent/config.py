# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent's configuration file: defaults, and validation that names the first bad field."""

from __future__ import annotations

import json
import urllib.parse

from overlay_vxlan_agent.records import HOST_RE, RecordError, normalize_ip, normalize_mac, normalize_vni

DEFAULT_CONFIG = {
    "host": None,
    "vtep": None,
    "backend": "etcd",
    "networks": [],
    "local_endpoints": [],
    "etcd": {
        "endpoints": ["http://127.0.0.1:2379"],
        "prefix": "/overlay-vxlan",
        "lease_ttl": 10,
        "timeout": 3.0,
        "ca_cert": None,
        "cert": None,
        "key": None,
        "api_path": "auto",
    },
    "file": {"path": "/etc/overlay-vxlan/endpoints.json", "poll_interval": 0.2},
    "announce": True,
    "interest_ttl": 300,
    "metrics_file": "/run/overlay-vxlan-agent/metrics.json",
    "metrics_interval": 1.0,
    "log_level": "info",
}


class ConfigError(ValueError):
    pass


def load_config(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except OSError as exc:
        raise ConfigError("cannot read %s: %s" % (path, exc.strerror)) from None
    except ValueError as exc:
        raise ConfigError("%s is not JSON: %s" % (path, exc)) from None
    return validate_config(raw)


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
    if not isinstance(config["host"], str) or not HOST_RE.match(config["host"] or ""):
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
    elif not config["file"]["path"]:
        raise ConfigError("file.path: required for the file backend")
    if str(config["log_level"]).lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("log_level: debug, info, warning or error")
    return config
