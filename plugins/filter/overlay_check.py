# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of playbooks/validate.yml: the whole inventory checked once on the controller, and
each host's underlay against what the host has. The work is in module_utils/_overlay_map.py
(plain functions, unit-tested); these only read hostvars into plain Python values.
Docs: vxlan_overlay_check.yml and vxlan_underlay_check.yml next to this file.
"""

from __future__ import annotations

import hashlib
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
            entry[var] = read_value(lambda: host_vars[var])  # noqa: B023 - called at once
        hosts[str(name)] = entry
    return hosts


def read_value(get):
    """`get()` as a plain Python value, or an `Unreadable` naming why it cannot be evaluated."""
    try:
        return _plain(get())
    except Exception as exc:  # noqa: BLE001 - an undefined variable, a failing filter...: named, not a traceback
        return overlay_map.Unreadable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _fingerprint(value) -> str:
    """A short digest of a variable's plain value (the same value gives the same digest)."""
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=repr).encode("utf-8")).hexdigest()[:16]  # noqa: S324 - not security


def vxlan_overlay_check(hostvars, overlay_hosts, endpoint_map_file=None) -> dict:
    from_file, file_problems = read_map_file(endpoint_map_file, overlay_hosts) if endpoint_map_file else ({}, [])
    read = read_hosts(hostvars, overlay_hosts, from_file)
    built, problems = overlay_map.build(read)
    # What each host's variables were when the map was built (a digest per variable read from
    # hostvars), so a role taking its share later in the run can tell that the host's own
    # variables changed since (a set_fact between plays) instead of configuring the old values.
    built["read"] = {host: {var: _fingerprint(read[host].get(var)) for var in overlay_map.VARIABLES if var not in from_file.get(host, {})}
                     for host in built.get("hosts", {})}
    problems = file_problems + problems
    return {"map": built, "problems": problems, "message": overlay_map.report(problems) if problems else ""}


def _changed_since_built(built, host: str, current) -> list[str]:
    """The host's variables whose value differs from the one the map was built from, each as
    `name=value` (the value shortened)."""
    recorded = built.get("read", {}).get(host, {})
    now = read_hosts({host: current}, [host])[host]
    changed = []
    for var in sorted(recorded):
        if _fingerprint(now.get(var)) != recorded[var]:
            shown = json.dumps(now.get(var), sort_keys=True, default=repr)
            changed.append("%s=%s" % (var, shown if len(shown) <= 400 else shown[:397] + "..."))
    return changed


def vxlan_host_share(built, host, remote=True, current=None) -> list:
    """One host's share of the map (what vxlan_mesh returns for it), in O(the host's networks'
    endpoints): the roles take it instead of a pass over every host's hostvars per host.
    remote=False: only the host's own endpoints (the endpoint role needs nothing else, and a
    fleet's remote entries are what costs Ansible to carry from task to task).
    current: the host's variables now (hostvars[inventory_hostname]); if any the map was built
    from has changed since, fail naming them rather than hand out a share of the old values."""
    host = str(host)
    hosts = built.get("hosts", {}) if isinstance(built, Mapping) else {}
    if host not in hosts:
        raise AnsibleFilterError("host %s is not one of the overlay hosts of the endpoint map (is it in the overlay group, "
                                 "with a vxlan_underlay_ip?)" % host)
    changed = _changed_since_built(built, host, current) if current is not None else []
    if changed:
        raise AnsibleFilterError(
            "host %s: %s changed after this run's endpoint map was built (playbooks/validate.yml, or the first role of the "
            "run), which holds the value before; build the map again after changing a variable mid-run: "
            "ansible.builtin.include_role name=overlay.vxlan.endpoint tasks_from=map.yml on the overlay hosts"
            % (host, "; ".join(changed)))
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
