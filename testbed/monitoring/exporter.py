"""The testbed's Prometheus exporter: what the chain says, per node and per organization.

    python -m testbed.monitoring.exporter --network NAME --port PORT [--home DIR] [--dir MONITOR_DIR]

Serves on 127.0.0.1:PORT/metrics (prometheus_client):
- testbed_node_head{node,org}, testbed_node_peers{node,org}, testbed_node_up{node,org},
  testbed_node_head_lag_blocks{node,org} (blocks behind the highest head);
- testbed_blocks_total, testbed_block_transactions_total (counted from the blocks of one live
  node as they arrive: `increase()` over a window is the transactions included in it);
- testbed_activity{org,kind}: every Activity counter of every organization (the pedometer),
  once the CTI contracts are deployed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path

from prometheus_client import Counter
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.exposition import start_http_server

from testbed.chain.rpc import RpcClient, RpcError
from testbed.chain.sample import snapshot_all
from testbed.errors import TestbedError

log = logging.getLogger("testbed.exporter")
BLOCKS = Counter("testbed_blocks", "Blocks seen on the chain since the exporter started")
TRANSACTIONS = Counter("testbed_block_transactions", "Transactions in the blocks seen since the exporter started")


class ChainCollector:
    """Asked at every scrape: each node's head and peers, and the organizations' counters."""

    def __init__(self, net) -> None:
        self.net = net

    def collect(self):
        head = GaugeMetricFamily("testbed_node_head", "Head block number", labels=["node", "org"])
        peers = GaugeMetricFamily("testbed_node_peers", "Connected peers", labels=["node", "org"])
        up = GaugeMetricFamily("testbed_node_up", "1 if the node answers its RPC", labels=["node", "org"])
        lag = GaugeMetricFamily("testbed_node_head_lag_blocks", "Blocks behind the highest head", labels=["node", "org"])
        # every node at once, heads and peers only (no validator sets: nothing on the admin sockets)
        snaps = {s.node: s for s in snapshot_all(self.net.endpoints(), None, timeout=2)}
        heads = {n: snaps[n.name].head_number for n in self.net.nodes
                 if snaps[n.name].reachable and snaps[n.name].head_number is not None}
        for node in self.net.nodes:
            up.add_metric([node.name, node.org], 1 if node in heads else 0)
            if node in heads and snaps[node.name].peers is not None:
                peers.add_metric([node.name, node.org], snaps[node.name].peers)
        top = max(heads.values(), default=0)
        for node, number in heads.items():
            head.add_metric([node.name, node.org], number)
            lag.add_metric([node.name, node.org], top - number)
        yield from (head, peers, up, lag)
        yield from self._activity()

    def _activity(self):
        if not self.net.state.deployment_file.is_file():
            return
        from testbed.contracts import deployment_of
        from testbed.cti.client import bind
        from testbed.cti.deploy import connect
        from testbed.cti.model import Kind

        family = GaugeMetricFamily("testbed_activity", "Activity counters per organization (the pedometer)",
                                   labels=["org", "kind"])
        urls = list(self.net.endpoints(self.net.running_nodes()).values())
        if not urls:
            return
        try:
            c = bind(connect(urls, timeout=3), deployment_of(self.net))
            for org_id in range(1, c["Membership"].functions.orgCount().call() + 1):
                name = c["Membership"].functions.orgInfo(org_id).call()[0]
                for kind, value in zip(Kind, c["Activity"].functions.countsOf(org_id).call()):
                    family.add_metric([name, kind.name.lower()], int(value))
        except Exception as exc:  # noqa: BLE001 - a scrape without the counters, not a crash
            log.debug("activity not read: %s", exc)
            return
        yield family


def follow_blocks(net, stop: threading.Event, interval: float = 0.5) -> None:
    """Count blocks and their transactions as they arrive (from any node that answers)."""
    seen: int | None = None
    while not stop.is_set():
        for node in net.nodes:
            with RpcClient(node.rpc_url, timeout=3) as rpc:
                try:
                    head = int(rpc.call("eth_blockNumber"), 16)
                    if seen is None:
                        seen = head
                    for number in range(seen + 1, head + 1):
                        block = rpc.call("eth_getBlockByNumber", hex(number), False)
                        BLOCKS.inc()
                        TRANSACTIONS.inc(len(block["transactions"]))
                        seen = number
                    break
                except (RpcError, OSError, ValueError, TypeError, KeyError):
                    continue
        stop.wait(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.monitoring.exporter")
    parser.add_argument("--network", required=True)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, default=None, help="the monitor directory (names the process)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from testbed.network import Network

    try:
        net = Network.load(args.network, args.home)
    except TestbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    REGISTRY.register(ChainCollector(net))
    start_http_server(args.port, addr="127.0.0.1")
    log.info("serving http://127.0.0.1:%d/metrics for %s", args.port, net.name)
    stop = threading.Event()
    threading.Thread(target=follow_blocks, args=(net, stop), daemon=True).start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
