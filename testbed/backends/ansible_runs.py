"""Playbook runs through ansible-runner: the seam between the ansible backend and Ansible.

Every run has an ident and its own artifact directory under the network's run dir
(`<state>/runs/ansible/<ident>/`: status, rc, stdout, job_events/ written by ansible-runner,
plus the extra vars it was given, which never hold secrets: keys are files on disk, laid out
by path). Events are streamed to a progress callback as they happen.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from testbed import shipped
from testbed.errors import BackendError

PLAYBOOKS = shipped.path("infra", "ansible")
Progress = Callable[[str], None]


@dataclass
class PlaybookResult:
    ident: str
    status: str  # ansible-runner's words: successful | failed | timeout | canceled
    rc: int
    artifact_dir: Path
    messages: dict[str, list[str]] = field(default_factory=dict)  # debug task name -> msgs, by host
    failures: list[str] = field(default_factory=list)  # "host: task: message"

    @property
    def ok(self) -> bool:
        return self.status == "successful" and self.rc == 0


class PlaybookRunner(Protocol):
    def run(self, playbook: str, *, inventory: Path, extravars: dict, limit: str | None, ident: str,
            timeout: float, progress: Progress) -> PlaybookResult:
        ...


def _failure_text(event: dict) -> str:
    data = event.get("event_data", {})
    res = data.get("res", {}) or {}
    text = res.get("msg") or res.get("stderr") or res.get("module_stderr") or res.get("reason") or ""
    if not text and res.get("results"):
        text = next((r.get("msg") or r.get("stderr") or "" for r in res["results"] if r.get("failed")), "")
    return f"{data.get('host', '?')}: {data.get('task', '?')}: {str(text).strip()[:400]}"


class AnsibleRunner:
    """Runs infra/ansible playbooks with ansible-runner (imported lazily: it is heavy)."""

    def __init__(self, private_dir: Path, artifact_dir: Path, playbooks: Path = PLAYBOOKS) -> None:
        self.private_dir = private_dir
        self.artifact_dir = artifact_dir
        self.playbooks = playbooks
        self._lock = threading.Lock()

    def run(self, playbook: str, *, inventory: Path, extravars: dict, limit: str | None, ident: str,
            timeout: float, progress: Progress) -> PlaybookResult:
        import ansible_runner

        messages: dict[str, list[str]] = {}
        failures: list[str] = []
        counts = {"ok": 0, "changed": 0}

        def on_event(event: dict) -> bool:
            kind = event.get("event", "")
            data = event.get("event_data", {})
            if kind == "playbook_on_task_start" and playbook != "node.yml":  # node runs: one line at the end
                progress(f"ansible {playbook}: {data.get('task', '').strip()}")
            elif kind == "runner_on_ok":
                counts["ok"] += 1
                counts["changed"] += bool((data.get("res") or {}).get("changed"))
                msg = (data.get("res") or {}).get("msg")
                if data.get("task", "").startswith("testbed_") and msg is not None:
                    messages.setdefault(data["task"], []).append(str(msg))
            elif kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
                failures.append(_failure_text(event))
                progress(f"ansible {playbook}: FAILED {failures[-1]}")
            return True

        envvars = {
            "ANSIBLE_CONFIG": str(self.playbooks / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(self.playbooks / "roles"),
            "ANSIBLE_LOCAL_TEMP": str(self.private_dir / "tmp"),
            "ANSIBLE_HOME": str(self.private_dir / "home"),
            "ANSIBLE_NOCOLOR": "1",
            # no multiplexing options of ansible's own: the inventory's ssh args carry ours
            # (a control dir the backend closes at teardown)
            "ANSIBLE_SSH_ARGS": "-C",
            # the controller's ansible-playbook sits beside this Python (the project's venv)
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.private_dir.mkdir(parents=True, exist_ok=True)
        self.artifact_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        # one private data dir per run: ansible-runner writes env/ files there, and node
        # actions run concurrently (parallel database inits)
        run_private = self.private_dir / "runs" / ident
        run_private.mkdir(parents=True, exist_ok=True)
        runner = ansible_runner.run(
            private_data_dir=str(run_private), project_dir=str(self.playbooks), playbook=playbook,
            inventory=str(inventory), extravars=extravars, limit=limit, ident=ident,
            artifact_dir=str(self.artifact_dir), envvars=envvars, timeout=int(timeout), quiet=True,
            event_handler=on_event, settings={"suppress_ansible_output": True},
            # without a cancel callback ansible-runner installs its own SIGINT/SIGTERM handlers for good,
            # and Ctrl-C no longer stops this process (a scenario on an ansible network ran on)
            cancel_callback=lambda: False,
        )
        result = PlaybookResult(ident=ident, status=runner.status, rc=runner.rc if runner.rc is not None else -1,
                                artifact_dir=self.artifact_dir / ident, messages=messages, failures=failures)
        what = f"{playbook} {extravars.get('action', '')} {extravars.get('node', '')}".strip()
        progress(f"ansible {what}: {result.status} in {time.monotonic() - started:.1f}s "
                 f"({counts['ok']} ok, {counts['changed']} changed; artifacts {result.artifact_dir})")
        return result


def require(result: PlaybookResult, what: str) -> PlaybookResult:
    if result.ok:
        return result
    reason = result.failures[0] if result.failures else f"ansible-runner status {result.status}, rc {result.rc}"
    raise BackendError(f"{what} failed: {reason}", hint=f"ansible run artifacts in {result.artifact_dir}")
