"""The CLI's machine-readable outputs that need no network: --version, ls --json, schema."""

from __future__ import annotations

import json
from importlib.metadata import version

from typer.testing import CliRunner

from testbed.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"testbed {version('cti-testbed')}"


def test_ls_json_lists_nothing_in_an_empty_state_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("TESTBED_HOME", str(tmp_path))
    result = runner.invoke(app, ["ls", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == []


def test_schema_of_both_file_kinds_and_to_a_file(tmp_path):
    network = json.loads(runner.invoke(app, ["schema", "network"]).stdout)
    scenario = json.loads(runner.invoke(app, ["schema", "scenario"]).stdout)
    assert "organizations" in network["properties"] and "steps" in scenario["properties"]
    target = tmp_path / "s.json"
    assert runner.invoke(app, ["schema", "scenario", "--file", str(target)]).exit_code == 0
    assert json.loads(target.read_text()) == scenario


def test_run_check_json_lists_every_shipped_scenario():
    from pathlib import Path

    scenarios = Path(__file__).resolve().parents[2] / "scenarios"
    result = runner.invoke(app, ["run", "--check", "--json", str(scenarios)])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert {Path(r["file"]).name for r in listed} == {p.name for p in scenarios.glob("*.yaml")}
    demo = next(r for r in listed if r["scenario"] == "demo")
    assert demo["steps"] >= 3 and demo["assertions"] == 6
