"""Shared set-up for the scenario-engine tests: a fake Network (recording backend, fake plans)
over fake JSON-RPC nodes whose chains keep growing while a test runs.

Tests import from here (`from tests.unit.helpers_scenario import NETWORK, FakeNet, growing_nodes`).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Iterator

from testbed.chain.sample import snapshot_all
from testbed.errors import StateError
from tests.unit.test_monitor_sampler import FakeNode, chain

NETWORK = """
network:
  name: fake
  client: geth
  backend: netns
  organizations: [{name: a}, {name: b}, {name: c}, {name: d}]
"""


class RecordingBackend:
    local_processes = False  # nothing to sample: the fake nodes are no processes
    resource_source = "none"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def partition(self, groups):
        self.calls.append(("partition", groups))

    def delay(self, org, ms, jitter_ms=0, loss_pct=0.0):
        self.calls.append(("delay", org, ms))

    def heal(self):
        self.calls.append(("heal",))


@dataclass
class Plan:
    name: str
    org: str
    rpc_url: str


class FakeNet:
    def __init__(self, spec, fakes: dict[str, FakeNode]) -> None:
        self.spec, self.name = spec, spec.name
        self.nodes = [Plan(n, n.split("-")[0], fakes[n].url) for n in fakes]
        self.backend = RecordingBackend()
        self.validator_rpc = SimpleNamespace(list_method="clique_getSigners")
        self.down_nodes: set[str] = set()
        self.calls: list[tuple] = []
        self.state = SimpleNamespace(tail_log=lambda name, n: ["log line"], deployment_file=SimpleNamespace(is_file=lambda: False))

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    rewind: dict = {}

    def heal(self, **_):
        self.backend.heal()
        return dict(self.rewind)

    def process(self, name):
        return None if name in self.down_nodes else object()

    def running_nodes(self):
        return [n.name for n in self.nodes if n.name not in self.down_nodes]

    def snapshots(self, heights=None, only=None):
        return snapshot_all(self.endpoints(only), self.validator_rpc.list_method, heights, admin=self.admin_urls(only))

    def validator_rpc_of(self, name):
        return self.validator_rpc

    def admin_urls(self, only=None):
        return self.endpoints(only)  # the fake nodes answer the vote namespaces on their one endpoint

    def reconcile_forks(self, **_):
        return dict(self.rewind)

    def endpoints(self, only=None):
        return {n.name: n.rpc_url for n in self.nodes if only is None or n.name in only}

    def kill_node(self, name):
        self.calls.append(("kill", name))
        self.down_nodes.add(name)

    def start_node(self, name):
        if name not in self.down_nodes:
            raise StateError(f"node {name} is already running")
        self.calls.append(("start", name))
        self.down_nodes.discard(name)

    def stop_node(self, name):
        self.calls.append(("stop", name))
        self.down_nodes.add(name)

    def pause_node(self, name):
        self.calls.append(("pause", name))

    def resume_node(self, name):
        self.calls.append(("resume", name))


@contextmanager
def growing_nodes(orgs: str) -> Iterator[dict[str, FakeNode]]:
    """One fake validator node `<org>-v1` per letter of `orgs`, all on one chain that grows a
    block every 0.1 s until the block exits; the nodes are closed then."""
    fakes = {f"{o}-v1": FakeNode(f"{o}-v1", chain("aa", 10)) for o in orgs}
    grow = {"on": True}

    def grower():
        while grow["on"]:
            for f in fakes.values():
                f.hashes.append(f"0xaa{len(f.hashes):04d}")
            time.sleep(0.1)

    threading.Thread(target=grower, daemon=True).start()
    try:
        yield fakes
    finally:
        grow["on"] = False
        for f in fakes.values():
            f.close()
