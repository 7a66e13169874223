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
