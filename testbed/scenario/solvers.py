"""The seam to the organizations' Solvers (issue 5: the `solver/` package, `testbed solvers start|stop`).

The scenario engine only needs: is there a Solver implementation at all, start or stop
one organization's Solver. `solver_control(network)` returns the adapter for this tree;
while the Solver package is not in the tree it returns `MissingSolvers`, whose every
operation fails with a message naming the missing piece, so a scenario that needs
delivery fails (or its test skips) honestly instead of faking deliveries.
"""

from __future__ import annotations

import importlib.util
from typing import Protocol

from testbed.errors import TestbedError

MISSING = "no Solver in this tree (the solver/ package of issue 5): nothing delivers CTI or finishes tasks"


class SolverUnavailable(TestbedError):
    """The scenario needs a Solver and this tree has none."""


class SolverControl(Protocol):
    available: bool

    def start(self, org: str) -> None: ...

    def stop(self, org: str) -> None: ...

    def stop_all(self, everything: bool = False) -> None: ...


class MissingSolvers:
    available = False

    def start(self, org: str) -> None:
        raise SolverUnavailable(MISSING)

    def stop(self, org: str) -> None:
        return None  # nothing runs, so stopping is already true

    def stop_all(self, everything: bool = False) -> None:
        return None


class ManagedSolvers:
    """The Solver package's own process management (solver.manage: start_solvers / stop_solvers)."""

    available = True

    def __init__(self, net) -> None:
        self.net = net
        self.started: set[str] = set()

    def start(self, org: str) -> None:
        from solver.manage import start_solvers

        try:
            start_solvers(self.net, orgs=[org])
        except Exception as exc:  # noqa: BLE001 - any failure of the Solver's start is evidence, not a crash
            raise SolverUnavailable(f"the Solver of {org} did not start: {exc}") from None
        self.started.add(org)

    def stop(self, org: str) -> None:
        from solver.manage import stop_solvers

        stop_solvers(self.net, orgs=[org])
        self.started.discard(org)

    def stop_all(self, everything: bool = False) -> None:
        """Stop the Solvers this run started (with `everything`, every Solver of the network)."""
        from solver.manage import stop_solvers

        if everything:
            stop_solvers(self.net)
            self.started.clear()
        for org in sorted(self.started):
            self.stop(org)


def solvers_in_tree() -> bool:
    try:
        return importlib.util.find_spec("solver.manage") is not None
    except (ImportError, ValueError):
        return False


def solver_control(net) -> SolverControl:
    return ManagedSolvers(net) if solvers_in_tree() else MissingSolvers()


def intel_for(net, org: str, title: str) -> tuple[str, bytes] | None:
    """With the Solver in the tree: a sample MISP event written to the org's intelligence store,
    returned as (MISP uuid, content hash) for the listing, so its Solver can deliver it."""
    if not solvers_in_tree():
        return None
    import random

    from eth_utils import keccak
    from solver.intel import DirectoryStore
    from solver.manage import intel_dir
    from solver.seed import sample_event

    event = sample_event(random.Random(f"{net.name}:{org}:{title}"), org, 0)
    event.info = title
    path = DirectoryStore(intel_dir(net, org)).put(event)
    return str(event.uuid), keccak(path.read_bytes())
