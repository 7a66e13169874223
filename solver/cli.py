"""The `solver` command: the per-org daemon and the consumer side, for operators and scripts.

    solver run --network NAME --org ORG        the daemon (normally started by `testbed solvers start`)
    solver seed --network NAME --org ORG -c 3  sample MISP events into the org's store, published
    solver request --network NAME --org ORG TOKEN
    solver fetch --network NAME --org ORG TASK fetch, verify, decrypt, validate, store, rate
    solver consume --network NAME --org ORG    the consumer loop for the org's requests
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="CTI Solver: delivers an organization's intelligence, encrypted, exactly once.")
out = Console()

NetworkOpt = typer.Option(..., "--network", "-n", help="Network name.")
OrgOpt = typer.Option(..., "--org", "-o", help="Organization name.")
HomeOpt = typer.Option(None, "--home", help="State root (default: $TESTBED_HOME or ./.testbed).")


def _load(network: str, home: Optional[Path], org: str):
    """The network as organization `org` sees it: its own account keys only (no other org's, no
    node's, not the operator's), every node by its public key."""
    from testbed.network import Network

    return Network.load(network, home, org_keys_only=org)


def _parse_crash(values: list[str]) -> dict[str, int]:
    from solver.daemon import CRASH_POINTS

    out_: dict[str, int] = {}
    for value in values:
        point, _, count = value.partition(":")
        if point not in CRASH_POINTS:
            raise typer.BadParameter(f"{point!r} is not a crash point; points: {', '.join(CRASH_POINTS)}")
        out_[point] = int(count or 1)
    return out_


@app.command()
def run(network: str = NetworkOpt, org: str = OrgOpt, home: Optional[Path] = HomeOpt,
        dir: Optional[Path] = typer.Option(None, "--dir", help="Working dir (default: solvers/<org>/ in the state dir)."),
        intel: Optional[str] = typer.Option(None, help="Intelligence store: a directory of <uuid>.json or a MISP URL "
                                                        "(key in MISP_KEY). Default: solvers/<org>/intel/."),
        depth: Optional[int] = typer.Option(None, help="Confirmations before reading an event (Clique; QBFT uses 0)."),
        records: Optional[Path] = typer.Option(None, help="Directory for tasks.jsonl (e.g. a run dir)."),
        crash_after: list[str] = typer.Option([], "--crash-after", help="Testing: SIGKILL self after STEP[:N]."),
        claim_first: bool = typer.Option(False, "--claim-first",
                                         help="Accept a task before making its delivery, then finish it (two "
                                              "transactions). Default: one `deliver` once the ciphertext is ready."),
        verbose: bool = typer.Option(False, "-v")) -> None:
    """Run one organization's Solver until SIGTERM."""
    from solver.daemon import Solver, SolverConfig
    from solver.intel import open_store
    from solver.manage import depth_for, endpoint_port, intel_dir, node_of, role_accounts, solver_dir
    from testbed.contracts import deployment_of
    from testbed.cti.deploy import connect

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("web3", "urllib3", "pymisp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    net = _load(network, home, org)
    logging.getLogger("solver").info(
        "secrets this process can read: %s", f"{org}'s account keys only (a mount namespace of its own)"
        if os.environ.get("TESTBED_SOLVER_SANDBOX") == "1" else "the state directory as its user sees it (no mount namespace)")
    node = node_of(net, org)
    workdir = Path(dir) if dir else solver_dir(net, org)
    config = SolverConfig(workdir=workdir, intel=open_store(intel or intel_dir(net, org)), org_name=org,
                          host=node.host, port=endpoint_port(net, org), depth=depth_for(net, depth),
                          records_dir=records, crash_after=_parse_crash(crash_after), claim_first=claim_first,
                          metrics_dir=net.state.root / "monitor")
    solver = Solver(connect(net.org_rpc_urls(org)), deployment_of(net), role_accounts(net, org).solver.private_key, config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    solver.start_endpoint()
    try:
        solver.run(stop)
    finally:
        solver.close()
        logging.getLogger("solver").info("stopped")


def _consumer(network: str, org: str, home: Optional[Path], records: Optional[Path] = None):
    from solver.consumer import Consumer
    from solver.manage import consumer_dir, role_accounts
    from testbed.contracts import deployment_of
    from testbed.cti.deploy import connect

    net = _load(network, home, org)
    return Consumer(connect(net.org_rpc_urls(org)), deployment_of(net), role_accounts(net, org).consumer.private_key,
                    consumer_dir(net, org), records_dir=records)


@app.command()
def seed(network: str = NetworkOpt, org: str = OrgOpt, home: Optional[Path] = HomeOpt,
         count: int = typer.Option(3, "--count", "-c", min=1), supply: int = typer.Option(1000, min=1)) -> None:
    """Write generated MISP events into the org's intelligence store and publish them."""
    from solver.seed import seed_network

    for p in seed_network(_load(network, home, org), org, count, supply=supply):
        out.print(f"token {p.token_id}  {p.misp_uuid}  {p.title}")


@app.command()
def request(token: int = typer.Argument(..., help="CTI token id."), network: str = NetworkOpt, org: str = OrgOpt,
            home: Optional[Path] = HomeOpt) -> None:
    """Request a CTI as the org's consumer account (buys a token first if needed); prints the task id."""
    consumer = _consumer(network, org, home)
    out.print(consumer.request(token))


@app.command()
def fetch(task: int = typer.Argument(..., help="Task id."), network: str = NetworkOpt, org: str = OrgOpt,
          home: Optional[Path] = HomeOpt, rate: bool = typer.Option(True, help="Give feedback once verified (a dispute on-chain when the data is not what was listed).")) -> None:
    """Fetch a finished task's delivery: verify the hash on-chain, decrypt, validate, store (and rate)."""
    consumer = _consumer(network, org, home)
    if rate:
        delivery = consumer.consume(task)
    else:
        delivery = consumer.fetch(task)
    out.print(f"task {task}: MISP event {delivery.event.uuid} '{delivery.event.info}' with "
              f"{len(delivery.event.attributes)} attributes ({delivery.ciphertext_bytes} bytes encrypted)")


@app.command()
def consume(network: str = NetworkOpt, org: str = OrgOpt, home: Optional[Path] = HomeOpt,
            until_done: bool = typer.Option(False, help="Exit when no request is waiting."),
            records: Optional[Path] = typer.Option(None, help="Directory for tasks.jsonl.")) -> None:
    """The consumer loop: consume every finished request of the org's consumer account."""
    consumer = _consumer(network, org, home, records)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    consumer.run(stop, until_done=until_done)
    out.print(consumer.status())


def main() -> None:
    from testbed.cli import run_app

    run_app(app)


if __name__ == "__main__":
    main()
