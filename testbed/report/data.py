"""Everything a report needs, read from the run directory (or taken from a live recorder)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from testbed.load.records import read_jsonl


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
    activity: object = None  # activity.json: per-organization activity from the CTI contracts
    spec: dict | None = None

    @classmethod
    def load(cls, root: Path) -> "RunData":
        root = Path(root)
        data = cls(root=root, **{name: read_jsonl(root / f"{name}.jsonl")
                                 for name in ("txs", "blocks", "heads", "rates", "resources", "events", "reorgs")})
        data.status = _read_json(root / "status.json")
        data.bench = _read_json(root / "bench.json")
        data.agreement = _read_json(root / "agreement.json")
        data.activity = _read_json(root / "activity.json")
        data.spec = _read_json(root / "spec.json")
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
        return cls(txs=[r.to_json() for r in recorder.rows], blocks=list(recorder.blocks), heads=list(recorder.heads),
                   rates=list(recorder.rates), resources=list(recorder.resources),
                   reorgs=list(recorder.reorgs))
