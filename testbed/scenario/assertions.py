"""Assertions of a scenario, judged from what the run recorded (pure: no network access).

Inputs are the monitor's verdict and head samples, the periods of named steps, the load
phases' transaction records and the final task states per node. Every result carries a
one-line detail and the evidence behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from testbed.consensus import HeadPoint, liveness
from testbed.metrics import percentile


# Throughput and latency bounds are service levels: a run judges them against the operator's figure,
# but what one machine reaches while it does other work is a benchmark figure, not a correctness
# property (tests check these were measured; benchmarks/ track the figures).
PERFORMANCE_KINDS = frozenset({"min_tps", "max_p95_latency"})


@dataclass
class AssertionResult:
    name: str
    kind: str
    passed: bool
    detail: str
    evidence: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "passed": self.passed, "detail": self.detail,
                "evidence": self.evidence}


@dataclass
class RunFacts:
    """What the assertions look at."""

    t0: float  # scenario start (wall clock)
    end: float
    verdict: object  # MonitorVerdict
    heads: list[HeadPoint]
    periods: dict[str, tuple[float, float]]  # step name -> (start, end), wall clock
    txs: list  # TxRecord of every load phase
    blocks: list  # the blocks the load phases read (dicts: testbed.chain.inclusion)
    tasks: dict[str, dict]  # alias -> {"id", "states": {node: state name}}
    step_errors: list[str] = field(default_factory=list)
    interventions: list[dict] = field(default_factory=list)  # e.g. stuck Clique branches rewound by the harness
    normal_reorg_depth: int = 0  # the engine's (testbed.engines): what `agreement` allows unless told otherwise


def judge(assertion, facts: RunFacts) -> AssertionResult:
    kind = assertion.kind
    result = {"agreement": _agreement, "liveness": _liveness, "no_lost_transactions": _lost_txs,
              "no_lost_tasks": _lost_tasks, "min_tps": _min_tps, "max_p95_latency": _p95}[kind](getattr(assertion, kind), facts)
    result.name, result.kind = assertion.label(), kind
    return result


def _r(passed: bool, detail: str, evidence: list | None = None) -> AssertionResult:
    return AssertionResult("", "", passed, detail, evidence or [])


def _agreement(spec, facts: RunFacts) -> AssertionResult:
    v = facts.verdict
    problems, evidence = [], []
    if not v.agreed:
        problems.append("nodes hold different blocks" if v.divergences else "no common block among live nodes")
        evidence += v.divergences[:5]
    allowed = facts.normal_reorg_depth if spec.max_reorg_depth is None else spec.max_reorg_depth
    if v.max_reorg_depth > allowed:
        deep = [r for r in v.reorgs if r["depth"] > allowed]
        problems.append(f"reorg of depth {v.max_reorg_depth} > allowed {allowed}")
        evidence += deep[:5]
    if spec.same_state and v.state_mismatches:
        problems.append(f"{len(v.state_mismatches)} state mismatch(es) at the same block")
        evidence += v.state_mismatches[:5]
    if spec.same_validators and not v.validator_sets_agree:
        problems.append("validator sets differ")
        evidence.append(v.validator_sets)
    same = (f"{v.heights_checked} heights up to #{v.common_height} identical on {len(v.nodes_at_end)} nodes" if v.agreed
            else f"first divergence: {v.divergences[0]['evidence']}" if v.divergences else "no common block")
    text = (f"{same}; "
            f"max reorg depth {v.max_reorg_depth} ({len(v.reorgs)} reorgs, allowed {allowed}"
            + (")" if spec.max_reorg_depth is not None else " for the engine)")
            + (f"; {v.transient_divergences} sample(s) saw a transient tip fork" if v.transient_divergences else ""))
    if facts.interventions:  # not hidden: the chain needed an operator's hand to become one chain again
        nodes = sorted({n for i in facts.interventions for n in i["rewound"]})
        after = sorted({a for i in facts.interventions for a in i.get("after", [])})
        text += (f"; after {'/'.join(after) or 'a heal'} the harness rewound {', '.join(nodes)} "
                 "off an equal-weight Clique branch (debug_setHead)")
        evidence += [{"operator_rewind": i} for i in facts.interventions]
    return _r(not problems, "; ".join(problems) + " — " + text if problems else text, evidence)


def window(spec, facts: RunFacts) -> tuple[float, float]:
    start, end = facts.t0, facts.end
    if spec.during:
        start, end = facts.periods.get(spec.during, (facts.t0, facts.end))
    if spec.start is not None:
        start = facts.t0 + spec.start
    if spec.end is not None:
        end = facts.t0 + spec.end
    return start + spec.skip, end


def _liveness(spec, facts: RunFacts) -> AssertionResult:
    start, end = window(spec, facts)
    where = f"from {start - facts.t0:.1f}s to {end - facts.t0:.1f}s"
    live = liveness(facts.heads, start, end)
    if live.seconds <= 0:
        return _r(False, f"no samples {where}")
    evidence = [{"window_s": [round(start - facts.t0, 2), round(end - facts.t0, 2)], "blocks": live.blocks,
                 "per_node": live.per_node}]
    if spec.must_stall:
        most = max(live.per_node.values(), default=live.blocks)
        ok = most <= spec.max_blocks
        return _r(ok, f"{where}: at most {most} new block(s) on any node (allowed {spec.max_blocks}): "
                      + ("stalled" if ok else "still growing"), evidence)
    rate = live.blocks_per_min or 0.0
    return _r(rate >= spec.min_blocks_per_min, f"{where}: {rate:.1f} blocks/min (need >= {spec.min_blocks_per_min:g})", evidence)


def _lost_txs(spec, facts: RunFacts) -> AssertionResult:
    if not facts.txs:
        return _r(False, "no load transactions were sent (add a load step)")
    lost = [t for t in facts.txs if t.status not in ("included", "rejected")]
    rejected = [t for t in facts.txs if t.status == "rejected"]
    included = len(facts.txs) - len(lost) - len(rejected)
    detail = f"{included} of {len(facts.txs) - len(rejected)} accepted transactions included"
    if rejected:
        detail += f"; {len(rejected)} refused at submission (never accepted, not lost: {rejected[0].error})"
    evidence = [{"hash": t.hash, "sender": t.sender, "nonce": t.nonce, "node": t.node, "status": t.status,
                 "error": t.error} for t in lost[:10]]
    if not included:
        return _r(False, "nothing was included: " + detail, evidence)
    return _r(not lost, (f"{len(lost)} LOST; " if lost else "") + detail, evidence)


def _lost_tasks(spec, facts: RunFacts) -> AssertionResult:
    if not facts.tasks:
        return _r(False, "no task was requested (add a request step)")
    bad = []
    for alias, info in facts.tasks.items():
        states = info.get("states", {})
        if not states:
            bad.append({"task": alias, "id": info.get("id"), "problem": "no live node answered"})
            continue
        missing = {n: s for n, s in states.items() if s in (None, "NONE")}
        differ = len(set(states.values())) > 1
        unfinished = spec.finished and any(s != "FINISHED" for s in states.values())
        if missing or differ or unfinished:
            bad.append({"task": alias, "id": info.get("id"), "states": states,
                        "problem": "missing on some node" if missing else "nodes disagree" if differ else "not finished"})
    what = "finished and identical" if spec.finished else "present and identical"
    detail = f"{len(facts.tasks) - len(bad)} of {len(facts.tasks)} tasks {what} on every live node"
    if bad:
        first = bad[0]
        detail += f"; e.g. task {first['task']} (id {first['id']}): {first['problem']} {first.get('states', '')}"
    return _r(not bad, detail, bad)


def _min_tps(value: float, facts: RunFacts) -> AssertionResult:
    included = [t for t in facts.txs if t.status == "included" and t.included_block is not None]
    stamps = {b["number"]: b["timestamp"] for b in facts.blocks}
    per_block: dict[int, int] = {}
    for t in included:
        per_block[t.included_block] = per_block.get(t.included_block, 0) + 1
    points = sorted((stamps[n], c) for n, c in per_block.items() if n in stamps)
    if len(points) < 2 or points[-1][0] == points[0][0]:
        return _r(False, f"not enough blocks with load transactions to measure ({len(points)})")
    tps = sum(c for _, c in points[1:]) / (points[-1][0] - points[0][0])
    return _r(tps >= value, f"{tps:.1f} included tx/s from block timestamps (need >= {value:g})",
              [{"blocks": len(points), "transactions": sum(c for _, c in points)}])


def _p95(value: float, facts: RunFacts) -> AssertionResult:
    latencies = [t.latency for t in facts.txs if t.status == "included" and t.latency is not None]
    if not latencies:
        return _r(False, "no included load transaction to measure")
    p95 = percentile(latencies, 95)
    return _r(p95 <= value, f"p95 submit-to-inclusion {p95:.2f}s over {len(latencies)} transactions (need <= {value:g}s)",
              [{"p50_s": percentile(latencies, 50), "p95_s": p95, "max_s": max(latencies)}])
