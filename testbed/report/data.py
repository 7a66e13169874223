"""Everything a report needs, read from the run directory (or taken from a live recorder)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from testbed.runs import read_jsonl


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@dataclass
class RunData:
    txs: list[dict] = field(default_factory=list)
    blocks: list[dict] = field(default_factory=list)
    heads: list[dict] = field(default_factory=list)
    rates: list[dict] = field(default_factory=list)
    resources: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    reorgs: list[dict] = field(default_factory=list)
    root: Path | None = None
    status: dict | None = None
    bench: dict | None = None  # bench.json: steps and stop reason
    checks: list[dict] = field(default_factory=list)  # report.json (demo) / agreement.json checks
    agreement: dict | None = None  # agreement.json: {"agreed", "summary", ...}
    activity: dict | None = None  # activity.json: the pedometer read from the chain at the run's end
    spec: dict | None = None
    kind: str = "run"  # scenario | load | bench | demo, from what the directory holds
    assertions: list[dict] = field(default_factory=list)  # results.json (scenario): every assertion judged
    monitor: dict | None = None  # monitor.json (scenario): the agreement monitor's verdict
    phases: list[dict] = field(default_factory=list)  # load.json: figures per load phase (scenario) or the run
    error: str | None = None  # results.json / status.json: why the run stopped

    @classmethod
    def load(cls, root: Path) -> "RunData":
        root = Path(root)
        data = cls(root=root, **{name: read_jsonl(root / f"{name}.jsonl")
                                 for name in ("txs", "blocks", "heads", "rates", "resources", "events", "reorgs")})
        data.status = _read_json(root / "status.json")
        data.bench = _read_json(root / "bench.json")
        data.agreement = _read_json(root / "agreement.json")
        activity = _read_json(root / "activity.json")
        data.activity = activity if isinstance(activity, dict) else None
        data.spec = _read_json(root / "spec.json")
        load = _read_json(root / "load.json")
        data.phases = load if isinstance(load, list) else [load] if isinstance(load, dict) else []
        results = _read_json(root / "results.json")
        if isinstance(results, dict):  # a scenario run (the demo is one)
            data.kind = "scenario"
            data.assertions = list(results.get("assertions") or [])
            data.error = results.get("error")
            data.checks = [{"name": a["name"], "passed": a["passed"], "detail": a["detail"]} for a in data.assertions]
        elif data.bench is not None:
            data.kind = "bench"
        elif data.txs:
            data.kind = "load"
        monitor = _read_json(root / "monitor.json")
        if isinstance(monitor, dict):
            data.monitor = monitor
            if data.agreement is None:
                data.agreement = {"agreed": monitor.get("agreed"), "summary": _monitor_summary(monitor)}
        if not data.heads:
            data.heads = list(_heads_from_samples(root / "samples.jsonl"))
        if data.error is None and isinstance(data.status, dict):
            data.error = data.status.get("error")
        report = _read_json(root / "report.json")  # written by `testbed demo`
        if isinstance(report, dict):
            data.checks = list(report.get("checks", []))
            if data.agreement is None:
                agree = next((c for c in data.checks if "agree" in c.get("name", "")), None)
                if agree:
                    data.agreement = {"agreed": all(c["passed"] for c in data.checks if "agree" in c["name"]),
                                      "summary": agree.get("detail", "")}
        return data

    @classmethod
    def from_recorder(cls, recorder) -> "RunData":
        """The figures of a run in progress (the bench judges each step from these)."""
        return cls(txs=[r.to_json() for r in recorder.rows], blocks=list(recorder.blocks), heads=list(recorder.heads),
                   rates=list(recorder.rates), resources=list(recorder.resources),
                   reorgs=list(recorder.reorgs))


def _monitor_summary(m: dict) -> str:
    text = f"{m.get('heights_checked')} heights up to #{m.get('common_height')} compared on {len(m.get('nodes_at_end') or [])} nodes"
    if m.get("divergences"):
        text += f"; {len(m['divergences'])} divergent heights"
    text += f"; {len(m.get('reorgs') or [])} reorgs (max depth {m.get('max_reorg_depth', 0)}); {len(m.get('stalls') or [])} stalls"
    return text


def _heads_from_samples(path: Path):
    """samples.jsonl (the scenario monitor's samples) as head rows: time, node, head."""
    for row in read_jsonl(path):
        for node, info in (row.get("nodes") or {}).items():
            yield {"time": row["time"], "node": node, "head": info.get("head")}
