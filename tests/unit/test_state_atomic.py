"""Atomic writes: the whole new file or the old one, with the modes the callers rely on."""

from __future__ import annotations

import json
import os
import stat

import pytest

from testbed.state import write_bytes_atomic, write_json_atomic, write_text_atomic


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode_of(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_text_replaces_the_file_and_leaves_no_temporary_behind(tmp_path, umask_022):
    path = tmp_path / "deep" / "report.html"
    write_text_atomic(path, "first")
    write_text_atomic(path, "zweite Fassung \u2713")
    assert path.read_text(encoding="utf-8") == "zweite Fassung \u2713"
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]
    assert mode_of(path) == 0o644  # like open(): 0o666 less the umask


def test_json_is_the_owners_only(tmp_path, umask_022):
    path = tmp_path / "status.json"
    write_json_atomic(path, {"b": 1, "a": [1, 2]})
    assert path.read_text() == json.dumps({"a": [1, 2], "b": 1}, indent=2, sort_keys=True) + "\n"
    assert mode_of(path) == 0o600


def test_bytes_with_an_explicit_mode_and_fsync(tmp_path, umask_022):
    path = tmp_path / "7.bin"
    write_bytes_atomic(path, b"\x00\x01", 0o600, fsync=True)
    assert path.read_bytes() == b"\x00\x01"
    assert mode_of(path) == 0o600


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    path = tmp_path / "monitor.json"
    path.write_text("old")

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["monitor.json"]
