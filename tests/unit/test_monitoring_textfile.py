"""The harness's own metrics for Prometheus (node-exporter's textfile collector): the load
generator's offered/included counters and latency histogram, fed by the same Locust events the
testbed fires; a Solver's queue and delivery times; nothing written without a monitor directory."""

from __future__ import annotations

import os
import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families

from solver.journal import ACCEPTED, FINISHED, NEW, REJECTED
from solver.metrics import SolverMetrics
from testbed.monitoring.textfile import LoadMetrics, prune_finished_runs


def samples(path) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_load_metrics_count_what_the_request_events_say(tmp_path):
    metrics = LoadMetrics(tmp_path, "eth_sendRawTransaction", "inclusion")
    metrics.on_request("eth_sendRawTransaction", "transfer x50", 12.0, 50)
    metrics.on_request("eth_sendRawTransaction", "transfer x10", 12.0, 10, exception=RuntimeError("3 of 10 rejected"))
    for ms in (400.0, 1200.0, 2600.0):
        metrics.on_request("inclusion", "transfer", ms, 0)
    metrics.on_request("something_else", "x", 1.0, 1)
    metrics.target.set(100)
    assert metrics.write() and metrics.path == tmp_path / f"load-{os.getpid()}.prom"
    got = samples(metrics.path)
    assert got[("testbed_load_offered_total", (("kind", "transfer"),))] == 60
    assert got[("testbed_load_submit_failures_total", (("kind", "transfer"),))] == 1
    assert got[("testbed_load_included_total", (("kind", "transfer"),))] == 3
    assert got[("testbed_load_inclusion_latency_seconds_bucket", (("le", "0.5"),))] == 1
    assert got[("testbed_load_inclusion_latency_seconds_bucket", (("le", "2.0"),))] == 2
    assert got[("testbed_load_inclusion_latency_seconds_count", ())] == 3
    assert got[("testbed_load_target_tps", ())] == 100


def test_nothing_is_written_without_a_monitor_directory(tmp_path):
    metrics = LoadMetrics(tmp_path / "monitor", "submit", "inclusion")
    assert metrics.write() is False and not (tmp_path / "monitor").exists()


def test_a_new_run_removes_the_totals_of_ended_runs_only(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"load-{int(ended.stdout)}.prom"
    alive = tmp_path / f"load-{os.getpid()}.prom"
    for path in (dead, alive):
        path.write_text("testbed_load_target_tps 0\n")
    assert prune_finished_runs(tmp_path) == [dead]
    assert alive.exists() and not dead.exists()


def test_solver_metrics_queue_and_delivery(tmp_path):
    metrics = SolverMetrics(tmp_path, "acme-cert")
    metrics.closed(FINISHED, 100.0, 102.5)
    metrics.closed(REJECTED, 100.0, None)
    metrics.update({NEW: 2, ACCEPTED: 1, FINISHED: 4, REJECTED: 1})
    got = samples(tmp_path / "solver-acme-cert.prom")
    org = ("org", "acme-cert")
    assert got[("testbed_solver_queue", (org,))] == 3
    assert got[("testbed_solver_tasks", (org, ("step", FINISHED)))] == 4
    assert got[("testbed_solver_finished_total", (org,))] == 1
    assert got[("testbed_solver_delivery_seconds_sum", (org,))] == 2.5
    metrics.close()
    assert not (tmp_path / "solver-acme-cert.prom").exists()
