"""A short Locust load run on the live four-org network, checked against the chain and its own report.

The load runs in its own process (`python -m testbed.load`, as `testbed bench` does): Locust
monkey-patches with gevent, which must not happen inside pytest.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from testbed.chain.rpc import RpcClient
from testbed.metrics import percentile
from testbed.pytest_plugin import consortium_network
from testbed.report import render
from testbed.report.data import RunData
from testbed.report.summary import step_figures

from .conftest import NETWORKS, assert_no_process, node_pids, spec_with

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def four_orgs(testbed_home):
    """Its own network (name and ports), so load never shares a chain with another module's test."""
    with consortium_network(spec_with(NETWORKS / "four-orgs.yaml", name="it-load", port_base=24800),
                            progress=print) as network:
        started = node_pids(network)
        yield network
    assert_no_process(started)


def _load(network, profile: str, **options):
    request = {"command": "load", "network": network.name, "profile": profile,
               "options": {"batch_size": 10, "per_user_rate": 25.0, "drain_timeout": 20.0, **options}}
    proc = subprocess.run([sys.executable, "-m", "testbed.load", json.dumps(request)], capture_output=True, text=True,
                          timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    return Path(answer["run_dir"]), answer["result"]


@pytest.fixture(scope="module")
def load_run(four_orgs):
    return _load(four_orgs, "steps:60,150:6")


@pytest.fixture(scope="module")
def distributed_run(four_orgs):
    """The same kind of run from a Locust master and two worker processes."""
    return _load(four_orgs, "constant:160:8", per_user_rate=20.0, workers=2)


def _assert_nothing_lost(txs) -> None:
    """Correctness, not speed: every transaction a node accepted reached a block before the drain
    ended (none dropped), and a refused one carries the node's reason. How many were offered and
    included per second is the benchmarks' business (benchmarks/load_transfers.py)."""
    statuses = Counter(t["status"] for t in txs)
    print(f"load: {len(txs)} offered, {dict(statuses)}")
    assert statuses["included"] > 0 and not statuses["dropped"], \
        (statuses, sorted({t["error"] for t in txs if t["status"] == "dropped"}))


def _assert_nonces_count_included(network, txs) -> None:
    """Independent check from the chain: a fresh load account's nonce counts its included transactions."""
    included_by_sender = Counter(t["sender"] for t in txs if t["status"] == "included")
    with RpcClient(network.nodes[0].rpc_url) as rpc:
        on_chain = {s: int(rpc.call("eth_getTransactionCount", s, "latest"), 16) for s in {t["sender"] for t in txs}}
    assert on_chain == {s: included_by_sender.get(s, 0) for s in on_chain}


def test_every_transaction_is_accounted_for(four_orgs, load_run):
    run_dir, result = load_run
    txs = RunData.load(run_dir).txs
    assert 0 < len(txs) <= (60 + 150) * 6 + 4 * 10, f"{len(txs)} transactions for the profile steps:60,150:6"
    statuses = Counter(t["status"] for t in txs)
    assert set(statuses) <= {"included", "rejected", "dropped"}, statuses
    assert all(t["error"] for t in txs if t["status"] != "included"), "a failed tx without a reason"
    _assert_nothing_lost(txs)
    _assert_nonces_count_included(four_orgs, txs)
    assert result["agreement"]["agreed"], result["agreement"]


def test_distributed_run_merges_every_worker_into_one_record(four_orgs, distributed_run):
    run_dir, result = distributed_run
    data = RunData.load(run_dir)
    txs = data.txs
    # the master holds no account: every row came from a worker, and they add up to the offered profile
    assert 0 < len(txs) <= 160 * 8 + 2 * 10, f"{len(txs)} transactions for 160 tx/s x 8 s"
    _assert_nothing_lost(txs)
    assert len({t["hash"] for t in txs}) == len(txs), "a row was merged twice"
    _assert_nonces_count_included(four_orgs, txs)
    assert all(t["included_time"] >= t["submit_time"] for t in txs if t["status"] == "included")
    # both workers ran users (their own CPU samples came with their rows), and all four orgs' nodes got load
    processes = {r["process"] for r in data.resources}
    assert {"generator", "generator-w0", "generator-w1"} <= processes, processes
    assert {t["org"] for t in txs} == {o.name for o in four_orgs.spec.organizations}
    window = [b for b in data.blocks if b["number"] in {t["included_block"] for t in txs}]
    assert sum(b["load_txs"] for b in window) == Counter(t["status"] for t in txs)["included"]
    assert result["submitted"] == len(txs) and result["agreement"]["agreed"], result["agreement"]
    # the worker processes the master started are gone, their logs kept in the run directory
    workers = json.loads((run_dir / "workers.json").read_text())
    assert len(workers["started_pids"]) == 2 and workers["master"].startswith("127.0.0.1:")
    assert_no_process(workers["started_pids"])
    assert sorted(p.name for p in run_dir.glob("worker-*.log")) == ["worker-0.log", "worker-1.log"]


def test_tps_from_blocks_equals_included_count(load_run):
    run_dir, result = load_run
    data = RunData.load(run_dir)
    first = min(t["submit_time"] for t in data.txs)
    window_blocks = [b for b in data.blocks if b["timestamp"] >= int(first)]
    numbers = {b["number"] for b in window_blocks}
    included = [t for t in data.txs if t["status"] == "included"]
    assert {t["included_block"] for t in included} <= numbers
    # nothing else runs on this network during the load: every tx in those blocks is a load tx
    assert sum(b["tx_count"] for b in window_blocks) == len(included) == sum(b["load_txs"] for b in window_blocks)
    start, end = result["start"], result["end"]
    in_window = [b for b in data.blocks if start <= b["timestamp"] < end]
    assert result["included_tps"] == round(sum(b["load_txs"] for b in in_window) / (end - start), 2)
    assert step_figures(data, start, end)["included_tps"] == result["included_tps"]


def test_percentiles_from_raw_log_match_report(load_run):
    run_dir, _ = load_run
    txs = RunData.load(run_dir).txs
    latencies = [t["included_time"] - t["submit_time"] for t in txs if t["status"] == "included"]
    summary = json.loads((run_dir / "summary.json").read_text())
    for q in (50, 95, 99):
        assert summary["latency"][f"p{q}_s"] == pytest.approx(percentile(latencies, q), abs=1e-9)
    page = (run_dir / "report.html").read_text()
    assert f"{percentile(latencies, 95):.3f}" in page


def test_report_renders_from_run_dir_alone(load_run, tmp_path, monkeypatch):
    run_dir, _ = load_run
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    (copy / "report.html").unlink()
    (copy / "summary.json").unlink()

    def no_network(*args, **kwargs):
        raise AssertionError("the report tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    html_path, json_path = render(copy)
    assert html_path.read_text().count("<svg") == 6  # head lag, resources, throughput, latency, histogram, blocks
    assert json.loads(json_path.read_text()) == json.loads((run_dir / "summary.json").read_text()) | {
        "run": copy.name}
