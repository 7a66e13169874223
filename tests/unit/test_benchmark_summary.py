"""benchmarks/summarize.py: the README's figures are medians of what the benchmark scripts wrote;
the scale/WAN rows group runs by size and the consensus-cost fit recovers a known curve."""

import importlib.util
import json
import time
from pathlib import Path

import pytest

SUMMARIZE = Path(__file__).resolve().parents[2] / "benchmarks" / "summarize.py"


@pytest.fixture
def summarize(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_summarize", SUMMARIZE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    return module


def size(orgs, cpu_per_block, included, interval, agreed=True):
    return {"orgs": orgs, "one_way_delay_ms": [25, 75], "idle": {"mean_interval_s": 1.0, "node_cpu_s_per_block": cpu_per_block},
            "load": {"target_tps": 250, "included_tps_steady": included, "mean_interval_s": interval, "p95_s": 1.9},
            "agreement": {"agreed": agreed}}


def test_scale_rows_are_medians_per_size_and_the_fit_recovers_the_curve(summarize, tmp_path):
    a, b = 0.004, 0.0005
    curve = {n: a * n + b * n * n for n in (4, 8, 16)}
    runs = [{"time": time.time(), "commit": "abc", "sizes": [size(n, curve[n] * k, 250 * k, 1.0) for n in curve]}
            for k in (0.9, 1.0, 1.1)]
    runs[0]["sizes"].append({"orgs": 16, "error": "no node answers"})  # a failed size is not a figure
    (tmp_path / "scale_wan.json").write_text(json.dumps({"benchmark": "scale_wan", "runs": runs}))
    rows = summarize.scale_wan(0)
    assert [r["figure"].split()[0] for r in rows] == ["4", "8", "16"]
    assert rows[2]["included_tps_under_load"] == {"median": 250.0, "min": 225.0, "max": 275.0, "n": 3}
    fit = summarize.consensus_fit(rows)
    assert fit["a"] == pytest.approx(a, rel=1e-3) and fit["b"] == pytest.approx(b, rel=1e-3)


def test_no_fit_from_a_single_size(summarize, tmp_path):
    runs = [{"time": time.time(), "sizes": [size(4, 0.02, 250, 1.0)]}]
    (tmp_path / "scale_wan.json").write_text(json.dumps({"benchmark": "scale_wan", "runs": runs}))
    assert summarize.consensus_fit(summarize.scale_wan(0)) is None


def test_node_profile_shares_are_means_over_nodes_then_medians_over_runs(summarize, tmp_path):
    def run(evm, rpc):
        return {"time": time.time(), "rate": 800, "label": "baseline", "nodes": {
            "a": {"work_percent": {"EVM": evm, "JSON-RPC": rpc}, "activity_percent": {"block import": 50}},
            "b": {"work_percent": {"EVM": evm + 10}, "activity_percent": {"block import": 70}},  # no JSON-RPC: 0 %
            "c": {"error": "no profile"}}}
    (tmp_path / "node_profile.json").write_text(json.dumps({"runs": [run(10, 40), run(20, 60), run(30, 80)]}))
    activity, row = summarize.node_profile(0)
    assert activity["block import %"] == {"median": 60.0, "min": 60.0, "max": 60.0, "n": 3}
    assert row["EVM %"]["median"] == 25.0
    assert row["JSON-RPC %"] == {"median": 30.0, "min": 20.0, "max": 40.0, "n": 3}


def test_cti_figures_come_from_the_best_step_that_passed(summarize, tmp_path):
    def step(rate, requests, finishes):
        return {"target_tps": rate, "included_request_tps": requests, "solver_finish_tps": finishes,
                "request_plus_finish_tps": requests + finishes}
    stopped = {"time": time.time(), "network": {"client": "goquorum", "engine": "qbft"},
               "stop_reason": "included/offered 0.870 < 0.95 at 200 tx/s",
               "steps": [step(100, 93.0, 32.0), step(200, 112.0, 17.0)],
               "best": step(200, 112.0, 17.0)}  # the script's own pick: the failing step
    finished = {**stopped, "stop_reason": "reached the last step (200 tx/s)"}
    (tmp_path / "load_cti.json").write_text(json.dumps({"runs": [stopped, finished]}))
    [row] = summarize.cti(0)
    assert row["included_request_tps"] == {"median": 102.5, "min": 93.0, "max": 112.0, "n": 2}


def test_cti_rows_take_only_the_labelled_runs_with_their_solver_cpu(summarize, tmp_path, monkeypatch):
    def run(label, requests, solvers):
        step = {"target_tps": 150, "included_request_tps": requests, "solver_finish_tps": 60.0,
                "request_plus_finish_tps": requests + 60.0, "latency_s": {"p95_s": 2.4},
                "cpu": {"solvers_percent": solvers, "nodes_percent": 130.0}}
        return {"time": time.time(), "label": label, "network": {"client": "goquorum", "engine": "qbft"},
                "stop_reason": "reached the last step (150 tx/s)", "steps": [step]}
    (tmp_path / "load_cti.json").write_text(json.dumps({"runs": [run("before", 90.0, None), run("after", 137.0, 55.0)]}))
    monkeypatch.setattr(summarize, "LABEL", "after")
    [row] = summarize.cti(0)
    assert row["included_request_tps"]["median"] == 137.0 and row["included_request_tps"]["n"] == 1
    assert row["solvers_cpu_percent"]["median"] == 55.0 and row["p95_s"]["median"] == 2.4
