"""The seam to the organizations' Solvers for the scenario engine (through the Solver plugin,
testbed/solver_plugin.py).

The scenario engine only needs: is there a Solver implementation at all, start or stop
one organization's Solver. `solver_control(network)` returns the adapter; without a Solver
plugin it returns `MissingSolvers`, whose every operation fails with a message naming the
missing piece, so a scenario that needs delivery fails honestly instead of faking deliveries.
"""

from __future__ import annotations

from typing import Protocol

from testbed.solver_plugin import SolverUnavailable, require_solver_plugin, solver_plugin

MISSING = "no Solver is installed (the solver package's plugin): nothing delivers CTI or finishes tasks"


class SolverControl(Protocol):
    available: bool

    def start(self, org: str) -> None: ...

    def stop(self, org: str) -> None: ...

    def stop_all(self, everything: bool = False) -> None: ...

    def use_network(self, net) -> None:
        """After a join or leave: act on the new Network object."""
        ...


class MissingSolvers:
    available = False

    def start(self, org: str) -> None:
        raise SolverUnavailable(MISSING)

    def stop(self, org: str) -> None:
        return None  # nothing runs, so stopping is already true

    def stop_all(self, everything: bool = False) -> None:
        return None

    def use_network(self, net) -> None:
        return None


class ManagedSolvers:
    """The Solver plugin's own process management, for the orgs a run starts."""

    available = True

    def __init__(self, net, plugin) -> None:
        self.net = net
        self.plugin = plugin
        self.started: set[str] = set()

    def start(self, org: str) -> None:
        try:
            self.plugin.start(self.net, orgs=[org])
        except Exception as exc:  # noqa: BLE001 - any failure of the Solver's start is evidence, not a crash
            raise SolverUnavailable(f"the Solver of {org} did not start: {exc}") from None
        self.started.add(org)

    def stop(self, org: str) -> None:
        self.plugin.stop(self.net, orgs=[org])
        self.started.discard(org)

    def use_network(self, net) -> None:
        self.net = net

    def stop_all(self, everything: bool = False) -> None:
        """Stop the Solvers this run started (with `everything`, every Solver of the network)."""
        if everything:
            self.plugin.stop(self.net)
            self.started.clear()
        for org in sorted(self.started):
            self.stop(org)


def solvers_in_tree() -> bool:
    return solver_plugin() is not None


def solver_control(net) -> SolverControl:
    plugin = solver_plugin()
    return ManagedSolvers(net, plugin) if plugin is not None else MissingSolvers()


def store_event(net, org: str, raw: bytes) -> tuple[str, bytes]:
    """A given MISP event put in the org's intelligence store: (its UUID, the keccak256 of the bytes
    its Solver will deliver). Needs the Solver (it owns the store)."""
    return require_solver_plugin().store_intel(net, org, raw)


def intel_for(net, org: str, title: str) -> tuple[str, bytes] | None:
    """With a Solver: a sample MISP event written to the org's intelligence store, returned as
    (MISP uuid, content hash) for the listing, so its Solver can deliver it."""
    plugin = solver_plugin()
    return plugin.sample_intel(net, org, title) if plugin is not None else None
