"""The Clique stall watchdog against a scripted network and a hand-driven clock.

It must rewind only the real deadlock (no head moved for `stall_after`, every running node
answering, heads on different branches), once per stall, never during a scenario's partition,
never on a healthy, a merely slow or a final-block (QBFT) chain; what it did is recorded.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from testbed.consensus import NodeSnapshot
from testbed.errors import StateError
from testbed.scenario.faults import FaultLedger
from testbed.watchdog import StallWatchdog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedNet:
    """Heads per node set by the test; reconcile_forks answers `rewind` and is counted."""

    def __init__(self, method: str = "clique_getSigners") -> None:
        engine = "clique" if method.startswith("clique") else "qbft"
        self.spec = SimpleNamespace(consensus=SimpleNamespace(block_period=1, engine=engine))
        self.validator_rpc = SimpleNamespace(list_method=method)
        self.heads = {"a-v1": (10, "0xa"), "b-v1": (10, "0xa"), "c-v1": (10, "0xc"), "d-v1": (10, "0xc")}
        self.unreachable: set[str] = set()
        self.rewind = {"c-v1": 9, "d-v1": 9}
        self.reconciled = 0

    def running_nodes(self):
        return list(self.heads)

    def snapshots(self, heights=None, only=None):
        return [NodeSnapshot(n, False, error="timeout") if n in self.unreachable
                else NodeSnapshot(n, True, head_number=num, head_hash=h) for n, (num, h) in self.heads.items()]

    def reconcile_forks(self, *, progress, settle, wait):
        assert settle == 0 and not wait  # the watchdog has already waited; it must not block the run
        self.reconciled += 1
        return dict(self.rewind)


def watch(net, clock, **kw):
    events = []
    dog = StallWatchdog(net, clock=clock, record=lambda kind, **data: events.append((kind, data)), **kw)
    return dog, events


def test_diverged_heads_that_stand_still_are_reconciled_once_and_recorded():
    net, clock = ScriptedNet(), Clock()
    dog, events = watch(net, clock)
    assert dog.stall_after == 15.0  # 1 s blocks: 15 s without a new head
    assert dog.check() is None  # first look: the heads are new
    clock.now += 14.9
    assert dog.check() is None and net.reconciled == 0
    clock.now += 0.2
    done = dog.check()
    assert net.reconciled == 1
    assert done["rewound"] == {"c-v1": 9, "d-v1": 9} and done["after"] == ["stall"] and done["stalled_s"] == 15.1
    assert done["heads"] == {"a-v1": 10, "b-v1": 10, "c-v1": 10, "d-v1": 10}
    assert dog.interventions == [done] and events == [("branches_reconciled", done)]
    clock.now += 5
    assert dog.check() is None and net.reconciled == 1  # the stall clock starts again after acting


def test_a_moving_chain_is_left_alone():
    net, clock = ScriptedNet(), Clock()
    dog, _ = watch(net, clock)
    for height in range(11, 40):
        clock.now += 1.0
        net.heads["a-v1"] = (height, f"0x{height}")  # only one node moves (others syncing): still no deadlock
        dog.check()
    assert net.reconciled == 0 and not dog.interventions


def test_one_chain_that_stopped_is_not_a_fork_to_reconcile():
    net, clock = ScriptedNet(), Clock()
    net.heads = {n: (10, "0xa") for n in net.heads}  # e.g. too few signers left: nothing to rewind
    dog, _ = watch(net, clock)
    dog.check()
    clock.now += 60
    assert dog.check() is None and net.reconciled == 0


def test_nothing_is_done_while_a_fault_is_active_and_the_count_restarts_after_it():
    net, clock = ScriptedNet(), Clock()
    fault = {"on": True}
    dog, _ = watch(net, clock, paused=lambda: fault["on"])
    dog.check()
    clock.now += 60
    assert dog.check() is None and net.reconciled == 0  # a partition is supposed to stall
    fault["on"] = False
    clock.now += 10
    assert dog.check() is None  # 10 s since the fault ended: not yet
    clock.now += 6
    assert dog.check() is not None and net.reconciled == 1


def test_a_scenario_waits_out_a_partition_but_rewinds_a_stall_while_a_signer_is_crashed():
    net, clock = ScriptedNet(), Clock()
    net.kill_node = lambda node: net.heads.pop(node)
    net.backend = SimpleNamespace(partition=lambda groups: None)
    ledger = FaultLedger(net, emit=lambda *_a, **_k: None)
    dog, _ = watch(net, clock, paused=ledger.splits_network)
    ledger.partition([["a-v1", "b-v1"], ["c-v1", "d-v1"]])
    dog.check()
    clock.now += 60
    assert ledger.splits_network() and dog.check() is None and net.reconciled == 0
    ledger.active.clear()
    ledger.crash("d-v1")  # three signers of four left, deadlocked on two branches: the case to act on
    assert not ledger.splits_network()
    dog.check()
    clock.now += 16
    assert dog.check() is not None and net.reconciled == 1


def test_a_node_that_does_not_answer_stops_the_watchdog_from_acting():
    net, clock = ScriptedNet(), Clock()
    dog, _ = watch(net, clock)
    net.unreachable = {"b-v1"}
    dog.check()
    clock.now += 60
    assert dog.check() is None and net.reconciled == 0


def test_nothing_recorded_when_reconcile_finds_no_branch_to_rewind():
    net, clock = ScriptedNet(), Clock()
    net.rewind = {}
    dog, events = watch(net, clock)
    dog.check()
    clock.now += 20
    assert dog.check() is None and net.reconciled == 1 and not dog.interventions and not events


@pytest.mark.parametrize("method, enabled", [("istanbul_getValidators", True), ("qbft_getValidatorsByBlockNumber", True),
                                             ("clique_getSigners", False)])
def test_final_block_engines_and_opt_out_are_never_touched(method, enabled):
    net, clock = ScriptedNet(method), Clock()
    dog, _ = watch(net, clock, enabled=enabled)
    dog.check()
    clock.now += 60
    assert dog.check() is None and net.reconciled == 0 and not dog.enabled
    with dog:
        assert dog._thread is None  # nothing runs in the background either


def test_the_background_loop_survives_a_failed_look_and_stops_on_exit():
    net, said = ScriptedNet(), []
    calls = {"n": 0}
    real = net.snapshots

    def flaky(heights=None, only=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("node went away")
        return real(heights, only)

    net.snapshots = flaky
    with StallWatchdog(net, interval=0.01, stall_after=0.05, progress=said.append) as dog:
        deadline = time.monotonic() + 5
        while not dog.interventions and time.monotonic() < deadline:
            time.sleep(0.01)
    assert any("stall watchdog: node went away" in s for s in said)
    assert dog.interventions and not dog._thread.is_alive()
    assert any("reconciling the competing Clique branches" in s for s in said)


def test_cli_watch_acts_prints_and_appends_to_the_network_state(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import testbed.cli as cli
    import testbed.commands.network as commands

    net = ScriptedNet()
    net.name, net.state = "four-orgs", SimpleNamespace(root=tmp_path)
    net.spec.consensus.engine = "clique"
    monkeypatch.setattr(commands, "resolve_network", lambda name: net)
    outcome = CliRunner().invoke(cli.app, ["watch", "--seconds", "1", "--stall-after", "0.1", "--interval", "0.02"])
    assert outcome.exit_code == 0, outcome.output
    (line, *_) = (tmp_path / "watchdog.jsonl").read_text().splitlines()
    assert json.loads(line)["event"] == "branches_reconciled" and json.loads(line)["rewound"] == {"c-v1": 9, "d-v1": 9}
    assert net.reconciled >= 1


def test_cli_watch_refuses_a_final_block_network(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import testbed.cli as cli
    import testbed.commands.network as commands

    net = ScriptedNet("istanbul_getValidators")
    net.name, net.state = "q", SimpleNamespace(root=tmp_path)
    net.spec.consensus.engine = "qbft"
    monkeypatch.setattr(commands, "resolve_network", lambda name: net)
    outcome = CliRunner().invoke(cli.app, ["watch", "--seconds", "1"])
    assert isinstance(outcome.exception, StateError) and "blocks are final" in str(outcome.exception)  # run_app: one line, exit 2
    assert not (tmp_path / "watchdog.jsonl").exists()
