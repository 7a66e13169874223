"""Solver processes of a network: start, stop, status; paths and accounts of each org's Solver.

Each Solver runs as `python -m solver.cli run --network N --org O --home H --dir D/`
through the network's backend, on behalf of the org's first node: so on a netns backend it
lands in the org's namespace and binds its delivery endpoint to the node's address. Its pid
file (pid + marker, like a node's) and log are in solvers/<org>/ of the state dir; the
marker is that directory's path, which appears in the command line.

Accounts: each signing purpose of an org has its own account (`testbed.keys.OrgAccounts`):
the Solver signs with the org's solver account, the consumer side with its consumer account,
seeding with its publisher account; no other purpose signs with them.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from solver import sandbox
from solver.errors import SolverError
from testbed.backends.base import NodeProcess
from testbed.poll import poll_until
from testbed.state import write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
Progress = Callable[[str], None]
ENDPOINT_SLOT = 5  # NodePorts uses +0..+4 of a node's 10-port block; the Solver takes +5 (+6..+9 if busy)


def _quiet(_: str) -> None:
    return None


def role_accounts(net, org: str):
    """The org's accounts by purpose (publisher, consumer, solver, ...)."""
    if org not in net.keys.accounts:
        raise SolverError(f"network {net.name!r} has no organization {org!r}",
                          hint=f"organizations: {', '.join(net.keys.accounts)}")
    return net.keys.of(org)


def solver_orgs(net) -> list[str]:
    return [o.name for o in net.members if o.solver]


def solver_dir(net, org: str) -> Path:
    return net.state.root / "solvers" / org


def intel_dir(net, org: str) -> Path:
    return solver_dir(net, org) / "intel"


def consumer_dir(net, org: str) -> Path:
    return solver_dir(net, org) / "consumer"


def node_of(net, org: str):
    """The node an org's Solver talks to and runs beside: its first node, a running one if any."""
    nodes = [n for n in net.nodes if n.org == org]
    if not nodes:
        raise SolverError(f"network {net.name!r} has no organization {org!r}")
    return next((n for n in nodes if net.process(n.name)), nodes[0])


def depth_for(net, configured: int | None = None) -> int:
    """Confirmation depth: 0 on engines with immediate finality, else `configured` (default: the engine's)."""
    from testbed.engines import engine_of

    found = engine_of(net.spec)
    if found.final:
        return 0
    return found.confirmations if configured is None else configured


def endpoint_port(net, org: str) -> int:
    """The delivery port: recorded in solvers/<org>/port.json once chosen, so URIs stay valid."""
    from solver.delivery import port_free

    record = solver_dir(net, org) / "port.json"
    try:
        return int(json.loads(record.read_text())["port"])
    except (OSError, ValueError, KeyError):
        pass
    node = node_of(net, org)
    for slot in range(ENDPOINT_SLOT, 10):
        port = node.ports.p2p + slot
        if port_free(node.host, port):
            write_json_atomic(record, {"port": port, "host": node.host})
            return port
    raise SolverError(f"no free delivery port for {org} in {node.ports.p2p + ENDPOINT_SLOT}..{node.ports.p2p + 9}",
                      hint="stop what uses those ports or change ports.base")


def _pid_file(net, org: str) -> Path:
    return solver_dir(net, org) / "pid.json"


def read_proc(net, org: str) -> NodeProcess | None:
    try:
        data = json.loads(_pid_file(net, org).read_text())
        return NodeProcess(name=f"solver-{org}", pid=int(data["pid"]), marker=data["marker"])
    except (OSError, ValueError, KeyError):
        return None


def running(net, org: str) -> NodeProcess | None:
    proc = read_proc(net, org)
    return proc if proc and net.backend.is_alive(proc) else None


def log_file(net, org: str) -> Path:
    return solver_dir(net, org) / "solver.log"


def command(net, org: str, extra: list[str] | None = None) -> list[str]:
    return [sys.executable, "-m", "solver.cli", "run", "--network", net.name, "--org", org,
            "--home", str(net.state.root.parent), "--dir", f"{solver_dir(net, org)}/", *(extra or [])]


