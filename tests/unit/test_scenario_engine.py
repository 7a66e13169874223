"""The scenario engine at its seams: a fake Network (recording backend) and fake JSON-RPC nodes.

Checks that faults are recorded and always healed (also when a step fails), that `at:` and
`parallel` run as documented, that assertions judge what was recorded, and JUnit output.
"""

from __future__ import annotations

import json
import threading
import time
from xml.etree import ElementTree as ET

import pytest

from testbed.scenario.assertions import AssertionResult
from testbed.scenario.cli_support import junit_xml
from testbed.scenario.engine import ScenarioResult, run_scenario
from testbed.scenario.resolve import scenario_from_text
from tests.unit.helpers_scenario import NETWORK, FakeNet, growing_nodes


@pytest.fixture
def fake(tmp_path):
    with growing_nodes("abcd") as fakes:
        def run(body: str, rewind: dict | None = None, monitor: str = "{interval: 0.1s}"):
            scenario = scenario_from_text(f"name: t\nsettle: 0.2s\nmonitor: {monitor}\n" + NETWORK + body,
                                          "t.yaml", base_dir=tmp_path)
            net = FakeNet(scenario.network, fakes)
            net.rewind = rewind or {}
            result = run_scenario(scenario, network=net, runs_dir=tmp_path / "runs")
            events = [json.loads(x) for x in (result.run_dir / "events.jsonl").read_text().splitlines()]
            return result, net, events
        yield run


def kinds(events, kind):
    return [e for e in events if e["event"] == kind]


def test_faults_heal_and_are_recorded(fake):
    result, net, events = fake("""
steps:
  - {name: cut, partition: {groups: [[a, b], [c, d]], for: 0.3s}}
  - {name: out, crash: {node: b-v1, for: 0.3s}}
  - pause: {node: c-v1}
  - heal: {}
assertions:
  - agreement: {max_reorg_depth: 0}
  - liveness: {min_blocks_per_min: 30, during: out}
""")
    assert result.status == "passed", [a.detail for a in result.assertions] + [result.error]
    assert net.backend.calls[0] == ("partition", [["a", "b"], ["c", "d"]]) and ("heal",) in net.backend.calls
    assert ("kill", "b-v1") in net.calls and ("start", "b-v1") in net.calls and ("resume", "c-v1") in net.calls
    injected, healed = kinds(events, "fault_injected"), kinds(events, "fault_healed")
    assert [e["kind"] for e in injected] == ["partition", "crash", "pause"]
    assert sorted(e["fault"] for e in healed) == [1, 2, 3]
    assert all(h["time"] >= i["time"] for i, h in zip(injected, sorted(healed, key=lambda e: e["fault"])))
    status = json.loads((result.run_dir / "status.json").read_text())
    assert status["status"] == "passed"
    assert (result.run_dir / "samples.jsonl").is_file() and (result.run_dir / "monitor.json").is_file()


def test_a_failing_step_still_heals_everything(fake):
    result, net, events = fake("""
steps:
  - partition: {groups: [[a], [b, c, d]]}
  - pause: {node: d-v1}
  - crash: {node: a-v1}
  - wait: {blocks: 100000, timeout: 0.3s}
  - delay: {org: b, ms: 100}
""")
    assert result.status == "failed"
    (step,) = [a for a in result.assertions if a.kind == "step"]
    assert "waited 0s for 100000 blocks" in step.detail
    assert not [c for c in net.backend.calls if c[0] == "delay"], "steps after the failure are skipped"
    assert ("heal",) in net.backend.calls and ("resume", "d-v1") in net.calls
    healed = {e["kind"]: e["how"] for e in kinds(events, "fault_healed")}
    assert healed == {"partition": "healed", "pause": "resumed", "crash": "restarted"}  # a given network is left whole


def test_at_and_parallel_timing(fake):
    result, net, events = fake("""
steps:
  - parallel:
      - {name: one, wait: 1.2s}
      - [{wait: 0.1s}, {name: two, wait: 0.1s}]
  - {name: late, at: 0.8s, wait: 0s}
""")
    assert result.passed
    periods = json.loads((result.run_dir / "periods.json").read_text())
    assert periods["two"]["end"] < periods["one"]["end"]  # branches ran side by side
    assert periods["late"]["start"] >= 0.8


def test_assertions_without_material_fail_clearly(fake):
    result, _, _ = fake("""
steps:
  - wait: 0.2s
assertions:
  - no_lost_transactions: {}
  - min_tps: 5
  - liveness: {must_stall: true}
""")
    details = {a.kind: a for a in result.assertions}
    assert not details["no_lost_transactions"].passed and "no load" in details["no_lost_transactions"].detail
    assert not details["min_tps"].passed
    assert not details["liveness"].passed and "still growing" in details["liveness"].detail
    assert result.status == "failed"


