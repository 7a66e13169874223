"""The main job through its own command (`testbed demo`, what `make demo` runs): the default
four-organization network up, contracts deployed, Solvers started, the demo scenario under Locust
load, the verdict and the report path, then the network torn down. (test_scenarios.py runs every
other shipped scenario through the library; the demo runs here, once.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration
TESTBED = [sys.executable, "-m", "testbed.cli"]


def test_the_demo_command_passes_and_reports(testbed_home):
    proc = subprocess.run([*TESTBED, "demo", "--json"], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "TESTBED_HOME": str(testbed_home)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout)  # one document on stdout; the progress went to stderr
    assert answer["scenario"] == "demo" and answer["status"] == "passed" and answer["error"] is None
    assert len(answer["assertions"]) == 6 and all(a["passed"] for a in answer["assertions"]), answer["assertions"]
    report = Path(answer["report"])
    assert report.is_file() and report.parent == Path(answer["run_dir"])
    summary = json.loads((report.parent / "summary.json").read_text())
    orgs = {"acme-cert", "globex-soc", "initech-isac", "umbrella-csirt"}
    assert set(summary["per_org_load"]) == orgs, summary["per_org_load"]  # every organization offers load
    pedometer = summary["pedometer"]
    assert pedometer["mismatches"] == [] and {o["name"] for o in pedometer["organizations"]} == orgs
    assert pedometer["totals"]["feedback_given"] >= 3 and summary["tasks"]["rated"] >= 3
    assert all(t.get("solver", "").endswith("solver") for t in summary["tasks"]["rows"])  # who served each task
    page = report.read_text()
    for text in ("Pedometer", "CTI exchanges", "Every counter equals the sum of its Step events", "load phase 1"):
        assert text in page, text
    state = str(testbed_home / "four-orgs")  # in the command line of every node and Solver it started
    left = [p.pid for p in psutil.process_iter(["cmdline"]) if state in " ".join(p.info["cmdline"] or [])]
    assert not left, f"the demo left processes behind: {left}"
