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
from testbed.network import Network
from testbed.report.data import RunData

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


def test_prometheus_scrapes_every_target_and_counts_a_runs_transactions(testbed_home):
    net = Network.create(spec_with(NETWORKS / "four-orgs.yaml", name="it-monitor", port_base=31400), progress=print)
    pids = node_pids(net)
    try:
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
                   "options": {"batch_size": 10, "per_user_rate": 20.0, "drain_timeout": 15.0}}
        proc = subprocess.run([sys.executable, "-m", "testbed.load", json.dumps(request)], capture_output=True,
                              text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr[-2000:]
        txs = RunData.load(Path(json.loads(proc.stdout.strip().splitlines()[-1])["run_dir"])).txs
        included = sum(t["status"] == "included" for t in txs)
        assert included > 100
        # the exporter counts every transaction of every block: the run's and the funding of its
        # accounts, exactly what the chain holds between the two quiet moments
        after, last = settled(url), head(net)
        assert after - before == transactions_in_blocks(net, first + 1, last) >= included, (after - before, included)
    finally:
        running = sorted(net.running_nodes())
        assert sorted(net.down(purge=True)) == running  # and the monitor with it
        assert_no_process(pids)
