"""Metrics of the harness's own processes (the load generator, the Solvers) for Prometheus, through
node-exporter's textfile collector: each process writes `<state>/monitor/<name>.prom` while a
monitor runs ('testbed monitor up' points node-exporter's `--collector.textfile.directory` there),
so no process needs a port or a scrape job of its own. Nothing is written without a monitor
directory. A Solver removes its file when it stops (a queue it no longer serves is no figure); a
load run leaves its final totals until the next run starts (Prometheus has scraped them by then).

Load (`load-<pid>.prom`):
    testbed_load_offered_total{kind}            transactions sent to a node
    testbed_load_submit_failures_total{kind}    batches a node refused in part or did not answer
    testbed_load_included_total{kind}           transactions seen in a block
    testbed_load_inclusion_latency_seconds      histogram, submit -> seen in a block
    testbed_load_target_tps                     the rate the run offers now
Solver (`solver-<org>.prom`, solver/metrics.py): its queue and delivery times.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import write_to_textfile

LATENCY_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 60.0)


class TextfileMetrics:
    """A registry written as `<directory>/<name>.prom` (atomically: node-exporter never reads half a file)."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = Path(directory)
        self.path = self.directory / f"{name}.prom"
        self.registry = CollectorRegistry()

    @property
    def active(self) -> bool:
        """A monitor directory exists: the figures are worth computing."""
        return self.directory.is_dir()

    def write(self) -> bool:
        """Write the current values; False when nothing was written: no monitor directory, or one this
        process may not write (a sandboxed Solver). The metrics are a view, never a reason to stop."""
        if not self.active:
            return False
        try:
            write_to_textfile(str(self.path), self.registry)
        except OSError:
            return False
        return True

    def close(self) -> None:
        self.path.unlink(missing_ok=True)


class LoadMetrics(TextfileMetrics):
    """The load generator's figures, fed by Locust's request events (the testbed fires one per
    submitted batch and one per transaction seen in a block: testbed/load/context.py)."""

    def __init__(self, directory: Path, submit_type: str, inclusion_type: str) -> None:
        super().__init__(directory, f"load-{os.getpid()}")
        prune_finished_runs(self.directory)
        self.submit_type, self.inclusion_type = submit_type, inclusion_type
        self.offered = Counter("testbed_load_offered", "Transactions sent to a node", ["kind"], registry=self.registry)
        self.failures = Counter("testbed_load_submit_failures", "Batches refused in part or not answered", ["kind"],
                                registry=self.registry)
        self.included = Counter("testbed_load_included", "Transactions seen in a block", ["kind"], registry=self.registry)
        self.latency = Histogram("testbed_load_inclusion_latency_seconds", "Submit to seen in a block",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.target = Gauge("testbed_load_target_tps", "The offered rate the run asks for now", registry=self.registry)

    def on_request(self, request_type: str, name: str, response_time: float, response_length: int,
                   exception=None, **_: object) -> None:
        if request_type == self.submit_type:
            kind = name.split(" x", 1)[0]
            self.offered.labels(kind).inc(response_length)
            if exception is not None:
                self.failures.labels(kind).inc()
        elif request_type == self.inclusion_type:
            self.included.labels(name).inc()
            self.latency.observe(response_time / 1000)


def prune_finished_runs(directory: Path) -> list[Path]:
    """Remove the `load-<pid>.prom` files of load processes that have ended."""
    removed = []
    for path in Path(directory).glob("load-*.prom"):
        try:
            pid = int(path.stem.split("-", 1)[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
            removed.append(path)
        except (ValueError, PermissionError):
            continue
    return removed
