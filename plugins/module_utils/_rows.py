# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The compact `rows` form of bridge_fdb and ip_neigh: one string per entry.

Why: a table of 10,000 dicts costs the controller (templating, per-entry suboption validation,
the echoed arguments) several seconds; 10,000 short strings, or one string of 10,000 lines,
cost a fraction of it. The rows are split here into the very dicts the `entries` form gives,
then go through the module's own validation, so both forms are judged by the same code.

    bridge_fdb: MAC DST [vni VNI] [port PORT] [via IFNAME]   (also `MAC dst DST ...`, the
                words of `bridge fdb` and of the module's own `added`/`removed`)
    ip_neigh:   IP LLADDR   (also `IP lladdr LLADDR`; `IP` alone with state=absent)
"""

from __future__ import annotations

from ansible_collections.overlay.vxlan.plugins.module_utils._validate import InputError

FDB_FORM = "MAC DST [vni VNI] [port PORT] [via IFNAME]"
NEIGH_FORM = "IP LLADDR"
_FDB_KEYS = ("vni", "port", "via")


def split_rows(value) -> list:
    """`rows` as a list: a list as given, or one string with one row per line (blank lines and
    lines starting with # are skipped)."""
    if isinstance(value, str):
        return [line for line in value.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise InputError("rows", value, "must be a list of strings or one string with one entry per line")


def _words(index: int, row, form: str) -> list[str]:
    if not isinstance(row, str):
        raise InputError("rows[%d]" % index, row, 'must be a string "%s"' % form)
    return row.split()


def fdb_rows(value) -> list[dict]:
    """Rows of bridge_fdb as entry dicts (not yet validated: validate_entries does that)."""
    result = []
    for index, row in enumerate(split_rows(value)):
        words = _words(index, row, FDB_FORM)
        if len(words) >= 3 and words[1] == "dst":
            del words[1]
        if len(words) < 2 or len(words) % 2:
            raise InputError("rows[%d]" % index, row, 'expected "%s"' % FDB_FORM)
        entry = {"mac": words[0], "dst": words[1]}
        for key, val in zip(words[2::2], words[3::2], strict=True):
            if key not in _FDB_KEYS or key in entry:
                raise InputError("rows[%d]" % index, row, 'unknown or repeated word %r; expected "%s"' % (key, FDB_FORM))
            entry[key] = val
        result.append(entry)
    return result


def neigh_rows(value) -> list[dict]:
    """Rows of ip_neigh as entry dicts (not yet validated)."""
    result = []
    for index, row in enumerate(split_rows(value)):
        words = _words(index, row, NEIGH_FORM)
        if len(words) == 3 and words[1] == "lladdr":
            del words[1]
        if len(words) not in (1, 2):
            raise InputError("rows[%d]" % index, row, 'expected "%s"' % NEIGH_FORM)
        result.append({"ip": words[0], "lladdr": words[1] if len(words) == 2 else None})
    return result
