# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of playbooks/validate.yml: the whole inventory checked once on the controller, and
each host's underlay against what the host has. The work is in module_utils/_overlay_map.py
(plain functions, unit-tested); these only read hostvars into plain Python values.
Docs: vxlan_overlay_check.yml and vxlan_underlay_check.yml next to this file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import yaml
from jinja2 import Undefined

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # plain unit tests without Ansible
    AnsibleFilterError = ValueError  # type: ignore[misc,assignment]

from ansible_collections.overlay.vxlan.plugins.module_utils import _overlay_map as overlay_map


class _NotEvaluated(Exception):
    pass


def _undefined_reason(value) -> str:
    # ansible-core 2.19 hands a filter an undefined value (a Marker) instead of raising; its
    # message names the variable.
    for name, call in (("_as_message", True), ("_undefined_message", False)):
        try:
            read = getattr(value, name)
            return str(read() if call else read)
        except Exception:  # noqa: BLE001, S112 - try the next way of reading it
            continue
    return "an undefined value"


def _plain(value):
    """Ansible's (lazy, tagged) containers and strings as plain Python values. Iterating
    evaluates every template inside, so an undefined variable surfaces here, per variable."""
    if isinstance(value, Undefined):
        raise _NotEvaluated(_undefined_reason(value))
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


# What a host may take from vxlan_endpoint_map_file instead of its own variables.
FILE_VARIABLES = ("vxlan_underlay_ip", "vxlan_endpoints")


def read_map_file(path: str, overlay_hosts) -> tuple[dict, list[str]]:
    """{host: {vxlan_underlay_ip, vxlan_endpoints}} from the file, and its problems.

    Why a file: a fleet's 10,000 endpoints as 1,000 host_vars lists cost Ansible's inventory
    loader and hostvars templating tens of seconds; read here as plain JSON/YAML they cost a
    fraction of a second, and only this run-once check reads them."""
    path = str(path)
    try:
        with open(path, encoding="utf-8") as handle:
            if path.endswith(".json"):
                data = json.load(handle)
            else:
                data = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    except (OSError, ValueError, yaml.YAMLError) as exc:
        return {}, ["vxlan_endpoint_map_file=%r: cannot be read: %s" % (path, str(exc).splitlines()[0] if str(exc) else exc)]
    if not isinstance(data, dict):
        return {}, ["vxlan_endpoint_map_file=%r: must map host names to {vxlan_underlay_ip, vxlan_endpoints}, not %s"
                    % (path, type(data).__name__)]
    members, problems, result = {str(h) for h in overlay_hosts}, [], {}
    for host, entry in data.items():
        where = "vxlan_endpoint_map_file=%r, host %s" % (path, host)
        if str(host) not in members:
            problems.append("%s: is not in the overlay group; add it to the inventory or remove it from the file" % where)
        elif not isinstance(entry, dict) or set(entry) - set(FILE_VARIABLES):
            problems.append("%s: must be a dict with only %s, not %r" % (where, " and ".join(FILE_VARIABLES), entry))
        else:
            result[str(host)] = entry
    return result, problems


def read_hosts(hostvars, overlay_hosts, from_file: dict | None = None) -> dict:
    """{host: {variable: value}} for the variables the overlay uses; one pass over hostvars.
    A variable that is not set is left out (build() applies the roles' defaults); one the
    endpoint map file gives for the host is taken from there, and hostvars' is not read."""
    hosts = {}
    from_file = from_file or {}
    for name in overlay_hosts:
        host_vars = hostvars[name]
        entry = dict(from_file.get(str(name), {}))
        for var in overlay_map.VARIABLES:
            if var in entry or var not in host_vars:
                continue
            try:
                entry[var] = _plain(host_vars[var])
            except Exception as exc:  # noqa: BLE001 - an undefined variable, a failing filter...: named, not a traceback
                entry[var] = overlay_map.Unreadable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        hosts[str(name)] = entry
    return hosts


def vxlan_overlay_check(hostvars, overlay_hosts, endpoint_map_file=None) -> dict:
    from_file, file_problems = read_map_file(endpoint_map_file, overlay_hosts) if endpoint_map_file else ({}, [])
    built, problems = overlay_map.build(read_hosts(hostvars, overlay_hosts, from_file))
    problems = file_problems + problems
    return {"map": built, "problems": problems, "message": overlay_map.report(problems) if problems else ""}


def vxlan_host_share(built, host, remote=True) -> list:
    """One host's share of the map (what vxlan_mesh returns for it), in O(the host's networks'
    endpoints): the roles take it instead of a pass over every host's hostvars per host.
    remote=False: only the host's own endpoints (the endpoint role needs nothing else, and a
    fleet's remote entries are what costs Ansible to carry from task to task)."""
    host = str(host)
    hosts = built.get("hosts", {}) if isinstance(built, Mapping) else {}
    if host not in hosts:
        raise AnsibleFilterError("host %s is not one of the overlay hosts of the endpoint map (is it in the overlay group, "
                                 "with a vxlan_underlay_ip?)" % host)
    share = overlay_map.host_share(_plain(built), host)
    if not remote:
        for net in share:
            net.update(remote_endpoints=[], foreign_endpoints=[], flood=[], fdb=[], neigh=[])
    return share


def vxlan_underlay_check(built, host, interfaces) -> list:
    if str(host) not in built.get("hosts", {}):
        return []  # not one of the validated overlay hosts: nothing is asked of it
    # Only this host's entry is read: converting the whole map (every endpoint of the fleet)
    # for each host would make this check O(N) per host.
    return overlay_map.underlay_problems({"hosts": {str(host): _plain(built["hosts"][str(host)])}}, str(host), _plain(interfaces))


class FilterModule:
    def filters(self):
        return {"vxlan_overlay_check": vxlan_overlay_check, "vxlan_underlay_check": vxlan_underlay_check,
                "vxlan_host_share": vxlan_host_share}
