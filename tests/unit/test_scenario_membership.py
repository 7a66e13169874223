"""Scenario steps `join` and `leave`: schema, name cross-checks over the changing membership,
and the engine switching every part of the run (monitor, faults, CTI) to the new Network."""

from __future__ import annotations

import json

import pytest

from testbed.scenario.engine import run_scenario
from testbed.scenario.resolve import load_scenario, scenario_from_text
from testbed.scenario.solvers import MissingSolvers
from testbed.spec.scenario import Join, Leave, Step
from tests.unit.helpers_scenario import NETWORK, FakeNet, growing_nodes
from tests.unit.test_scenario_spec import HEADER, SCENARIOS, error_of, parse


# ---- schema ----------------------------------------------------------------------------------------
def test_join_defaults_and_leave():
    step = Step.model_validate({"join": {"org": "newco-csirt"}})
    assert step.action == "join" and step.body == Join(org="newco-csirt")
    assert (step.join.validators, step.join.members, step.join.accounts, step.join.solver) == (1, 0, 8, False)
    assert Step.model_validate({"leave": {"org": "newco-csirt", "timeout": "30s"}}).leave == Leave(org="newco-csirt", timeout=30)


@pytest.mark.parametrize("body", [{"org": "x", "validators": 0, "members": 0}, {"org": "x", "accounts": 0},
                                  {"org": "x", "validators": 9}, {"org": "Bad Name"}, {"org": "x", "extra": 1}, {}])
def test_bad_join_bodies(body):
    with pytest.raises(ValueError):
        Step.model_validate({"join": body})


# ---- cross-checks ------------------------------------------------------------------------------------
def test_shipped_onboarding_scenario():
    s = load_scenario(SCENARIOS / "member-onboarding.yaml")
    actions = [st.action for st in s.spec.steps]
    assert actions.index("join") < actions.index("buy") < actions.index("request") < actions.index("feedback") \
        < actions.index("leave")
    assert s.uses_cti and s.deploy and {"onboard", "offboard"} <= set(s.step_names)
    kinds = {a.kind for a in s.spec.assertions}
    assert {"agreement", "no_lost_tasks", "liveness"} <= kinds
    assert next(a for a in s.spec.assertions if a.kind == "agreement").agreement.max_reorg_depth is None


def test_joined_org_and_its_nodes_are_valid_afterwards():
    s = parse(HEADER + "steps:\n  - publish: {org: acme-cert, as: x}\n  - join: {org: newco, validators: 1, members: 1}\n"
              "  - buy: {org: newco, cti: x}\n  - request: {org: newco, cti: x, as: t}\n  - feedback: {task: t}\n"
              "  - pause: {node: newco-m1, for: 1s}\n  - crash: {node: newco-v1, for: 1s}\n  - solver: {org: newco, action: start}\n")
    assert [st.action for st in s.spec.steps][1] == "join"


def test_org_unknown_before_it_joins():
    message = error_of(HEADER + "steps:\n  - publish: {org: acme-cert, as: x}\n  - buy: {org: newco, cti: x}\n"
                       "  - join: {org: newco}\n")
    assert "t.yaml:5" in message and "no organization 'newco'" in message


def test_departed_org_and_its_nodes_are_invalid_after_leave():
    base = HEADER + "steps:\n  - publish: {org: acme-cert, as: x}\n  - join: {org: newco}\n  - leave: {org: newco}\n"
    message = error_of(base + "  - buy: {org: newco, cti: x}\n")
    assert "t.yaml:7" in message and "no organization 'newco'" in message and "left in an earlier step" in message
    assert "no node 'newco-v1'" in error_of(base + "  - crash: {node: newco-v1}\n")
    message = error_of(HEADER + "steps:\n  - leave: {org: globex-soc}\n  - load: {rate: 5, duration: 1s, orgs: [globex-soc]}\n")
    assert "no organization 'globex-soc'" in message
    assert "no node 'globex-soc-v1'" in error_of(HEADER + "steps:\n  - leave: {org: globex-soc}\n  - pause: {node: globex-soc-v1}\n")