def test_junit_has_one_case_per_assertion(tmp_path):
    results = [ScenarioResult("s1", tmp_path, "failed", [AssertionResult("agreement", "agreement", True, "ok"),
                                                        AssertionResult("liveness", "liveness", False, "slow", [{"x": 1}])], 3.0),
               ScenarioResult("s2", tmp_path, "error", [], 1.0, error="boom")]
    root = junit_xml(results)
    suites = root.findall("testsuite")
    assert [s.get("failures") for s in suites] == ["1", "0"] and suites[1].get("errors") == "1"
    assert suites[0].find("testcase[@name='liveness']/failure").get("message") == "slow"
    ET.tostring(root)


def test_an_operator_rewind_after_heal_is_shown_in_the_agreement_verdict(fake):
    result, net, events = fake("""
steps:
  - partition: {groups: [[a, b], [c, d]], for: 0.2s}
assertions:
  - agreement: {max_reorg_depth: 3}
""", rewind={"c-v1": 12, "d-v1": 12})
    (agreement,) = result.assertions
    assert "harness rewound c-v1, d-v1" in agreement.detail
    assert {"operator_rewind": {"rewound": {"c-v1": 12, "d-v1": 12}, "after": ["partition"]}} in agreement.evidence
    assert kinds(events, "branches_reconciled")


@pytest.mark.parametrize("monitor, enabled", [("{interval: 0.1s}", True), ("{interval: 0.1s, watchdog: false}", False)])
def test_the_stall_watchdog_runs_unless_the_scenario_turns_it_off(fake, monkeypatch, monitor, enabled):
    import testbed.scenario.engine as engine

    made = []

    class Recording(engine.StallWatchdog):
        def __init__(self, net, **kw):
            super().__init__(net, **kw)
            made.append(self)

    monkeypatch.setattr(engine, "StallWatchdog", Recording)
    result, net, _ = fake("steps:\n  - pause: {node: b-v1, for: 0.3s}\n", monitor=monitor)
    assert result.passed, [a.detail for a in result.assertions] + [result.error]
    (dog,) = made
    assert dog.enabled is enabled and dog._stop.is_set()  # stopped with the run
    assert dog.paused() is False  # the pause fault was healed by the end


class HeldChain(list):
    """A node's chain that does not grow while `held` (a restarted node still catching up)."""
    held = True

    def append(self, item):
        if not self.held:
            super().append(item)


def test_waiting_for_blocks_waits_until_every_live_node_has_them(tmp_path):
    body = "steps:\n  - wait: {blocks: 3, timeout: 0.8s}\n"
    with growing_nodes("abcd") as fakes:
        fakes["d-v1"].hashes = HeldChain(fakes["d-v1"].hashes)
        scenario = scenario_from_text("name: t\nsettle: 0s\nmonitor: {interval: 0.1s}\n" + NETWORK + body,
                                      "t.yaml", base_dir=tmp_path)
        result = run_scenario(scenario, network=FakeNet(scenario.network, fakes), runs_dir=tmp_path / "runs")
        (step,) = [a for a in result.assertions if a.kind == "step"]
        assert "on every live node: d-v1 is at" in step.detail  # a, b, c grew; d did not
        threading.Timer(0.3, lambda: setattr(fakes["d-v1"].hashes, "held", False)).start()
        body = body.replace("0.8s", "20s")
        scenario = scenario_from_text("name: t\nsettle: 0s\nmonitor: {interval: 0.1s}\n" + NETWORK + body,
                                      "t.yaml", base_dir=tmp_path)
        result = run_scenario(scenario, network=FakeNet(scenario.network, fakes), runs_dir=tmp_path / "runs")
        assert not [a for a in result.assertions if a.kind == "step"], result.assertions


def test_ctrl_c_stops_every_branch_and_a_held_fault_is_healed_once(tmp_path):
    """Ctrl-C while a branch holds a crash `for: 30s` and another waits: the run heals and ends,
    the branches stop (no node restarted behind the teardown's back, nothing runs on for 30 s)."""
    import os
    import signal

    body = "steps:\n  - parallel:\n      - crash: {node: a-v1, for: 30s}\n      - wait: 30s\n"
    with growing_nodes("abcd") as fakes:
        scenario = scenario_from_text("name: t\nsettle: 0s\nmonitor: {interval: 0.1s}\n" + NETWORK + body,
                                      "t.yaml", base_dir=tmp_path)
        net = FakeNet(scenario.network, fakes)
        def ctrl_c_once_crashed():
            while ("kill", "a-v1") not in net.calls:
                time.sleep(0.05)
            time.sleep(0.3)
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C does

        threading.Thread(target=ctrl_c_once_crashed, daemon=True).start()
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, whatever ran before
        try:
            with pytest.raises(KeyboardInterrupt):
                run_scenario(scenario, network=net, runs_dir=tmp_path / "runs")
        finally:
            signal.signal(signal.SIGINT, previous)
        for thread in [t for t in threading.enumerate() if t.name.startswith("branch-")]:
            thread.join(timeout=5)
            assert not thread.is_alive(), "a branch ran on after the run ended"
        assert net.calls.count(("start", "a-v1")) == 1  # restarted by the heal, not again by the hold
    (run_dir,) = (tmp_path / "runs").iterdir()
    status = json.loads((run_dir / "results.json").read_text())
    assert status["status"] == "error" and status["error"].startswith("interrupted (Ctrl-C)")
