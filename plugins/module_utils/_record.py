# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The record on the host (state.json): written whole or not at all, and checked when read.

Written to a temporary file in the same directory, flushed to disk, renamed over the old one,
then the directory itself flushed: after a crash or a power cut the file is the old record or
the new one, never a mix, and never empty.

Read by two kinds of callers, both of which must not take a damaged record for an empty one:
the boot restore (which would then restore nothing, or half) and overlay_state (whose pruning
compares the record with the inventory: "nothing recorded" would forget what to remove). So an
empty, torn or otherwise unreadable record raises RecordError, naming the file and what is
wrong; the caller stops before it changes anything. Nothing here imports Ansible or pyroute2.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile

from ansible_collections.overlay.vxlan.plugins.module_utils._validate import OverlayError

RECORD_MODE = 0o600


class RecordError(OverlayError):
    """The record exists but cannot be used as it is; the message names the file and why."""

    def __init__(self, path: str, reason: str):
        super().__init__("%s %s" % (path, reason), "path", path)
        self.path = path
        self.reason = reason


def write(target: str, data: bytes, mode: int = RECORD_MODE) -> None:
    """`target` holds `data` (with `mode`) or, if this fails part-way, what it held before."""
    directory = os.path.dirname(target)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    # The rename itself is durable only once the directory is.
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def mode_of(path: str) -> int | None:
    """Permission bits of `path`, or None if it is not there."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None


def parse(path: str, data: bytes, fmt: int, options: dict[str, frozenset], exact: bool) -> dict:
    """The record in `data` (read from `path`), checked: a JSON object of format `fmt` whose
    `resources` maps names of `options` to lists of objects. With `exact`, each object has
    exactly its resource's options (what overlay_state writes: every option, defaults filled
    in; the boot restore, without Ansible, runs nothing else); without, at least them."""
    if not data.strip():
        raise RecordError(path, "is empty (%d bytes): a write that never finished, or a file system that lost it" % len(data))
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RecordError(path, "is not UTF-8 text (byte %d of %d): damaged" % (exc.start, len(data))) from None
    except ValueError as exc:
        raise RecordError(path, "is not valid JSON (%s; %d bytes): torn or damaged" % (exc, len(data))) from None
    if not isinstance(document, dict):
        raise RecordError(path, "holds a JSON %s, not a record (an object with format and resources)" % type(document).__name__)
    if document.get("format") != fmt:
        raise RecordError(path, "has format %r; this code reads format %d" % (document.get("format"), fmt))
    resources = document.get("resources")
    if not isinstance(resources, dict):
        raise RecordError(path, "has no resources object (resources=%r)" % (resources,))
    for name, items in resources.items():
        where = "resources.%s" % name
        if name not in options:
            raise RecordError(path, "lists %s, which is none of %s" % (where, ", ".join(options)))
        if not isinstance(items, list):
            raise RecordError(path, "has a %s that is not a list" % where)
        for index, item in enumerate(items):
            where = "resources.%s[%d]" % (name, index)
            if not isinstance(item, dict):
                raise RecordError(path, "has a %s that is not an object" % where)
            missing = sorted(options[name] - set(item))
            extra = sorted(set(item) - options[name]) if exact else []
            if missing or extra:
                raise RecordError(path, "has a %s %s" % (where, " and ".join(
                    text for text in ("without %s" % ", ".join(missing) if missing else "",
                                      "with unknown %s" % ", ".join(extra) if extra else "") if text)))
    return document


def load(path: str, fmt: int, options: dict[str, frozenset], exact: bool = True) -> dict | None:
    """The checked record (parse()), or None if there is no file at `path`."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RecordError(path, "cannot be read (%s)" % (exc.strerror or exc)) from None
    return parse(path, data, fmt, options, exact)
