"""Child processes started behind a prefix (`ip netns exec NS ...`): spawn returns once the real
program runs, so the first liveness check cannot land in the prefix's exec."""

from __future__ import annotations

import sys
import time

import psutil
import pytest

from testbed.backends import process

# A prefix that, like `ip netns exec`, carries the program's argv (marker included) and execs it late.
SLOW_PREFIX = ["sh", "-c", 'sleep 0.5; exec "$@"', "sh"]


@pytest.fixture
def spawned(tmp_path):
    procs = []
    yield procs, tmp_path
    for proc in procs:
        process.kill(proc)
        process.wait_exited(proc)


def test_spawn_behind_a_prefix_returns_once_the_program_itself_runs(spawned):
    procs, tmp_path = spawned
    argv = [sys.executable, "-c", "import time; time.sleep(30)", "--tag", "test-prefixed"]
    proc = process.spawn("prefixed", argv, {}, tmp_path / "p.log", "--tag test-prefixed", prefix=SLOW_PREFIX)
    procs.append(proc)
    assert psutil.Process(proc.pid).cmdline()[0] == sys.executable
    assert process.is_alive(proc)


def test_spawn_whose_prefix_cannot_exec_the_program_returns_a_dead_process(spawned):
    _procs, tmp_path = spawned
    argv = [str(tmp_path / "no-such-program"), "--tag", "test-missing"]
    proc = process.spawn("missing", argv, {}, tmp_path / "m.log", "--tag test-missing", prefix=SLOW_PREFIX)
    assert not process.is_alive(proc)
    assert "no-such-program" in (tmp_path / "m.log").read_text()


def test_spawn_without_a_prefix_returns_at_the_first_look(spawned, monkeypatch):
    """Popen returns after the exec: the first look normally sees the program, nothing to wait for
    (a wrong test of the prefix once made every local node's start wait out the 10 s limit)."""
    procs, tmp_path = spawned
    naps = []
    monkeypatch.setattr(time, "sleep", naps.append)
    argv = [sys.executable, "-c", "import time; time.sleep(30)", "--tag", "test-plain"]
    proc = process.spawn("plain", argv, {}, tmp_path / "n.log", "--tag test-plain")
    procs.append(proc)
    # at the first look or a look later on a loaded machine; never the 10 s limit (500 naps of 20 ms)
    assert len(naps) < 5 and process.is_alive(proc), naps


def test_a_killed_child_is_reaped_at_once_and_leaves_no_zombie(spawned):
    _procs, tmp_path = spawned
    argv = [sys.executable, "-c", "import time; time.sleep(30)", "--tag", "test-killed"]
    proc = process.spawn("killed", argv, {}, tmp_path / "k.log", "--tag test-killed")
    process.kill(proc)
    assert not psutil.pid_exists(proc.pid)  # not even a zombie: its exit status was collected
    assert proc.pid not in [c.pid for c in psutil.Process().children()]


def test_an_empty_command_line_is_no_verdict_on_liveness(monkeypatch):
    """Inside execve (e.g. the Solver sandbox's `unshare` exec'ing its shell) /proc/<pid>/cmdline
    reads empty for a moment: that is a live process, not a dead one (a live test once took a
    starting Solver for one that had died). Another program under the pid is still not ours."""
    class Fake:
        def __init__(self, cmdline):
            self._cmdline = cmdline

        def status(self):
            return psutil.STATUS_RUNNING

        def cmdline(self):
            return self._cmdline

    proc = process.NodeProcess(name="solver-x", pid=424242, marker="/state/solvers/x/")
    monkeypatch.setattr(psutil, "Process", lambda pid: Fake([]))
    assert process.is_alive(proc)
    monkeypatch.setattr(psutil, "Process", lambda pid: Fake(["python", "-m", "other"]))
    assert not process.is_alive(proc)
    monkeypatch.setattr(psutil, "Process", lambda pid: Fake(["sh", "-c", "run --dir /state/solvers/x/"]))
    assert process.is_alive(proc)
