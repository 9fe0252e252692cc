# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of playbooks/validate.yml: the whole inventory checked once on the controller, and
each host's underlay against what the host has. The work is in module_utils/_overlay_map.py
(plain functions, unit-tested); these only read hostvars into plain Python values.
Docs: vxlan_overlay_check.yml and vxlan_underlay_check.yml next to this file.
"""

from __future__ import annotations

from collections.abc import Mapping

from jinja2 import Undefined

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


def read_hosts(hostvars, overlay_hosts) -> dict:
    """{host: {variable: value}} for the variables the overlay uses; one pass over hostvars.
    A variable that is not set is left out (build() applies the roles' defaults)."""
    hosts = {}
    for name in overlay_hosts:
        host_vars = hostvars[name]
        entry = {}
        for var in overlay_map.VARIABLES:
            if var not in host_vars:
                continue
            try:
                entry[var] = _plain(host_vars[var])
            except Exception as exc:  # noqa: BLE001 - an undefined variable, a failing filter...: named, not a traceback
                entry[var] = overlay_map.Unreadable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        hosts[str(name)] = entry
    return hosts


def vxlan_overlay_check(hostvars, overlay_hosts) -> dict:
    built, problems = overlay_map.build(read_hosts(hostvars, overlay_hosts))
    return {"map": built, "problems": problems, "message": overlay_map.report(problems) if problems else ""}


def vxlan_underlay_check(built, host, interfaces) -> list:
    if str(host) not in built.get("hosts", {}):
        return []  # not one of the validated overlay hosts: nothing is asked of it
    return overlay_map.underlay_problems(_plain(built), str(host), _plain(interfaces))


class FilterModule:
    def filters(self):
        return {"vxlan_overlay_check": vxlan_overlay_check, "vxlan_underlay_check": vxlan_underlay_check}
