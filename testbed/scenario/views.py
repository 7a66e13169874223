"""The same eth_call views on every node at the same block: activity counters and task states.

Calls are built once from the deployment's ABIs (offline encoding) and sent raw in each
node's JSON-RPC batch; the raw return data is compared across nodes (any difference is a
state mismatch) and decoded only for the samples.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from eth_abi import decode
from eth_utils.abi import get_abi_output_types
from web3 import Web3

from testbed.cti.model import Kind, TaskState


@dataclass(frozen=True)
class View:
    key: str  # e.g. "activity org 2", "task 7"
    to: str
    data: str
    kind: str  # activity | task | task_count


class StateViews:
    """Which views to compare: per-org activity counters, the task count and watched tasks."""

    def __init__(self, deployment, org_ids: dict[str, int]) -> None:
        from testbed.cti.artifacts import load

        w3 = Web3()
        self.deployment = deployment
        self.since_block = max(r.block for r in deployment.contracts.values())
        self._activity = w3.eth.contract(address=deployment.address("Activity"), abi=load("Activity").abi)
        self._tasks = w3.eth.contract(address=deployment.address("Tasks"), abi=load("Tasks").abi)
        self._task_types = get_abi_output_types(self._tasks.get_function_by_name("task").abi)
        self.org_ids = dict(org_ids)
        self._watched: set[int] = set()
        self._lock = threading.Lock()

    def add_org(self, org: str, org_id: int) -> None:
        """An organization that joined during the run: its activity counters are compared too."""
        with self._lock:
            self.org_ids[org] = int(org_id)

    def watch_task(self, task_id: int) -> None:
        with self._lock:
            self._watched.add(int(task_id))

    def views(self) -> list[View]:
        with self._lock:
            orgs = sorted(self.org_ids.items())
        out = [View(f"activity {org}", self._activity.address, self._activity.encode_abi("countsOf", [oid]), "activity")
               for org, oid in orgs]
        out.append(View("task count", self._tasks.address, self._tasks.encode_abi("taskCount", []), "task_count"))
        with self._lock:
            watched = sorted(self._watched)
        out += [View(f"task {t}", self._tasks.address, self._tasks.encode_abi("task", [t]), "task") for t in watched]
        return out

    def decode(self, view: View, raw: str) -> object:
        """A readable value for the samples (the comparison uses the raw data). A call a node
        refused (e.g. a task not yet created at the compared block) stays as it was answered."""
        if not isinstance(raw, str) or not raw.startswith("0x"):
            return raw
        try:
            data = bytes.fromhex(raw[2:])
            if not data:
                return None
            if view.kind == "activity":
                counts = decode(["uint64[15]"], data)[0]
                return {k.name.lower(): int(counts[k]) for k in Kind if counts[k]}
            if view.kind == "task_count":
                return int(decode(["uint256"], data)[0])
            task = decode(self._task_types, data)[0]
            return TaskState(task[4]).name.lower()
        except Exception:  # undecodable data is still compared raw
            return raw[:66]
