"""Local backend: every node is a child process on 127.0.0.1 with its own ports."""

from __future__ import annotations

import signal
from pathlib import Path

from testbed.backends import process
from testbed.backends.base import NodeProcess
from testbed.clients.base import NodePlan
from testbed.errors import NotSupportedError


class LocalBackend:
    name = "local"
    shares_filesystem = True
    local_processes = True
    resource_source = "psutil"

    def runs_image_of(self, client: str) -> bool:
        return False  # processes of the toolchain's builds

    def __init__(self, network: str = "", state_dir: Path | None = None) -> None:
        self.network = network

    def host_for(self, org_index: int, node_index: int) -> str:
        return "127.0.0.1"

    def prepare(self, org_names: list[str]) -> None:
        return None

    def run(self, node: NodePlan, argv: list[str], env: dict[str, str], log_path: Path, timeout: float) -> None:
        process.run_to_completion(node.name, argv, env, log_path, timeout)

    def start(self, node: NodePlan, argv: list[str], env: dict[str, str], log_path: Path, marker: str) -> NodeProcess:
        return process.spawn(node.name, argv, env, log_path, marker)

    def is_alive(self, proc: NodeProcess) -> bool:
        return process.is_alive(proc)

    def stop(self, proc: NodeProcess, timeout: float = 20.0) -> None:
        process.stop(proc, timeout)

    def kill(self, proc: NodeProcess) -> None:
        process.kill(proc)

    def pause(self, proc: NodeProcess) -> None:
        process.send(proc, signal.SIGSTOP)

    def resume(self, proc: NodeProcess) -> None:
        process.send(proc, signal.SIGCONT)

    def partition(self, groups: list[list[str]]) -> None:
        raise NotSupportedError("the local backend cannot partition the network: all nodes share 127.0.0.1",
                                hint="use 'backend: netns' in the network spec")

    def delay(self, org: str, delay_ms: int, jitter_ms: int = 0, loss_pct: float = 0.0) -> None:
        raise NotSupportedError("the local backend cannot delay one organization's link",
                                hint="use 'backend: netns' in the network spec")

    def heal(self) -> None:
        return None

    def teardown(self) -> None:
        return None
