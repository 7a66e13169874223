"""The main job: run the demo scenario (scenarios/demo.yaml) on the default four-organization
network — up, contracts deployed, Solvers started, a phishing campaign's CTI flow under
Locust load, the agreement monitor beside it — then render the HTML report from the run
directory and tear the network down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from testbed import shipped

DEMO_SCENARIO = shipped.path("scenarios", "demo.yaml")


def run_demo(scenario: Path = DEMO_SCENARIO, *, progress: Callable[[str], None], keep: bool = False,
             network_overrides: dict | None = None):
    """Run the demo scenario; returns (ScenarioResult, path of report.html or None)."""
    from testbed.report import render
    from testbed.scenario.engine import run_scenario

    result = run_scenario(scenario, progress=progress, keep=keep, network_overrides=network_overrides)
    report = None
    if (result.run_dir / "status.json").is_file():
        report, _ = render(result.run_dir)
    return result, report
