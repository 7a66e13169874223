"""Run directories: every run has an id and its own directory holding its inputs, status,
events and results, written atomically, so the directory alone explains the run. RunDir is the
one writer of a run's files: whole files (`write_json`, `write_jsonl`, `write_text`), appended
lines (`event`, `append_jsonl`) and the output streams of processes the run starts (`log_stream`).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from testbed.state import write_json_atomic, write_text_atomic

STATUSES = ("running", "passed", "failed", "error")


@dataclass(frozen=True)
class RunDir:
    root: Path

    @classmethod
    def create(cls, runs_dir: Path, kind: str) -> "RunDir":
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{secrets.token_hex(3)}"
        root = runs_dir / run_id
        root.mkdir(parents=True)
        run = cls(root)
        run.set_status("running")
        return run

    @property
    def id(self) -> str:
        return self.root.name

    def set_status(self, status: str, **extra) -> None:
        assert status in STATUSES, status
        write_json_atomic(self.root / "status.json", {"status": status, "time": time.time(), **extra})

    def write_json(self, name: str, data) -> Path:
        path = self.root / name
        write_json_atomic(path, data)
        return path

    def write_jsonl(self, name: str, rows) -> Path:
        """The whole file at once, one compact JSON object per line (atomically)."""
        path = self.root / name
        write_text_atomic(path, "".join(json.dumps(row, sort_keys=True, separators=(",", ":"), default=str) + "\n"
                                        for row in rows))
        return path

    def append_jsonl(self, name: str, row: dict) -> None:
        """One line at the end of `name`, in one write: appenders in other threads or processes
        (the Solvers' tasks.jsonl) never interleave; a reader keeps whole lines."""
        line = (json.dumps(row, sort_keys=True, default=str) + "\n").encode()
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def write_text(self, name: str, text: str) -> Path:
        """A text file of the run (logs/<node>.log, report.html), atomically."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
        return path

    def log_stream(self, name: str) -> BinaryIO:
        """A new, empty file of the run for a child process's stdout/stderr (a Locust worker's log);
        the caller closes it once the process has ended."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("wb")

    def event(self, kind: str, at: float | None = None, /, **data) -> dict:
        """Append one event to events.jsonl, the run's one event log: {"time", "event", fields...}
        (`at`: when it happened, if not now; both positional, so any field name is free). Every
        writer of events goes through here."""
        event = {"time": round(time.time() if at is None else at, 3), "event": kind, **data}
        self.append_jsonl("events.jsonl", event)
        return event


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a run's .jsonl file ([] when there is none)."""
    if not path.exists():
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]
