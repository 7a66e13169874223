"""The network's state directory: `.testbed/<network>/` holds everything needed to inspect,
stop or resume a network after the harness itself has gone (spec snapshot, keys, genesis,
node directories, pids, logs, deployment, runs).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from testbed.errors import StateError


@dataclass(frozen=True)
class NodeProcess:
    """How to find a running process (a node, a Solver) again, also from another harness
    process: what its pid file holds."""

    name: str
    pid: int
    marker: str  # a string that appears in the process's command line (its node directory)


def state_root() -> Path:
    root = os.environ.get("TESTBED_HOME")
    return Path(root) if root else Path.cwd() / ".testbed"


MAX_SOCKET_PATH = 107  # bytes: a Unix socket path (sun_path) holds 108 with its terminating NUL


def socket_root() -> Path:
    """Where node IPC sockets live: a short path, since a Unix socket path is at most 107 bytes and
    state directories can be deep. TESTBED_RUN_DIR, else $XDG_RUNTIME_DIR/cti-testbed, else
    /tmp/cti-testbed-<uid>; owned by this user, mode 0700 (checked before use)."""
    if os.environ.get("TESTBED_RUN_DIR"):
        return Path(os.environ["TESTBED_RUN_DIR"])
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "cti-testbed"
    return Path(tempfile.gettempdir()) / f"cti-testbed-{os.getuid()}"


def private_dirs(*paths: Path) -> Path:
    """Create each of `paths` in turn mode 0700, or check that the existing one is a real directory
    of this user that nobody else can enter (sockets in it are reachable by us only); the last."""
    for directory in paths:
        try:
            directory.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create {directory} for the nodes' IPC sockets ({exc.strerror})",
                             hint="set TESTBED_RUN_DIR to a short directory of yours") from None
        info = os.lstat(directory)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
            raise StateError(f"{directory} is not a private directory of this user (owner, mode 0700)",
                             hint="remove it, or set TESTBED_RUN_DIR to a short directory of yours")
    return paths[-1]


def write_bytes_atomic(path: Path, data: bytes, mode: int | None = None, *, fsync: bool = False) -> None:
    """Write `data` to `path` so that a reader sees the old file or the whole new one, never half.

    The data goes to a new hidden file beside `path` (the directory is created if need be), which
    then replaces `path`. That file is created with `mode`, less the umask, as open() does; None
    is open()'s 0o666. With `fsync`, the data is on disk before the rename (making the rename
    itself durable is the caller's: fsync the directory).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str, mode: int | None = None, *, fsync: bool = False) -> None:
    """write_bytes_atomic of `text` in UTF-8."""
    write_bytes_atomic(path, text.encode(), mode, fsync=fsync)


def write_json_atomic(path: Path, data) -> None:
    """Write JSON (indented, keys sorted) atomically; the file is the owner's only (0600)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", 0o600)


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

    def genesis_file_of(self, client: str, network_client: str) -> Path:
        """The genesis a client's nodes initialise from: genesis.json for the network's client, and
        genesis-<client>.json (the same block in that client's format) in a mixed network."""
        return self.genesis_file if client == network_client else self.root / f"genesis-{client}.json"

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

    @property
    def admin_dir(self) -> Path:
        """The directory of this network's node IPC sockets (admin and vote namespaces), outside the
        state directory because socket paths must be short; named after the network and its state
        root, so two state roots never share sockets."""
        tag = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:8]
        return socket_root() / f"{self.name}-{tag}"

    def admin_socket(self, node: str) -> Path:
        """Node `node`'s IPC socket; a path too long for a Unix socket is a clear error."""
        path = self.admin_dir / f"{node}.ipc"
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            raise StateError(f"the IPC socket path {path} is longer than {MAX_SOCKET_PATH} bytes",
                             hint="set TESTBED_RUN_DIR to a shorter directory")
        return path

    def signer_dir(self, node: str) -> Path:
        """The directory of node `node`'s external signer socket (clef), beside its IPC socket."""
        path = self.admin_dir / f"{node}-signer"
        if len(os.fsencode(path / "clef.ipc")) > MAX_SOCKET_PATH:
            raise StateError(f"the signer socket path {path / 'clef.ipc'} is longer than {MAX_SOCKET_PATH} bytes",
                             hint="set TESTBED_RUN_DIR to a shorter directory")
        return path

    def make_admin_dir(self) -> Path:
        return private_dirs(socket_root(), self.admin_dir)

    def remove_admin_dir(self) -> None:
        shutil.rmtree(self.admin_dir, ignore_errors=True)

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
