"""Malformed scenario files (hypothesis, > 1,000 cases): every one ends in a SpecError (or is valid);
no other exception, no process started. Validation only: no network."""

from __future__ import annotations

import copy
from pathlib import Path

import psutil
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed.errors import SpecError

from .helpers_yaml import key_paths
from testbed.scenario.resolve import scenario_from_text

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
SHIPPED = [yaml.safe_load(p.read_text()) for p in sorted(SCENARIOS.glob("*.yaml"))]

KEYS = ["name", "network", "steps", "assertions", "at", "wait", "crash", "pause", "restart", "partition", "delay",
        "heal", "parallel", "load", "publish", "buy", "request", "await_delivery", "feedback", "solver", "node", "org",
        "as", "cti", "tasks", "task", "rate", "duration", "groups", "ms", "for", "agreement", "liveness",
        "max_reorg_depth", "min_blocks_per_min", "must_stall", "during", "min_tps", "max_p95_latency", "blocks",
        "no_lost_transactions", "no_lost_tasks", "monitor", "interval", "settle", "timeout", "deploy", "bogus", "x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**12), st.floats(allow_nan=True),
                    st.sampled_from(["30s", "-1s", "2m", "acme-cert", "acme-cert-v1", "networks/four-orgs.yaml",
                                     "networks/four-orgs-netns.yaml", "x", "", "1e9h", "nope-v9"]),
                    st.text(max_size=12))
documents = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.sampled_from(KEYS), children, max_size=5)), max_leaves=25)


def check(text: str) -> None:
    try:
        scenario_from_text(text, "fuzz.yaml", base_dir=SCENARIOS)
    except SpecError as exc:
        message = str(exc)
        assert message.startswith("fuzz.yaml") or "networks/" in message, message
        assert "\n" not in exc.message.strip() or "invalid YAML" in message


def children_before() -> int:
    return len(psutil.Process().children(recursive=True))


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(documents)
def test_random_documents(doc):
    check(yaml.safe_dump(doc, allow_unicode=True))


@st.composite
def mutated(draw):
    doc = copy.deepcopy(draw(st.sampled_from(SHIPPED)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in key_paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        kind = draw(st.sampled_from(["delete", "replace", "extra", "rename"]))
        if kind == "delete":
            del parent[last]
        elif kind == "replace":
            parent[last] = draw(documents)
        elif kind == "extra" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = draw(scalars)
        elif kind == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = parent.pop(last)
    return doc


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_mutated_shipped_scenarios(doc):
    check(yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(alphabet=st.sampled_from(list("name:steps- {}[]\n\t'\"#&*!|>%@`,?0123456789abcxyz")), max_size=200))
def test_random_text(text):
    check(text)


def test_no_process_was_started():
    before = children_before()
    for doc in SHIPPED:
        broken = dict(doc, steps=[{"crash": {"node": "nobody"}}])
        check(yaml.safe_dump(broken))
    assert children_before() == before
