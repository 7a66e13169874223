"""The resource sampler on real processes: CPU, memory, disk and namespace network I/O, and a
process replaced under the same name (a node restarted) followed under its new pid."""

from __future__ import annotations

import subprocess
import sys
import time

from testbed.resources import ResourceSampler

BUSY = "import time\nend = time.time() + 30\nwhile time.time() < end: sum(range(10000))"


def test_samples_follow_each_process_and_a_restart():
    first = subprocess.Popen([sys.executable, "-c", BUSY])
    current = {"node": first.pid}
    try:
        sampler = ResourceSampler(lambda: dict(current), interval=0.2).start()
        time.sleep(1.2)
        second = subprocess.Popen([sys.executable, "-c", BUSY])
        first.kill()
        current["node"] = second.pid
        time.sleep(1.2)
        rows = sampler.stop()
    finally:
        for proc in (first, locals().get("second")):
            if proc is not None:
                proc.kill()
                proc.wait()
    pids = [r["pid"] for r in rows]
    assert first.pid in pids and second.pid in pids  # the restart is followed
    busy = [r for r in rows if r["pid"] == first.pid]
    assert max(r["cpu_percent"] for r in busy) > 20  # a busy loop shows, not a constant
    row = rows[-1]
    assert row["process"] == "node" and row["rss_mb"] > 1
    assert {"read_mb", "write_mb", "rx_mb", "tx_mb"} <= set(row)
