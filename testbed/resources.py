"""What the node processes (and the harness itself) use while a run goes on: CPU, memory, disk
and network I/O, sampled with psutil from this machine (local and netns backends: the nodes
are its processes). One row per process and sample, as resources.jsonl holds them:

    time, process (node name or "generator"), pid, cpu_percent (100 = one core), rss_mb,
    read_mb / write_mb (the process's disk I/O so far), rx_mb / tx_mb (bytes received and sent
    so far on the interfaces of the process's network namespace, loopback left out: per node
    on the netns backend, the whole machine's on the local backend)
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

import psutil

from testbed.solver_plugin import solver_plugin

MB = 2**20


def node_pids(net) -> dict[str, int]:
    """The pids of a network's running nodes by node name, its running Solvers (`solver-<org>`,
    when the Solver plugin is installed), and this process as "generator"."""
    pids = {"generator": psutil.Process().pid}
    for node in net.nodes:
        proc = net.state.read_pid(node.name)
        if proc:
            pids[node.name] = proc.pid
    plugin = solver_plugin()
    if plugin is not None:
        pids.update(plugin.pids(net))
    return pids


def _namespace_traffic(pid: int) -> tuple[float, float] | None:
    """(received, sent) MB on the non-loopback interfaces of `pid`'s network namespace."""
    try:
        lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    except OSError:
        return None
    rx = tx = 0
    for line in lines:
        name, _, counters = line.partition(":")
        if name.strip() == "lo":
            continue
        fields = counters.split()
        rx, tx = rx + int(fields[0]), tx + int(fields[8])
    return round(rx / MB, 3), round(tx / MB, 3)


def sample(procs: dict[str, psutil.Process], now: float) -> list[dict]:
    """One row per process that still runs (a process seen for the first time gives its CPU share
    from the next sample on: psutil measures between two calls)."""
    rows = []
    for name, proc in procs.items():
        try:
            with proc.oneshot():
                row = {"time": now, "process": name, "pid": proc.pid, "cpu_percent": proc.cpu_percent(None),
                       "rss_mb": round(proc.memory_info().rss / MB, 1)}
                io = proc.io_counters()
                row.update(read_mb=round(io.read_bytes / MB, 3), write_mb=round(io.write_bytes / MB, 3))
        except (psutil.Error, AttributeError):
            continue
        traffic = _namespace_traffic(proc.pid)
        if traffic is not None:
            row["rx_mb"], row["tx_mb"] = traffic
        rows.append(row)
    return rows


class ResourceSampler:
    """Samples the processes `pids()` names every `interval` seconds in a thread until stopped
    (asked again each time: a node restarted mid-run is followed under its new pid)."""

    def __init__(self, pids: Callable[[], dict[str, int]], interval: float = 1.0) -> None:
        self.pids = pids
        self.interval = interval
        self.rows: list[dict] = []
        self._procs: dict[tuple[str, int], psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resource-sampler", daemon=True)

    def start(self) -> "ResourceSampler":
        self._current()
        self._thread.start()
        return self

    def _current(self) -> dict[str, psutil.Process]:
        try:
            wanted = self.pids()
        except Exception:  # noqa: BLE001 - a state file being rewritten: keep the last view
            wanted = {name: pid for name, pid in self._procs}
        current = {}
        for name, pid in wanted.items():
            proc = self._procs.get((name, pid))
            if proc is None:
                try:
                    proc = psutil.Process(pid)
                    proc.cpu_percent(None)  # starts the measurement
                except psutil.Error:
                    continue
                self._procs[(name, pid)] = proc
                continue  # sampled from the next round on
            current[name] = proc
        return current

    def sample_now(self) -> list[dict]:
        """One round of samples (for a caller with its own loop, e.g. a gevent one)."""
        return sample(self._current(), time.time())

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.rows += self.sample_now()

    def stop(self) -> list[dict]:
        self.close()
        return self.rows

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
