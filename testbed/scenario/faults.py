"""Faults on a running network, with a ledger so every one is healed, also when the run fails.

Each injection emits `fault_injected` and each heal `fault_healed` (with the fault's id,
kind and target), so a report can shade the fault periods. `heal_all()` is what the
engine calls in `finally`: it heals the network (partition, delay), resumes paused nodes
and restarts crashed ones, recording each.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

from testbed.errors import TestbedError


@dataclass
class Fault:
    id: int
    kind: str  # crash | pause | partition | delay
    target: str  # node name, org name, or groups as text
    detail: dict


class FaultLedger:
    def __init__(self, network, emit) -> None:
        self.net = network
        self.emit = emit
        self.active: dict[int, Fault] = {}
        self.interventions: list[dict] = []  # operator actions the harness took (e.g. rewinding a stuck branch)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def _open(self, kind: str, target: str, **detail) -> Fault:
        fault = Fault(next(self._ids), kind, target, detail)
        with self._lock:
            self.active[fault.id] = fault
        self.emit("fault_injected", fault=fault.id, kind=kind, target=target, **detail)
        return fault

    def _close(self, fault: Fault, how: str) -> None:
        with self._lock:
            self.active.pop(fault.id, None)
        self.emit("fault_healed", fault=fault.id, kind=fault.kind, target=fault.target, how=how)

    def _find(self, kind: str, target: str | None = None) -> list[Fault]:
        with self._lock:
            return [f for f in self.active.values() if f.kind == kind and (target is None or f.target == target)]

    def splits_network(self) -> bool:
        """A partition is active: branches are meant to differ and stall, nothing to rewind."""
        return bool(self._find("partition"))

    # ---- injections -------------------------------------------------------------------------
    def crash(self, node: str) -> Fault:
        self.net.kill_node(node)
        return self._open("crash", node)

    def pause(self, node: str) -> Fault:
        self.net.pause_node(node)
        return self._open("pause", node)

    def partition(self, groups: list[list[str]]) -> Fault:
        self.net.backend.partition(groups)
        return self._open("partition", " | ".join(",".join(g) for g in groups), groups=groups)

    def delay(self, org: str, ms: int, jitter_ms: int = 0, loss_pct: float = 0.0) -> Fault:
        self.net.backend.delay(org, ms, jitter_ms, loss_pct)
        return self._open("delay", org, ms=ms, jitter_ms=jitter_ms, loss_pct=loss_pct)

    # ---- heals ------------------------------------------------------------------------------
    def resume(self, node: str) -> None:
        self.net.resume_node(node)
        for fault in self._find("pause", node):
            self._close(fault, "resumed")

    def restart(self, node: str) -> None:
        """Start a crashed node again (or stop and start a running one) on its existing data."""
        crashed = self._find("crash", node)
        if self.net.process(node):
            paused = self._find("pause", node)
            if paused:
                self.resume(node)
            self.net.stop_node(node)
            self.emit("node_stopped", node=node)
        self.net.start_node(node)
        for fault in crashed:
            self._close(fault, "restarted")
        self.emit("node_started", node=node)

    def heal_network(self) -> None:
        link = self._find("partition") + self._find("delay")
        rewound = self.net.heal() if link else {}  # also un-sticks Clique branches left by a split
        if rewound:
            self.interventions.append({"rewound": rewound, "after": [f.kind for f in link]})
            self.emit("branches_reconciled", rewound=rewound)
        for fault in link:
            self._close(fault, "healed")

    def heal(self) -> None:
        """The `heal` step: paused nodes resumed and network faults healed (crashes need restart)."""
        for fault in self._find("pause"):
            self.resume(fault.target)
        self.heal_network()

    def end(self, fault: Fault) -> None:
        """End one fault (a step's `for:` ran out)."""
        if fault.kind == "crash":
            self.restart(fault.target)
        elif fault.kind == "pause":
            self.resume(fault.target)
        else:
            self.heal_network()

    def heal_all(self, *, restart_crashed: bool = True) -> list[str]:
        """Heal every active fault; never raises. Returns what could not be healed."""
        problems: list[str] = []
        order = {"pause": 0, "partition": 1, "delay": 1, "crash": 2}  # a paused node would stall the network heal
        with self._lock:
            faults = sorted(self.active.values(), key=lambda f: order.get(f.kind, 3))
        for fault in faults:
            try:
                if fault.kind in ("partition", "delay"):
                    self.heal_network()
                elif fault.kind == "pause":
                    self.resume(fault.target)
                elif fault.kind == "crash":
                    if restart_crashed:
                        self.restart(fault.target)
                    else:
                        self._close(fault, "network torn down")
            except TestbedError as exc:
                problems.append(f"{fault.kind} {fault.target}: {exc}")
            except Exception as exc:  # noqa: BLE001 - healing goes on with the next fault whatever broke this one
                problems.append(f"{fault.kind} {fault.target}: {exc.__class__.__name__}: {exc}")
        try:
            self.net.backend.heal()  # belt and braces: no rule survives the run
        except Exception as exc:  # noqa: BLE001 - reported as a problem of the heal, the run goes on
            problems.append(f"backend heal: {exc}")
        return problems
