"""The shape every backend has (local, netns, docker, ansible): backends *act* on nodes.

A backend starts a node from a command line the client built, and stops, kills, pauses
or resumes it by pid. Faults it cannot produce raise NotSupportedError naming the backend
that can.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from testbed.clients.base import NodePlan
from testbed.state import NodeProcess  # noqa: F401 (re-exported: what backends return)


class Backend(Protocol):
    name: str
    # the nodes' files (and IPC sockets) are on this machine's filesystem: local processes,
    # namespaces, containers with bind mounts, lab hosts; not an operator's remote hosts
    shares_filesystem: bool
    # nodes are processes of this machine that run the client's command line as built (local, netns):
    # companion tools of the toolchain (geth's clef) can run beside them
    local_processes: bool
    # where a run's per-node CPU/memory/disk/network series come from by default (testbed.monitoring.resources):
    # "psutil" (the nodes are processes of this machine) or "prometheus" (what each node reports, wherever it runs)
    resource_source: str

    def host_for(self, org_index: int, node_index: int) -> str:
        """The address a node binds to and peers dial."""
        ...

    def runs_image_of(self, client: str) -> bool:
        """Whether this backend runs `client` from its pinned container image (no local build)."""
        ...

    def prepare(self, org_names: list[str]) -> None:
        """Create whatever the nodes need before they start (namespaces, links)."""
        ...

    def run(self, node: NodePlan, argv: list[str], env: dict[str, str], log_path: Path, timeout: float) -> None:
        """Run a one-off command for a node to completion (e.g. database init)."""
        ...

    def start(self, node: NodePlan, argv: list[str], env: dict[str, str], log_path: Path, marker: str) -> NodeProcess:
        ...

    def is_alive(self, proc: NodeProcess) -> bool:
        ...

    def stop(self, proc: NodeProcess, timeout: float = 20.0) -> None:
        """Graceful stop (SIGTERM), then SIGKILL after `timeout`."""
        ...

    def kill(self, proc: NodeProcess) -> None:
        """SIGKILL: a crash."""
        ...

    def pause(self, proc: NodeProcess) -> None:
        ...

    def resume(self, proc: NodeProcess) -> None:
        ...

    def partition(self, groups: list[list[str]]) -> None:
        ...

    def delay(self, org: str, delay_ms: int, jitter_ms: int = 0, loss_pct: float = 0.0) -> None:
        ...

    def heal(self) -> None:
        ...

    def teardown(self) -> None:
        """Remove everything prepare() created."""
        ...
