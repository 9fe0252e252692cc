"""The record file on the host (_record): written whole or not at all, read back checked.

Plain functions on files under pytest's tmp_path (no kernel, no Ansible). The module and the
boot restore that use them are tested against a real kernel in tests/modules/test_overlay_state.py.
"""

from __future__ import annotations

import errno
import os
import stat

import pytest

from ansible_collections.overlay.vxlan.plugins.module_utils import _record

OPTIONS = {"linux_bridge": frozenset({"name", "mtu", "netns"})}
GOOD = b'{"format": 1, "resources": {"linux_bridge": [{"name": "br1", "mtu": 1450, "netns": null}]}}'


def test_write_is_a_private_file_flushed_then_renamed_then_the_directory_flushed(tmp_path, monkeypatch):
    target = tmp_path / "state" / "state.json"
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        info = os.fstat(fd)
        # What is on disk at each flush: the file's bytes, then the directory.
        synced.append(("dir", None) if stat.S_ISDIR(info.st_mode) else ("file", os.pread(fd, info.st_size, 0)))
        if stat.S_ISDIR(info.st_mode):
            assert os.path.samestat(info, os.stat(target.parent))
            assert target.read_bytes() == GOOD, "the directory was flushed before the rename"
        else:
            assert not target.exists(), "the file was renamed into place before it was flushed"
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    _record.write(str(target), GOOD)
    assert synced == [("file", GOOD), ("dir", None)]
    assert target.read_bytes() == GOOD
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(target.parent) == ["state.json"], "a temporary file was left"
    monkeypatch.setattr(os, "fsync", real_fsync)
    _record.write(str(tmp_path / "state" / "restore.py"), b"print()\n", 0o644)
    assert stat.S_IMODE((tmp_path / "state" / "restore.py").stat().st_mode) == 0o644


def test_a_write_that_fails_part_way_leaves_the_old_record_whole(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    target.write_bytes(GOOD)

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        _record.write(str(target), b'{"format": 1, "resources": {}}')
    assert target.read_bytes() == GOOD
    assert os.listdir(tmp_path) == ["state.json"], "the temporary file was left"


def test_load_tells_missing_from_damaged(tmp_path):
    assert _record.load(str(tmp_path / "none.json"), 1, OPTIONS) is None
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(_record.RecordError, match=r"dir\.json cannot be read \(Is a directory\)$"):
        _record.load(str(tmp_path / "dir.json"), 1, OPTIONS)
    (tmp_path / "state.json").write_bytes(GOOD[:-20])
    with pytest.raises(_record.RecordError) as err:
        _record.load(str(tmp_path / "state.json"), 1, OPTIONS)
    assert err.value.path == str(tmp_path / "state.json")
    assert err.value.msg.startswith("%s is not valid JSON (" % (tmp_path / "state.json")) and "torn or damaged" in err.value.msg


def test_exact_for_the_restore_at_least_for_pruning():
    """The restore runs the items as they are: exactly the module's options. Pruning reads only
    what identifies an item, so a record of another version (an option more or less) still serves."""
    newer = GOOD.replace(b'"mtu": 1450', b'"mtu": 1450, "stp": false')
    with pytest.raises(_record.RecordError, match=r"has a resources\.linux_bridge\[0\] with unknown stp$"):
        _record.parse("state.json", newer, 1, OPTIONS, exact=True)
    assert _record.parse("state.json", newer, 1, {"linux_bridge": frozenset({"name", "netns"})}, exact=False)
    older = GOOD.replace(b'"mtu": 1450, ', b"")
    with pytest.raises(_record.RecordError, match=r"has a resources\.linux_bridge\[0\] without mtu$"):
        _record.parse("state.json", older, 1, OPTIONS, exact=True)
    assert _record.parse("state.json", older, 1, {"linux_bridge": frozenset({"name", "netns"})}, exact=False)
    with pytest.raises(_record.RecordError, match=r"without name, netns$"):
        _record.parse("state.json", b'{"format": 1, "resources": {"linux_bridge": [{}]}}', 1,
                      {"linux_bridge": frozenset({"name", "netns"})}, exact=False)
