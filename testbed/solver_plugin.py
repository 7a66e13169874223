"""The organizations' Solvers as the harness sees them: one interface, provided by a plugin.

testbed never imports the `solver` package. It starts, stops and lists Solvers, writes sample
intelligence for a listing, seeds listings and derives a consumer's delivery key through the
object the entry point group `cti_testbed.solvers` names; the `solver` package registers
`solver.plugin:PLUGIN` there (pyproject.toml). Without a plugin nothing delivers CTI: the
commands that need a Solver say so in one line, and the rest of the harness works without it.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any, Callable, Protocol

from testbed.errors import TestbedError

ENTRY_POINT_GROUP = "cti_testbed.solvers"
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


class SolverUnavailable(TestbedError):
    """Something needs a Solver and no Solver plugin is installed."""


class SolverPlugin(Protocol):
    def start(self, net, progress: Progress = _quiet, *, orgs: list[str] | None = None, wait: bool = True,
              restart: bool = False) -> list[str]:
        """Start the Solvers of `orgs` (default: every org with `solver: true`); the orgs started."""
        ...

    def stop(self, net, progress: Progress = _quiet, *, orgs: list[str] | None = None) -> list[str]:
        """Stop the running Solvers of `orgs` (default: all); the orgs stopped."""
        ...

    def status(self, net) -> list[Any]:
        """One row per organization (`to_json()` for machines)."""
        ...

    def sample_intel(self, net, org: str, title: str) -> tuple[str, bytes]:
        """A sample MISP event titled `title` in `org`'s intelligence store: (its UUID, the
        keccak256 of the bytes its Solver will deliver), what a listing names."""
        ...

    def store_intel(self, net, org: str, raw: bytes) -> tuple[str, bytes]:
        """A given MISP event (JSON bytes, checked) in `org`'s intelligence store: (its UUID, the
        keccak256 of the bytes its Solver will deliver)."""
        ...

    def seed(self, net, org: str, count: int, **options) -> list[Any]:
        """`count` sample events in `org`'s store, listed on-chain by its publisher account."""
        ...

    def delivery_public_key(self, private_key: bytes | str) -> bytes:
        """The public key a request carries, to which the Solver encrypts the delivery."""
        ...

    def pids(self, net) -> dict[str, int]:
        """The running Solvers' pids by process name (`solver-<org>`), for resource sampling."""
        ...


@cache
def solver_plugin() -> SolverPlugin | None:
    """The installed Solver plugin, or None."""
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        return entry.load()
    return None


def require_solver_plugin() -> SolverPlugin:
    plugin = solver_plugin()
    if plugin is None:
        raise SolverUnavailable("no Solver is installed: nothing delivers CTI or finishes tasks",
                                hint=f"install this project with its solver package (pip install -e .); it registers "
                                     f"the entry point group {ENTRY_POINT_GROUP!r}")
    return plugin
