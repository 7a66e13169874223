"""Resource series from Prometheus (`monitor: prometheus`): the queries, the rows they become, the
choice of source per backend, the report's figures and the scenario file's shorthand. The live
test (tests/integration/test_monitoring.py) reads them from a real Prometheus."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from testbed.errors import StateError
from testbed.monitoring.resources import QUERIES, node_query, resolve, rows_from_series
from testbed.report.render import _memory
from testbed.report.summary import cpu_figures
from testbed.spec.scenario import MonitorSettings


def test_queries_are_limited_to_the_node_jobs():
    assert node_query("system_cpu_procload") == 'system_cpu_procload{job=~"nodes.*"}'
    assert node_query(QUERIES["besu"]["cpu_percent"][0]) == \
        'rate(process_cpu_seconds_total{job=~"nodes.*"}[5s]) * 100'
    assert set(QUERIES["goquorum"]) == {"cpu_percent", "heap_mb", "read_mb", "write_mb", "rx_mb", "tx_mb"}
    assert "rss_mb" in QUERIES["besu"] and "heap_mb" not in QUERIES["besu"]  # a Go heap is not an RSS


def test_range_results_become_one_row_per_process_and_time():
    series = {
        "cpu_percent": [{"metric": {"node": "a-v1"}, "values": [[100, 12.0], [101, 14.0]]},
                        {"metric": {"node": "b-v1"}, "values": [[100, 30.0]]}],
        "heap_mb": [{"metric": {"node": "a-v1"}, "values": [[100, 50.25], [102, 51.0]]}],
    }
    rows = rows_from_series(series, "{node}", {"client": "goquorum"})
    assert [(r["process"], r["time"]) for r in rows] == [("a-v1", 100.0), ("b-v1", 100.0), ("a-v1", 101.0),
                                                        ("a-v1", 102.0)]
    first = rows[0]
    assert first == {"time": 100.0, "process": "a-v1", "pid": None, "source": "prometheus", "client": "goquorum",
                     "cpu_percent": 12.0, "heap_mb": 50.25}
    assert "heap_mb" not in rows[2] and rows[3] == {**rows[3], "heap_mb": 51.0} and "cpu_percent" not in rows[3]
    machine = rows_from_series({"used_mb": [{"metric": {"instance": "127.0.0.1:9100"}, "values": [[5, 900.0]]}]},
                               "machine {instance}")
    assert machine[0]["process"] == "machine 127.0.0.1:9100" and machine[0]["used_mb"] == 900.0


def test_report_figures_name_the_memory_and_leave_the_machine_out_of_the_nodes():
    rows = [{"time": t, "process": p, "pid": None, "source": "prometheus", "cpu_percent": c, **mem}
            for t in (1.0, 2.0) for p, c, mem in (("a-v1", 20.0, {"heap_mb": 40.0 + t, "read_mb": t * 10}),
                                                  ("machine x", 150.0, {"used_mb": 900.0}))]
    rows += [{"time": 1.5, "process": "generator", "pid": 7, "cpu_percent": 5.0, "rss_mb": 60.0},
             {"time": 1.5, "process": "solver-acme", "pid": 8, "cpu_percent": 12.0, "rss_mb": 80.0},
             {"time": 1.5, "process": "solver-bravo", "pid": 9, "cpu_percent": 3.0, "rss_mb": 70.0}]
    figures = cpu_figures(rows, 0.0, 3.0)
    assert figures["nodes_percent"] == 20.0 and figures["generator_percent"] == 5.0
    assert figures["solvers_percent"] == 15.0  # the Solvers apart from the nodes
    assert figures["sources"] == ["prometheus", "psutil"]
    per = figures["per_process"]
    assert per["a-v1"]["heap_mb_max"] == 42.0 and "rss_mb_max" not in per["a-v1"] and per["a-v1"]["read_mb"] == 10.0
    assert _memory(per["a-v1"]) == "42.0 (Go heap)" and _memory(per["generator"]) == 60.0
    assert _memory(per["machine x"]) == "900.0 (machine in use)"


def _net(local: bool):
    return SimpleNamespace(name="n", backend=SimpleNamespace(local_processes=local,
                                                             resource_source="psutil" if local else "prometheus"),
                           spec=SimpleNamespace(backend="ansible"))


def test_the_source_follows_where_the_nodes_run(monkeypatch):
    assert resolve(_net(True), "auto") == "psutil"
    assert resolve(_net(True), "prometheus") == "prometheus"
    assert resolve(_net(False), "none") == "none"
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/prometheus" if name == "prometheus" else None)
    assert resolve(_net(False), "auto") == "prometheus"
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert resolve(_net(False), "auto") == "none"
    with pytest.raises(StateError, match="psutil samples processes of this machine"):
        resolve(_net(False), "psutil")
    with pytest.raises(StateError, match="one of auto, psutil, prometheus"):
        resolve(_net(True), "grafana")


def test_scenario_monitor_shorthand():
    assert MonitorSettings.model_validate("prometheus").resources == "prometheus"
    assert MonitorSettings.model_validate({"interval": 1}).resources == "auto"
    assert MonitorSettings.model_validate("none").resources == "none"
    with pytest.raises(ValueError, match="give prometheus, psutil, auto or none"):
        MonitorSettings.model_validate("grafana")


def test_a_run_without_load_reports_the_resources_of_its_whole_span(tmp_path):
    from testbed.report.data import RunData
    from testbed.report.summary import summarize
    from testbed.runs import RunDir

    run = RunDir(tmp_path)
    run.set_status("passed")
    run.write_jsonl("resources.jsonl", [{"time": 100.0 + s, "process": "a-v1", "pid": None, "source": "prometheus",
                                         "cpu_percent": 4.0 + s, "heap_mb": 30.0} for s in range(10)])
    cpu = summarize(RunData.load(tmp_path))["cpu"]
    assert cpu["per_process"]["a-v1"]["cpu_percent"] == 8.5 and cpu["sources"] == ["prometheus"]


def test_the_resources_chart_takes_rows_with_some_figures_missing():
    from testbed.report.plots import resources

    rows = [{"time": 1.0, "process": "a-v1", "heap_mb": 30.0}, {"time": 2.0, "process": "a-v1", "cpu_percent": 5.0},
            {"time": 1.0, "process": "machine x", "cpu_percent": 90.0, "used_mb": 900.0},
            {"time": 1.5, "process": "generator", "cpu_percent": 3.0, "rss_mb": 60.0}]
    svg = resources(rows)
    assert "<svg" in svg and "Go nodes via Prometheus: heap" in svg
