"""Set-up shared by the load benchmarks (load_cti.py, load_transfers.py): their common options, a
throw-away TESTBED_HOME, the four-orgs network under a benchmark's name and port base, the host and
network facts every run records, teardown, and appending the run to its results file.

Standard library only at import time, so a script can `monkey.patch_all()` before importing it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
NETWORKS = ROOT / "scenarios" / "networks"
# --client: the four-org network of each live client (the default, GoQuorum QBFT, and geth Clique)
FOUR_ORGS_BY_CLIENT = {"goquorum": NETWORKS / "four-orgs.yaml", "geth": NETWORKS / "four-orgs-clique.yaml"}


def bench_parser(doc: str, *, rates: str, port_base: int, results: str) -> argparse.ArgumentParser:
    """The options every load benchmark takes (the stepped rates, step length and limits, load shape,
    port base, label, results file); a script adds its own before parsing."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rates", default=rates)
    parser.add_argument("--step-seconds", type=float, default=20)
    parser.add_argument("--p95-limit", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--per-user-rate", type=float, default=50.0)
    parser.add_argument("--port-base", type=int, default=port_base)
    parser.add_argument("--label", default="baseline")
    parser.add_argument("--client", choices=sorted(FOUR_ORGS_BY_CLIENT), default="goquorum",
                        help="goquorum: GoQuorum QBFT (the default network); geth: geth Clique")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / results)
    parser.add_argument("--no-watchdog", action="store_true",
                        help="leave a Clique chain stuck on equal-weight branches stuck (default: rewind it, recorded)")
    return parser


def stall_watchdog(net, args):
    """The Clique stall watchdog (testbed/watchdog.py), started; its interventions go in the results."""
    from testbed.watchdog import StallWatchdog

    return StallWatchdog(net, enabled=not args.no_watchdog, progress=progress).start()


def wait_drained(net, timeout: float = 180.0) -> dict:
    """Wait until no node holds an executable (pending) transaction (txpool_status on each node's
    admin IPC): a phase that starts on the backlog of a failed step measures the backlog.
    Queued transactions (behind a nonce gap left by a dropped one) never become executable and
    are only counted. Returns the seconds waited (None: not empty within `timeout`) and the
    transactions still queued."""
    import gevent

    started = time.monotonic()
    while True:
        pending = queued = 0
        for node in net.nodes:
            status = net.admin_call(node.name, "txpool_status")
            pending, queued = pending + int(status["pending"], 16), queued + int(status["queued"], 16)
        waited = round(time.monotonic() - started, 1)
        if pending == 0 or waited >= timeout:
            return {"seconds": waited if pending == 0 else None, "pending": pending, "queued": queued}
        gevent.sleep(2.0)


def head(net) -> tuple[int, int]:
    """(number, timestamp) of the first answering node's latest block."""
    from testbed.chain.rpc import RpcClient, RpcError

    for url in net.endpoints().values():
        try:
            with RpcClient(url, timeout=5) as rpc:
                block = rpc.call("eth_getBlockByNumber", "latest", False)
            return int(block["number"], 16), int(block["timestamp"], 16)
        except RpcError:
            continue
    raise RuntimeError("no node answers")


def block_times(net, first: int, last: int) -> list[int]:
    """Timestamps of blocks first..last (one JSON-RPC batch to the first answering node)."""
    from testbed.chain.rpc import RpcClient, RpcError

    calls = [("eth_getBlockByNumber", [hex(n), False]) for n in range(first, last + 1)]
    for url in net.endpoints().values():
        try:
            with RpcClient(url, timeout=30) as rpc:
                return [int(b["timestamp"], 16) for b in rpc.batch(calls)]
        except RpcError:
            continue
    raise RuntimeError("no node answers")


def interval_figures(stamps: list[int], start: float, end: float) -> dict:
    """Blocks whose timestamps fall in [start, end): their mean interval over the window's wall time
    and the longest gap (from the window's start, between blocks, to its end): a stall shows."""
    inside = sorted(t for t in stamps if start <= t < end)
    edges = [start, *inside, end]
    return {"blocks": len(inside), "seconds": round(end - start, 1),
            "mean_interval_s": round((end - start) / max(len(inside), 1), 3),
            "longest_gap_s": round(max(b - a for a, b in zip(edges, edges[1:])), 1)}


def progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def git_commit(default: str | None = None) -> str | None:
    """The checkout's short commit, or `default` where git does not answer."""
    try:
        proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return default
    return proc.stdout.strip() or default


def temporary_home(prefix: str) -> Path:
    """A fresh TESTBED_HOME for this run (removed again by `tear_down`)."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["TESTBED_HOME"] = str(home)
    return home


def four_orgs_spec(name: str, port_base: int, client: str = "goquorum"):
    """The shipped four-org spec of `client` under another name and port base."""
    from testbed.spec import load_network_spec

    shipped = load_network_spec(FOUR_ORGS_BY_CLIENT[client])
    data = shipped.model_dump()
    data["name"], data["ports"]["base"] = name, port_base
    return type(shipped).model_validate(data)


def host_and_network(spec) -> dict:
    """The `host` (with the load average now) and `network` entries of a run's result."""
    import psutil

    return {"host": {"cpus": psutil.cpu_count(), "python": platform.python_version(), "loadavg_before": os.getloadavg()},
            "network": {"client": spec.client, "engine": spec.consensus.engine, "orgs": len(spec.organizations),
                        "block_period_s": spec.consensus.block_period, "gas_limit": spec.consensus.gas_limit}}


def tear_down(net, home: Path, result: dict, before_down: Callable[[Any], None] | None = None) -> None:
    """Record the load average after the run, then (after `before_down`, even if it fails) take the
    network down with its state and remove the temporary home."""
    result["host"]["loadavg_after"] = os.getloadavg()
    try:
        if before_down is not None:
            before_down(net)
    finally:
        net.down(purge=True)
        shutil.rmtree(home, ignore_errors=True)


def append_run(out: Path, benchmark: str, result: dict, *, commit_default: str | None = None,
               json_default: Callable[[Any], Any] | None = None) -> None:
    """Append `result` (with time and commit) to the runs kept in `out`: on a shared machine one
    run is one sample, not the answer."""
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    runs = previous.get("runs", []) + [result | {"time": time.time(), "commit": git_commit(commit_default)}]
    out.write_text(json.dumps({"benchmark": benchmark, "runs": runs}, indent=2, default=json_default) + "\n")
    progress(f"wrote {out}")
