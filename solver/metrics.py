"""A Solver's figures for Prometheus (node-exporter's textfile collector, see
testbed/monitoring/textfile.py), written after every tick while the network's monitor runs:

    testbed_solver_tasks{org,step}          tasks of the journal per step (the queue: the active steps)
    testbed_solver_queue{org}               tasks not finished, rejected or closed yet
    testbed_solver_finished_total{org}      tasks this process saw finished
    testbed_solver_delivery_seconds{org}    histogram, request seen -> finish mined (this process's clock)
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

from solver.journal import FINISHED, STEPS, TERMINAL
from testbed.monitoring.textfile import LATENCY_BUCKETS, TextfileMetrics


class SolverMetrics(TextfileMetrics):
    def __init__(self, directory: Path, org: str) -> None:
        super().__init__(directory, f"solver-{org}")
        self.org = org
        self.steps = Gauge("testbed_solver_tasks", "Tasks of the journal per step", ["org", "step"], registry=self.registry)
        self.queue = Gauge("testbed_solver_queue", "Tasks not closed yet", ["org"], registry=self.registry)
        self.finished = Counter("testbed_solver_finished", "Tasks seen finished", ["org"], registry=self.registry)
        self.delivery = Histogram("testbed_solver_delivery_seconds", "Request seen to finish mined", ["org"],
                                  buckets=LATENCY_BUCKETS, registry=self.registry)

    def update(self, counts: dict[str, int]) -> None:
        """The journal's counts per step (Journal.counts) after a tick; written out."""
        for step in STEPS:
            self.steps.labels(self.org, step).set(counts.get(step, 0))
        self.queue.labels(self.org).set(sum(n for step, n in counts.items() if step not in TERMINAL))
        self.write()

    def closed(self, step: str, seen_at: float | None, finished_at: float | None) -> None:
        if step == FINISHED:
            self.finished.labels(self.org).inc()
            if seen_at is not None and finished_at is not None:
                self.delivery.labels(self.org).observe(max(0.0, finished_at - seen_at))
