"""Every shipped scenario on the real network (geth Clique, 4 orgs), plus one built to fail.

Networks use ports 29600+ and a temporary TESTBED_HOME (tests/integration/conftest.py);
each run is torn down by the engine. netns scenarios need root and the netns backend;
CTI delivery uses the real Solvers on every backend.
"""

from __future__ import annotations

import json
import os
import textwrap
import warnings
from pathlib import Path

import psutil
import pytest

from testbed.report import render
from testbed.scenario.assertions import PERFORMANCE_KINDS
from testbed.scenario.engine import run_scenario
from testbed.scenario.resolve import load_scenario

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
PORT_BASE = 29600


def _netns_ready() -> str | None:
    """Why netns scenarios cannot run here, or None."""
    import importlib.util

    from testbed.backends import BACKENDS

    if "netns" not in BACKENDS or importlib.util.find_spec("testbed.backends.netns") is None:
        return "the netns backend (testbed/backends/netns.py) is not in this tree"
    if os.geteuid() != 0:
        return "the netns backend needs root"
    return None


def _needs(scenario) -> str | None:
    if scenario.network.backend == "netns" and (why := _netns_ready()):
        return why
    return None


def _events(result) -> list[dict]:
    path = result.run_dir / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _run(scenario, tmp_path):
    """Run once; on a network that did not become ready (a start-up stall on a busy 2-core
    machine, outside the scenario's control) run once more and say so."""
    result = run_scenario(scenario, runs_dir=tmp_path / "runs", progress=print)
    if result.status == "error" and result.error and "not ready" in result.error:
        print(f"network start-up failed ({result.error[:160]}); running {scenario.name} once more")
        result = run_scenario(scenario, runs_dir=tmp_path / "runs", progress=print)
    return result


def _geth_children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


# the demo runs through its own command in test_demo_cli.py (once per CI, not twice)
@pytest.mark.parametrize("path", sorted(p for p in SCENARIOS.glob("*.yaml") if p.stem != "demo"), ids=lambda p: p.stem)
def test_shipped_scenario_passes(path, testbed_home, tmp_path):
    scenario = load_scenario(path, network_overrides={"port_base": PORT_BASE, "name": f"it-{path.stem}"[:24]})
    if why := _needs(scenario):
        pytest.skip(why)
    before = _geth_children()
    result = _run(scenario, tmp_path)
    assert result.error is None, f"{path.name}: {result.error} (run dir {result.run_dir})"
    # Correctness (agreement, liveness through the faults, nothing lost, every step done) must hold.
    # Throughput/latency bounds must be measured, but whether this shared 2-core machine meets them
    # is a benchmark figure (benchmarks/), reported here as a warning, not a test verdict.
    wrong = [a for a in result.failures() if a.kind not in PERFORMANCE_KINDS]
    assert not wrong, f"{path.name}: " + "; ".join(f"{a.name}: {a.detail}" for a in wrong) + f" (run dir {result.run_dir})"
    for a in result.assertions:
        if a.kind in PERFORMANCE_KINDS:
            assert a.evidence, f"{path.name}: {a.name} was not measured: {a.detail}"
            if not a.passed:
                warnings.warn(f"{path.name}: service level missed on this machine: {a.name}: {a.detail}", stacklevel=1)
    assert result.status == ("passed" if not result.failures() else "failed")
    # the run directory alone explains the run
    for name in ("scenario.json", "status.json", "events.jsonl", "samples.jsonl", "monitor.json", "results.json"):
        assert (result.run_dir / name).is_file(), name
    assert json.loads((result.run_dir / "status.json").read_text())["status"] == result.status
    kinds = [e["event"] for e in _events(result)]
    assert kinds.count("fault_injected") == kinds.count("fault_healed")
    assert _geth_children() <= before, "the scenario left processes behind"
    # the report, from the run directory alone: the pedometer read at the end agrees with its events
    _, summary_path = render(result.run_dir)
    summary = json.loads(summary_path.read_text())
    if scenario.deploy:
        pedometer = summary["pedometer"]
        assert pedometer and not pedometer.get("error") and pedometer["mismatches"] == [], pedometer
        assert summary["tasks"] is not None


