"""Prometheus, real: `testbed monitor up` on a live network scrapes every node's metrics endpoint,
the chain exporter and node-exporter (every target up == 1), and a query gives back the included
transactions of a load run; `testbed down` takes the monitor with the network."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from testbed.chain.rpc import RpcClient
from testbed.monitoring import prometheus
from testbed.pytest_plugin import consortium_network
from testbed.report import render
from testbed.report.data import RunData
from testbed.scenario.engine import run_scenario

from .conftest import NETWORKS, assert_no_process, node_pids, spec_with, wait_for

pytestmark = pytest.mark.integration


def api(url: str, path: str, **params) -> dict:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{url}/api/v1/{path}{query}", timeout=10) as answer:
        return json.loads(answer.read())["data"]


def transactions_counted(url: str) -> float | None:
    result = api(url, "query", query="testbed_block_transactions_total")["result"]
    return float(result[0]["value"][1]) if result else None


def settled(url: str, quiet: float = 4.0) -> float:
    """The transaction counter once it has not moved for `quiet` seconds (only empty blocks)."""
    value, since = transactions_counted(url), time.monotonic()
    deadline = since + 60
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = transactions_counted(url)
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return value
    raise AssertionError("the transaction counter never settled")


def head(net) -> int:
    with RpcClient(net.nodes[0].rpc_url) as rpc:
        return int(rpc.call("eth_blockNumber"), 16)


def transactions_in_blocks(net, first: int, last: int) -> int:
    with RpcClient(net.nodes[0].rpc_url) as rpc:
        blocks = rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in range(first, last + 1)])
    return sum(len(b["transactions"]) for b in blocks)


def prometheus_rows_of_every_node(net, resources: list[dict]) -> dict[str, list[dict]]:
    """The rows Prometheus gave for each node (asserting each node has some, with its CPU and memory)."""
    by_node = {n.name: [r for r in resources if r["process"] == n.name and r.get("source") == "prometheus"]
               for n in net.nodes}
    for name, rows in by_node.items():
        assert len(rows) >= 5, (name, rows)
        assert any(r.get("cpu_percent", 0) > 0 for r in rows), (name, rows)  # a validator sealing blocks
        assert all(r.get("heap_mb", 0) > 1 for r in rows if "heap_mb" in r) and any("heap_mb" in r for r in rows)
    return by_node


def test_prometheus_scrapes_every_target_and_counts_a_runs_transactions(testbed_home, tmp_path):
    with consortium_network(spec_with(NETWORKS / "four-orgs.yaml", name="it-monitor", port_base=31400),
                            progress=print) as net:
        pids = node_pids(net)
        # a scenario with `monitor: prometheus` on a network without a monitor: it starts one for the
        # run, reads every node's series from it and stops it again
        scenario = tmp_path / "watched.yaml"
        scenario.write_text(f"name: watched\nnetwork: {NETWORKS / 'four-orgs.yaml'}\nmonitor: prometheus\n"
                            "settle: 1s\nsteps:\n  - wait: 8s\n  - wait: {blocks: 2}\n")
        result = run_scenario(scenario, network=net, runs_dir=tmp_path / "runs", progress=print)
        assert result.status == "passed", result.error
        assert prometheus.read_record(net) is None  # the run's own monitor is gone with it
        resources = RunData.load(result.run_dir).resources
        prometheus_rows_of_every_node(net, resources)
        assert any(r["process"].startswith("machine ") and r.get("used_mb", 0) > 0 for r in resources)
        assert any(r["process"] == "generator" and r.get("source", "psutil") == "psutil" for r in resources)
        html_path, json_path = render(result.run_dir)
        summary = json.loads(json_path.read_text())
        assert summary["cpu"]["sources"] == ["prometheus", "psutil"]
        assert all(summary["cpu"]["per_process"][n.name]["heap_mb_max"] > 1 for n in net.nodes)
        assert "From Prometheus" in html_path.read_text()

        record = prometheus.up(net, print)
        pids += [p["pid"] for p in record["processes"].values()]
        url = record["url"]
        jobs = {"nodes_debug_metrics_prometheus": 4, "testbed": 1, "node_exporter": 1}  # .ci/run installs both

        def all_up() -> bool:
            try:
                targets = api(url, "targets")["activeTargets"]
            except OSError:
                return False
            return all(t["health"] == "up" for t in targets) and \
                {j: sum(t["labels"]["job"] == j for t in targets) for j in jobs} == jobs

        assert wait_for(all_up, timeout=60), api(url, "targets")["activeTargets"]
        up = api(url, "query", query="up")["result"]
        assert len(up) == 6 and all(r["value"][1] == "1" for r in up), up
        heads = api(url, "query", query="testbed_node_head")["result"]
        assert sorted(r["metric"]["node"] for r in heads) == sorted(n.name for n in net.nodes)

        assert wait_for(lambda: transactions_counted(url) is not None, timeout=30)
        before, first = settled(url), head(net)
        request = {"command": "load", "network": net.name, "profile": "constant:40:5",
                   "options": {"batch_size": 10, "per_user_rate": 20.0, "drain_timeout": 15.0, "monitor": "prometheus"}}
        proc = subprocess.run([sys.executable, "-m", "testbed.load", json.dumps(request)], capture_output=True,
                              text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr[-2000:]
        load_run = RunData.load(Path(json.loads(proc.stdout.strip().splitlines()[-1])["run_dir"]))
        txs = load_run.txs
        prometheus_rows_of_every_node(net, load_run.resources)  # the running monitor's, which stays up
        assert prometheus.running(net) is not None
        included = sum(t["status"] == "included" for t in txs)
        assert included > 100
        # the generator's own figures (node-exporter's textfile collector): what the run recorded

        def generator_figure(name: str) -> float | None:
            result = api(url, "query", query=f"sum(max_over_time({name}[5m]))")["result"]
            return float(result[0]["value"][1]) if result else None

        assert wait_for(lambda: generator_figure("testbed_load_included_total") == included, timeout=20), \
            (generator_figure("testbed_load_included_total"), included)
        assert generator_figure("testbed_load_offered_total") == len(txs)  # every row was sent in a batch
        assert generator_figure("testbed_load_inclusion_latency_seconds_count") == included
        # the exporter counts every transaction of every block: the run's and the funding of its
        # accounts, exactly what the chain holds between the two quiet moments
        after, last = settled(url), head(net)
        assert after - before == transactions_in_blocks(net, first + 1, last) >= included, (after - before, included)
        running = sorted(net.running_nodes())
        assert sorted(net.down(purge=True)) == running  # and the monitor with it
    assert_no_process(pids)