def start_one(net, org: str, *, extra: list[str] | None = None) -> NodeProcess:
    """Start one org's Solver (no-op if it runs); returns its process."""
    proc = running(net, org)
    if proc:
        return proc
    workdir = solver_dir(net, org)
    workdir.mkdir(parents=True, exist_ok=True)
    intel_dir(net, org).mkdir(parents=True, exist_ok=True)
    (workdir / "endpoint.json").unlink(missing_ok=True)
    endpoint_port(net, org)
    env = {"PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    argv = command(net, org, extra)
    if net.backend.local_processes and sandbox.available():  # only this org's secrets visible to it
        argv, env["TESTBED_SOLVER_SANDBOX"] = sandbox.sandboxed(argv, net.state.root, org), "1"
    started = net.backend.start(node_of(net, org), argv, env, log_file(net, org), f"{workdir}/")
    proc = NodeProcess(name=f"solver-{org}", pid=started.pid, marker=started.marker)
    write_json_atomic(_pid_file(net, org), {"pid": proc.pid, "marker": proc.marker})
    return proc


def wait_ready(net, orgs: list[str], timeout: float = 60.0) -> None:
    """Until each Solver has written its endpoint file (connected, reconciled, serving)."""
    left = list(orgs)

    def all_ready() -> bool:
        for org in list(left):
            if (solver_dir(net, org) / "endpoint.json").is_file():
                left.remove(org)
            elif not running(net, org):
                raise SolverError(f"the Solver of {org} exited during start-up: {_last_line(net, org)}",
                                  hint=f"log: {log_file(net, org)}")
        return not left

    poll_until(all_ready, timeout=timeout,
               error=lambda: SolverError(f"Solvers not ready after {timeout:.0f}s: {', '.join(left)}",
                                         hint=f"logs: {', '.join(str(log_file(net, o)) for o in left)}"))


def start_solvers(net, progress: Progress = _quiet, *, orgs: list[str] | None = None, wait: bool = True,
                  timeout: float = 60.0, restart: bool = False) -> list[str]:
    """Start the Solver of every org whose spec says `solver: true` (or of `orgs`); with
    `restart`, stop running ones first (after a redeploy: they serve the old contracts)."""
    if not net.state.deployment_file.is_file():
        raise SolverError(f"no contracts deployed on {net.name!r}: Solvers need them",
                          hint=f"run 'testbed deploy --network {net.name}'")
    chosen = solver_orgs(net) if orgs is None else orgs
    if restart:
        stop_solvers(net, progress, orgs=chosen)
    started = [org for org in chosen if not running(net, org)]
    for org in started:
        start_one(net, org)
    if started:
        progress(f"starting Solvers: {', '.join(started)}")
    if wait and started:
        wait_ready(net, started, timeout)
    return started


def stop_solvers(net, progress: Progress = _quiet, *, orgs: list[str] | None = None, timeout: float = 10.0) -> list[str]:
    """Stop every running Solver of the network (SIGTERM, then SIGKILL after `timeout`)."""
    base = net.state.root / "solvers"
    chosen = orgs if orgs is not None else (sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else [])
    stopped = []
    for org in chosen:
        proc = read_proc(net, org)
        if proc and net.backend.is_alive(proc):
            net.backend.stop(proc, timeout=timeout)
            stopped.append(org)
        _pid_file(net, org).unlink(missing_ok=True)
    if stopped:
        progress(f"stopped Solvers: {', '.join(stopped)}")
    return stopped


@dataclass(frozen=True)
class SolverStatus:
    org: str
    enabled: bool
    pid: int | None
    alive: bool
    endpoint: str | None
    cursor: int | None
    steps: dict[str, int]
    last_log: str

    def to_json(self) -> dict:
        return dict(vars(self))


def solver_status(net) -> list[SolverStatus]:
    from solver.journal import Journal

    out = []
    enabled = set(solver_orgs(net))
    for org in [o.name for o in net.members]:
        proc = read_proc(net, org)
        workdir = solver_dir(net, org)
        endpoint = None
        try:
            endpoint = json.loads((workdir / "endpoint.json").read_text())["url"]
        except (OSError, ValueError, KeyError):
            pass
        cursor, steps = None, {}
        if (workdir / "solver.sqlite").is_file():
            journal = Journal(workdir / "solver.sqlite")
            c = journal.cursor()
            cursor, steps = (c[0] if c else None), journal.counts()
            journal.close()
        out.append(SolverStatus(org=org, enabled=org in enabled, pid=proc.pid if proc else None,
                                alive=bool(proc and net.backend.is_alive(proc)), endpoint=endpoint,
                                cursor=cursor, steps=steps, last_log=_last_line(net, org)))
    return out


def _last_line(net, org: str) -> str:
    try:
        lines = [line for line in log_file(net, org).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""