FAILING = """
    # Built to fail: the publisher's Solver is stopped before the request, so nothing delivers.
    name: delivery-without-solver
    network: {network}
    steps:
      - publish: {{org: acme-cert, as: iocs}}
      - solver: {{org: acme-cert, action: stop}}
      - buy: {{org: globex-soc, cti: iocs}}
      - request: {{org: globex-soc, cti: iocs, as: t1}}
      - await_delivery: {{tasks: [t1], timeout: 12s}}
    assertions:
      - agreement: {{max_reorg_depth: 2}}
      - no_lost_tasks: {{finished: true}}
"""


def test_scenario_built_to_fail_reports_evidence(testbed_home, tmp_path):
    path = tmp_path / "delivery-without-solver.yaml"
    path.write_text(textwrap.dedent(FAILING.format(network=SCENARIOS / "networks" / "four-orgs.yaml")))
    scenario = load_scenario(path, network_overrides={"port_base": PORT_BASE + 100, "name": "it-must-fail"})
    result = _run(scenario, tmp_path)
    assert result.status == "failed", result.error
    by_kind = {a.kind: a for a in result.assertions}
    assert by_kind["agreement"].passed  # the chain itself was fine
    lost = by_kind["no_lost_tasks"]
    assert not lost.passed and "not finished" in lost.detail
    assert lost.evidence[0]["task"] == "t1" and set(lost.evidence[0]["states"].values()) == {"PENDING"}
    step = by_kind["step"]
    assert "not delivered within 12s" in step.detail and "t1" in step.detail
    results = json.loads((result.run_dir / "results.json").read_text())
    assert results["status"] == "failed"


def test_cli_run_exit_code_and_junit(testbed_home, tmp_path):
    """`testbed run` on a tiny local scenario: exit 0, JUnit written."""
    from typer.testing import CliRunner

    from testbed.cli import app

    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(f"""
        name: tiny
        network: {SCENARIOS / "networks" / "four-orgs.yaml"}
        settle: 1s
        steps:
          - {{name: quiet, wait: 6s}}
          - pause: {{node: umbrella-csirt-v1, for: 3s}}
        assertions:
          # 1 s blocks: about 6 in the window; 2 is enough to show it lives (a busy CI host is slower)
          - liveness: {{min_blocks_per_min: 20, during: quiet}}
          - agreement: {{max_reorg_depth: 2}}
    """))
    junit = tmp_path / "junit.xml"
    outcome = CliRunner().invoke(app, ["run", str(path), "--junit", str(junit), "--port-base", str(PORT_BASE + 200),
                                       "--runs-dir", str(tmp_path / "runs")])
    assert outcome.exit_code == 0, outcome.output
    text = junit.read_text()
    assert "<testsuite" in text and 'failures="0"' in text


@pytest.mark.consortium(port_base=PORT_BASE + 300, name="it-consortium")
def test_plugin_consortium_fixture_and_run_scenario_helper(testbed_home, consortium, run_scenario, tmp_path):
    """The pytest plugin: a network from a spec, and a scenario run on it (the network stays up)."""
    assert consortium.name == "it-consortium" and consortium.agreement().agreed
    path = tmp_path / "on-consortium.yaml"
    path.write_text(textwrap.dedent(f"""
        name: on-consortium
        network: {SCENARIOS / "networks" / "four-orgs.yaml"}
        settle: 1s
        steps:
          - {{name: frozen, pause: {{node: umbrella-csirt-v1, for: 6s}}}}
          - wait: {{blocks: 2}}
        assertions:
          - agreement: {{max_reorg_depth: 2}}
          # the others seal out of turn (up to period + 1.5 s wiggle; longer on a busy CI host): at
          # least one block in the 6 s, not a rate a 3 s window could miss (CI saw 0 blocks in 3 s once)
          - liveness: {{min_blocks_per_min: 10, during: frozen}}
    """))
    result = run_scenario(path, network=consortium)
    assert result.passed, [a.detail for a in result.failures()] + [result.error]
    assert sorted(consortium.running_nodes()) == sorted(n.name for n in consortium.nodes)