def test_leave_after_its_task_forbids_its_feedback():
    message = error_of(HEADER + "steps:\n  - publish: {org: acme-cert, as: x}\n  - join: {org: newco}\n"
                       "  - request: {org: newco, cti: x, as: t}\n  - leave: {org: newco}\n  - feedback: {task: t}\n")
    assert "requested by 'newco', which left" in message


def test_join_needs_a_new_name():
    assert "already part of" in error_of(HEADER + "steps:\n  - join: {org: acme-cert}\n")
    message = error_of(HEADER + "steps:\n  - join: {org: newco}\n  - leave: {org: newco}\n  - join: {org: newco}\n")
    assert "t.yaml:6" in message and "cannot rejoin" in message


def test_leave_unknown_or_last_org():
    assert "no organization 'nobody'" in error_of(HEADER + "steps:\n  - leave: {org: nobody}\n")
    one = "name: t\nnetwork: {name: solo, organizations: [{name: only}]}\nsteps:\n  - leave: {org: only}\n"
    assert "last organization cannot leave" in error_of(one)


def test_membership_steps_not_inside_parallel():
    message = error_of(HEADER + "steps:\n  - parallel:\n      - wait: 1s\n      - join: {org: newco}\n")
    assert "cannot run inside parallel" in message


def test_member_only_newcomer_has_no_validator_node():
    base = HEADER + "steps:\n  - join: {org: newco, validators: 0, members: 1}\n"
    assert parse(base + "  - pause: {node: newco-m1, for: 1s}\n").spec.steps[0].join.members == 1
    assert "no node 'newco-v1'" in error_of(base + "  - crash: {node: newco-v1}\n")


# ---- engine ----------------------------------------------------------------------------------------
@pytest.fixture
def nodes():
    with growing_nodes("abcde") as fakes:
        yield fakes


def test_engine_switches_to_the_joined_and_the_remaining_network(nodes, tmp_path, monkeypatch):
    import testbed.membership as membership

    scenario = scenario_from_text("name: t\nsettle: 0.2s\nmonitor: {interval: 0.1s}\n" + NETWORK +
                                  "steps:\n  - join: {org: e}\n  - wait: 0.5s\n  - crash: {node: e-v1, for: 0.2s}\n"
                                  "  - leave: {org: b}\n  - wait: 0.5s\n", "t.yaml", base_dir=tmp_path)
    founders = FakeNet(scenario.network, {k: v for k, v in nodes.items() if k != "e-v1"})
    grown = FakeNet(scenario.network, nodes)
    remaining = FakeNet(scenario.network, {k: v for k, v in nodes.items() if k != "b-v1"})
    calls = []

    def join(net, org, **kw):
        calls.append(("join", net, org, kw["validators_count"], kw["accounts"]))
        kw["progress"]("nodes started")
        return grown

    def leave(net, org, **kw):
        calls.append(("leave", net, org))
        return remaining

    monkeypatch.setattr("testbed.scenario.steps.solver_control", lambda net: MissingSolvers())
    monkeypatch.setattr(membership, "join", join)
    monkeypatch.setattr(membership, "leave", leave)
    result = run_scenario(scenario, network=founders, runs_dir=tmp_path / "runs")
    assert result.status == "passed", result.error or result.failures()
    assert calls == [("join", founders, "e", 1, 8), ("leave", grown, "b")]
    assert grown.calls[:2] == [("kill", "e-v1"), ("start", "e-v1")]  # the fault went to the joined network
    events = [json.loads(x) for x in (result.run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["org"] for e in events if e["event"] in ("org_joined", "org_left")] == ["e", "b"]
    assert any(e["event"] == "membership_progress" and e["message"] == "nodes started" for e in events)
    rows = [json.loads(x) for x in (result.run_dir / "samples.jsonl").read_text().splitlines()]
    assert "e-v1" not in rows[0]["nodes"] and any("e-v1" in r["nodes"] for r in rows)  # sampled once it joined
    assert "b-v1" not in rows[-1]["nodes"] and "b-v1" in rows[-1]["down"]              # not after it left
    assert (result.run_dir / "logs" / "b-v1.log").is_file()
