"""Process handling shared by the backends that run nodes as child processes.

A pid alone is not an identity (pids are reused), so every check also matches a marker
(the node directory) against the process's command line before signalling it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psutil

from testbed.backends.base import NodeProcess
from testbed.errors import BackendError
from testbed.poll import poll_until


def _process(proc: NodeProcess) -> psutil.Process | None:
    try:
        p = psutil.Process(proc.pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            _reap(proc.pid)
            return None
        cmdline = p.cmdline()
        if not cmdline:  # a moment inside execve (new memory, arguments not set up yet) or in exit: not a verdict
            return p
        if proc.marker not in " ".join(cmdline):
            return None
        return p
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        _reap(proc.pid)
        return None


# Children this process started, kept until reaped: a Popen dropped while its child runs makes
# Python warn "subprocess N is still running" (a node is meant to outlive the call that started it).
_children: dict[int, subprocess.Popen] = {}


def _reap(pid: int) -> None:
    """Collect the exit status of our own child so it does not stay a zombie."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _children[pid]
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass


def _reap_exited() -> None:
    """Reap every child that has exited (a node that died by itself, one killed a moment ago)."""
    for pid in list(_children):
        _reap(pid)


def is_alive(proc: NodeProcess) -> bool:
    return _process(proc) is not None


def spawn(name: str, argv: list[str], env: dict[str, str], log_path: Path, marker: str,
          prefix: list[str] | None = None) -> NodeProcess:
    """Start a long-running process in its own session (it outlives the CLI call that started it)."""
    _reap_exited()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **env}
    with open(log_path, "ab") as log:
        try:
            child = subprocess.Popen([*(prefix or []), *argv], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=full_env, start_new_session=True)
        except OSError as exc:
            raise BackendError(f"cannot start node {name}: {exc.strerror}: {argv[0]}") from None
    _children[child.pid] = child
    proc = NodeProcess(name=name, pid=child.pid, marker=marker)
    _wait_exec(proc, child, prefix or [])
    return proc


def _wait_exec(proc: NodeProcess, child: subprocess.Popen, prefix: list[str], timeout: float = 10.0) -> None:
    """Return once the process runs the program itself (no longer the prefix) with the marker in
    its command line, or has exited.

    With a prefix (`ip netns exec NS program ...`), the prefix runs first and then execs the
    program under the same pid; the marker is already in the prefix's command line, and in
    the moment of that second exec /proc/<pid>/cmdline can read empty on a loaded machine.
    A liveness check in that moment would take the process for dead, so wait for the program.
    """
    def runs_program() -> bool:
        if child.poll() is not None:
            return True
        try:
            cmdline = psutil.Process(proc.pid).cmdline()
        except psutil.Error:
            return False
        return bool(cmdline) and (not prefix or cmdline[:len(prefix)] != prefix) and proc.marker in " ".join(cmdline)

    poll_until(runs_program, timeout=timeout, interval=0.02)


def run_to_completion(name: str, argv: list[str], env: dict[str, str], log_path: Path, timeout: float,
                      prefix: list[str] | None = None) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            result = subprocess.run([*(prefix or []), *argv], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env={**os.environ, **env}, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BackendError(f"node {name}: '{Path(argv[0]).name} {' '.join(argv[1:2])}' took longer than {timeout:.0f}s",
                               hint=f"see {log_path}") from None
        except OSError as exc:
            raise BackendError(f"cannot run {argv[0]} for node {name}: {exc.strerror}") from None
    if result.returncode != 0:
        raise BackendError(f"node {name}: '{Path(argv[0]).name} {argv[-2] if len(argv) > 1 else ''}' failed with exit code {result.returncode}",
                           hint=f"see {log_path}")


def send(proc: NodeProcess, sig: signal.Signals) -> bool:
    p = _process(proc)
    if p is None:
        return False
    try:
        p.send_signal(sig)
    except psutil.NoSuchProcess:
        return False
    return True


def stop(proc: NodeProcess, timeout: float = 20.0) -> None:
    p = _process(proc)
    if p is None:
        return
    try:
        p.send_signal(signal.SIGCONT)  # a paused process cannot handle SIGTERM
        p.terminate()
        p.wait(timeout=timeout)
    except psutil.TimeoutExpired:
        p.kill()
        _wait_gone(proc)
    except psutil.NoSuchProcess:
        pass
    _reap(proc.pid)


def kill(proc: NodeProcess) -> None:
    if send(proc, signal.SIGKILL):
        _wait_gone(proc)


def _wait_gone(proc: NodeProcess, timeout: float = 10.0) -> None:
    child = _children.get(proc.pid)
    if child is not None:  # our own child: wait for its exit status, so no zombie stays behind
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            raise BackendError(f"node {proc.name} (pid {proc.pid}) did not exit after SIGKILL") from None
        _children.pop(proc.pid, None)
        return

    def gone() -> bool:
        _reap(proc.pid)
        return not psutil.pid_exists(proc.pid) or _process(proc) is None

    poll_until(gone, timeout=timeout, interval=0.05,
               error=lambda: BackendError(f"node {proc.name} (pid {proc.pid}) did not exit after SIGKILL"))


def wait_exited(proc: NodeProcess, timeout: float = 10.0) -> None:
    """Wait until the pid has really exited (gone or a zombie, then reaped).

    `_process` stops matching once a dying process is a zombie, which may be before the
    kernel has closed its sockets; a restart right after a kill needs more.
    """
    def exited() -> bool:
        try:
            p = psutil.Process(proc.pid)
            if p.status() == psutil.STATUS_ZOMBIE:
                if p.ppid() != os.getpid():
                    return True  # another process's child: its parent reaps it, nothing of it runs
                _reap(proc.pid)  # a multi-threaded process is reapable only once every thread is gone
        except psutil.NoSuchProcess:
            return True
        return False

    poll_until(exited, timeout=timeout, interval=0.05,
               error=lambda: BackendError(f"{proc.name} (pid {proc.pid}) did not exit within {timeout:.0f}s"))
