"""Where node IPC sockets go: a short private directory per network, refused when it is not ours."""

from __future__ import annotations

import os
import stat

import pytest

from testbed.errors import StateError
from testbed.state import MAX_SOCKET_PATH, StateDir


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    path = tmp_path / "run"
    monkeypatch.setenv("TESTBED_RUN_DIR", str(path))
    return path


def test_socket_directory_is_private_and_per_state_root(tmp_path, run_dir):
    one, other = StateDir(tmp_path / "a" / "net"), StateDir(tmp_path / "b" / "net")
    made = one.make_admin_dir()
    assert made.parent == run_dir and stat.S_IMODE(made.stat().st_mode) == 0o700
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert one.admin_dir != other.admin_dir  # same network name, two state roots: two directories
    assert one.admin_socket("acme-cert-v1") == made / "acme-cert-v1.ipc"
    one.remove_admin_dir()
    assert not made.exists()


def test_a_directory_others_can_enter_is_refused(tmp_path, run_dir):
    run_dir.mkdir(mode=0o755)
    os.chmod(run_dir, 0o755)
    with pytest.raises(StateError, match="not a private directory"):
        StateDir(tmp_path / "net").make_admin_dir()


def test_a_symlink_in_place_of_the_directory_is_refused(tmp_path, run_dir):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    run_dir.symlink_to(target)
    with pytest.raises(StateError, match="not a private directory"):
        StateDir(tmp_path / "net").make_admin_dir()


def test_a_socket_path_too_long_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TESTBED_RUN_DIR", str(tmp_path / ("x" * MAX_SOCKET_PATH)))
    with pytest.raises(StateError, match="longer than 107 bytes") as info:
        StateDir(tmp_path / "net").admin_socket("acme-cert-v1")
    assert "TESTBED_RUN_DIR" in info.value.hint
