"""The network's state directory: `.testbed/<network>/` holds everything needed to inspect,
stop or resume a network after the harness itself has gone (spec snapshot, keys, genesis,
node directories, pids, logs, deployment, runs).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from testbed.backends.base import NodeProcess
from testbed.errors import StateError


def state_root() -> Path:
    root = os.environ.get("TESTBED_HOME")
    return Path(root) if root else Path.cwd() / ".testbed"


def write_json_atomic(path: Path, data) -> None:
    """Write JSON so that a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class StateDir:
    root: Path

    @classmethod
    def for_network(cls, name: str, base: Path | None = None) -> "StateDir":
        """The state directory of network `name`: a name is checked before any path is built from
        it, so `../victim` can never point outside the state root."""
        import re

        from testbed.spec.network import NAME_PATTERN

        if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
            raise StateError(f"{name!r} is not a network name",
                             hint="network names are lower-case letters, digits and '-', starting with a letter, "
                                  "at most 24 characters")
        return cls((base or state_root()) / name)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def spec_file(self) -> Path:
        return self.root / "spec.json"

    @property
    def network_file(self) -> Path:
        return self.root / "network.json"

    @property
    def genesis_file(self) -> Path:
        return self.root / "genesis.json"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def deployment_file(self) -> Path:
        return self.root / "deployment.json"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def node_dir(self, node: str) -> Path:
        return self.root / "nodes" / node

    def log_file(self, node: str) -> Path:
        return self.node_dir(node) / "node.log"

    def pid_file(self, node: str) -> Path:
        return self.node_dir(node) / "pid.json"

    def marker(self, node: str) -> str:
        """Appears in the node process's command line (its data dir), identifying it beside its pid."""
        return f"{self.node_dir(node)}/"

    def exists(self) -> bool:
        return self.network_file.is_file()

    def read_pid(self, node: str) -> NodeProcess | None:
        try:
            data = json.loads(self.pid_file(node).read_text())
            return NodeProcess(name=node, pid=int(data["pid"]), marker=data["marker"])
        except (OSError, ValueError, KeyError):
            return None

    def write_pid(self, proc: NodeProcess) -> None:
        write_json_atomic(self.pid_file(proc.name), {"pid": proc.pid, "marker": proc.marker})

    def clear_pid(self, node: str) -> None:
        self.pid_file(node).unlink(missing_ok=True)

    def tail_log(self, node: str, lines: int = 12) -> list[str]:
        try:
            with open(self.log_file(node), "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - 64 * 1024))
                text = handle.read().decode(errors="replace")
        except OSError:
            return []
        return text.strip().splitlines()[-lines:]


def list_networks(base: Path | None = None) -> list[StateDir]:
    root = base or state_root()
    if not root.is_dir():
        return []
    return [StateDir(p) for p in sorted(root.iterdir()) if (p / "network.json").is_file()]
