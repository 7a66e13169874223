"""Per-task timing records for the scenario and report layers: JSON lines, one per task and side.

The Solver appends {"side": "solver", ...} when a task reaches a terminal step; the
consumer appends {"side": "consumer", ...} when it has consumed (or given up on) a
delivery. A crash between the append and the journal noting it can repeat a line: readers
keep the last line per (task, side). `load_tasks` joins both sides by task id and adds the
latencies.
"""

from __future__ import annotations

import json
from pathlib import Path

from testbed.runs import RunDir

RECORDS_FILE = "tasks.jsonl"


def append(directory: Path, record: dict) -> None:
    """One line at the end of `directory`/tasks.jsonl (a run directory, or the Solver's own)."""
    RunDir(Path(directory)).append_jsonl(RECORDS_FILE, record)  # one write: concurrent appenders do not interleave


def read(path: Path) -> list[dict]:
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a torn last line after a crash
    return out


def load_tasks(paths: list[Path]) -> dict[int, dict]:
    """task id -> merged record of every side, with latencies in seconds where known:
    `request_to_accepted`, `request_to_finished` (block timestamps) and `finished_to_consumed`,
    `request_to_consumed` (wall clock of the consumer)."""
    merged: dict[int, dict] = {}
    for path in paths:
        for record in read(path):
            side = record.get("side", "?")
            merged.setdefault(int(record["task"]), {})[side] = record
    out: dict[int, dict] = {}
    for task, sides in merged.items():
        s, c = sides.get("solver", {}), sides.get("consumer", {})
        row = {"task": task, "solver": s or None, "consumer": c or None}
        if s.get("requested_time") is not None:
            for step in ("accepted", "finished"):
                if s.get(f"{step}_time") is not None:
                    row[f"request_to_{step}"] = s[f"{step}_time"] - s["requested_time"]
        if c.get("consumed_at") is not None:
            if c.get("requested_at") is not None:
                row["request_to_consumed"] = c["consumed_at"] - c["requested_at"]
            if c.get("finished_seen_at") is not None:
                row["finished_to_consumed"] = c["consumed_at"] - c["finished_seen_at"]
        out[task] = row
    return out
