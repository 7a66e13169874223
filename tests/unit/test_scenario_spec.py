"""Scenario files: schema, cross-checks against the network, and errors naming file:line (validation only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.errors import SpecError
from testbed.scenario.cli_support import collect
from testbed.scenario.resolve import load_scenario, scenario_from_text
from testbed.spec.scenario import parse_duration

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
SHIPPED = sorted(SCENARIOS.glob("*.yaml"))

HEADER = "name: t\nnetwork: networks/four-orgs.yaml\n"


def parse(text: str, **kw):
    return scenario_from_text(text, "t.yaml", base_dir=SCENARIOS, **kw)


def error_of(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse(text)
    return str(info.value)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_scenarios_validate(path):
    scenario = load_scenario(path)
    assert scenario.spec.assertions, "a shipped scenario asserts something"
    assert scenario.resolved()["scenario"]["network"]["name"]


def test_four_scenarios_are_shipped():
    assert {p.stem for p in SHIPPED} >= {"phishing-campaign", "ransomware-outbreak", "supply-chain-partition", "slow-link"}


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("500ms", 0.5), ("2m", 120), (1.5, 1.5), ("1h", 3600), (0, 0)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "-1s", "10 days", True, None, "1e3s", [], "25h"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_steps_parallel_and_at():
    s = parse(HEADER + "steps:\n  - wait: 1s\n  - parallel:\n      - wait: 2s\n      - [{wait: 1s}, {crash: {node: acme-cert-v1, for: 3s}}]\n"
              "  - at: 30s\n    restart: {node: acme-cert-v1}\n")
    steps = s.spec.steps
    assert [st.action for st in steps] == ["wait", "parallel", "restart"]
    assert [[b.action for b in branch] for branch in steps[1].parallel] == [["wait"], ["wait", "crash"]]
    assert steps[1].parallel[1][1].crash.hold == 3.0 and steps[2].at == 30.0
    assert not s.deploy


def test_cti_steps_imply_deploy():
    s = parse(HEADER + "steps:\n  - publish: {org: acme-cert, as: x}\n  - request: {org: globex-soc, cti: x, as: t}\n"
              "  - await_delivery: {tasks: [t], timeout: 5s}\n  - feedback: {task: t}\n")
    assert s.uses_cti and s.deploy


def test_unknown_key_names_line_and_allowed_keys():
    text = HEADER + "steps:\n  - wait: 1s\n  - crash: {node: acme-cert-v1, forr: 2s}\n"
    message = error_of(text)
    assert message.startswith("t.yaml:5: steps.1.crash.forr: unknown key")
    assert "allowed keys" in message and "node" in message


def test_two_actions_in_one_step():
    message = error_of(HEADER + "steps:\n  - wait: 1s\n    crash: {node: acme-cert-v1}\n")
    assert "t.yaml:4" in message and "exactly one action" in message


def test_unknown_node_lists_nodes():
    message = error_of(HEADER + "steps:\n  - wait: 1s\n  - crash: {node: nobody-v1}\n")
    assert "t.yaml:5" in message and "no node 'nobody-v1'" in message and "acme-cert-v1" in message


def test_unknown_org_in_parallel_branch():
    message = error_of(HEADER + "steps:\n  - parallel:\n      - [{wait: 1s}, {load: {rate: 5, duration: 2s, orgs: [nope]}}]\n")
    assert "no organization 'nope'" in message and message.startswith("t.yaml:")


def test_alias_must_be_defined_before_use():
    message = error_of(HEADER + "steps:\n  - buy: {org: globex-soc, cti: later}\n  - publish: {org: acme-cert, as: later}\n")
    assert "t.yaml:4" in message and "no CTI 'later'" in message


def test_sibling_branch_aliases_are_not_visible():
    message = error_of(HEADER + "steps:\n  - parallel:\n      - publish: {org: acme-cert, as: x}\n"
                       "      - buy: {org: globex-soc, cti: x}\n")
    assert "no CTI 'x'" in message


def test_partition_on_local_backend_names_netns():
    message = error_of(HEADER + "steps:\n  - partition: {groups: [[acme-cert], [globex-soc]]}\n")
    assert "t.yaml:4" in message and "netns" in message


def test_partition_org_in_two_groups():
    text = ("name: t\nnetwork: networks/four-orgs-netns.yaml\nsteps:\n"
            "  - partition: {groups: [[acme-cert, globex-soc], [globex-soc]]}\n")
    assert "in two groups" in error_of(text)


def test_liveness_window_must_name_a_step():
    message = error_of(HEADER + "steps:\n  - wait: 1s\nassertions:\n  - liveness: {min_blocks_per_min: 5, during: nope}\n")
    assert "t.yaml:6" in message and "no step is named 'nope'" in message


def test_liveness_needs_one_kind():
    message = error_of(HEADER + "steps:\n  - wait: 1s\nassertions:\n  - liveness: {}\n")
    assert "either min_blocks_per_min or must_stall" in message


def test_assertion_takes_one_kind():
    message = error_of(HEADER + "steps:\n  - wait: 1s\nassertions:\n  - {min_tps: 3, max_p95_latency: 2s}\n")
    assert "exactly one kind" in message


def test_missing_network_file():
    message = error_of("name: t\nnetwork: networks/nope.yaml\nsteps:\n  - wait: 1s\n")
    assert "t.yaml:2: network: no network spec" in message


def test_inline_network_and_overrides():
    text = ("name: t\nnetwork:\n  name: inl\n  organizations:\n    - {name: a}\n    - {name: b}\n"
            "steps:\n  - crash: {node: b-v1}\n")
    s = parse(text, network_overrides={"port_base": 29500, "name": "other"})
    assert s.network.ports.base == 29500 and s.network.name == "other"
    assert s.network_source.endswith("(inline)")


def test_duplicate_step_names():
    assert "used twice" in error_of(HEADER + "steps:\n  - {name: a, wait: 1s}\n  - {name: a, wait: 1s}\n")


def test_deploy_false_with_cti_steps():
    assert "deploy" in error_of(HEADER + "deploy: false\nsteps:\n  - publish: {org: acme-cert, as: x}\n")


def test_collect_directory_takes_yaml_files_only(tmp_path):
    (tmp_path / "b.yaml").write_text("x")
    (tmp_path / "a.yml").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in collect([tmp_path])] == ["a.yml", "b.yaml"]
    with pytest.raises(SpecError):
        collect([tmp_path / "sub"])
