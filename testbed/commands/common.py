"""What every `testbed` command shares: the typer app, consoles, common options, one-line errors."""

from __future__ import annotations

import sys
import time
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from testbed import shipped
from testbed.errors import StateError, TestbedError
from testbed.network import Network
from testbed.state import list_networks

DEFAULT_SPEC = shipped.path("scenarios", "networks", "four-orgs.yaml")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Consortium CTI testbed: permissioned Ethereum networks, CTI contracts, scenarios and load.")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"testbed {version('cti-testbed')}")
        raise typer.Exit(0)


@app.callback()
def _main(show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                           help="Print the version and exit.")) -> None:
    """Consortium CTI testbed: permissioned Ethereum networks, CTI contracts, scenarios and load."""
# Wide when not on a terminal, so piped output keeps URLs and hashes whole.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def _progress(message: str) -> None:
    err.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {escape(str(message))}", soft_wrap=True, highlight=False)


def resolve_node(node: str, network: Optional[str]) -> tuple[Network, str]:
    if network:
        net = Network.load(network)
        net.node(node)
        return net, node
    for state in list_networks():
        net = Network.load(state.name)
        if any(n.name == node for n in net.nodes):
            return net, node
    raise StateError(f"no network has a node named {node!r}", hint="'testbed status' lists the nodes")


NetworkOpt = typer.Option(None, "--network", "-n", help="Network name (default: the only one).")

JsonOpt = typer.Option(False, "--json", help="Machine-readable output on stdout (progress stays on stderr).")


def _one_name(positional: Optional[str], option: Optional[str]) -> Optional[str]:
    """`testbed down NAME` and `testbed down --network NAME` alike (every other command takes --network)."""
    if positional and option and positional != option:
        raise StateError(f"two network names given ({positional!r} and --network {option!r})", hint="give one")
    return positional or option


def _result_json(result) -> dict:
    """A scenario result for machines: name, status, run directory, seconds, error, every assertion."""
    return {"scenario": result.name, "status": result.status, "run_dir": str(result.run_dir), "seconds": result.seconds,
            "error": result.error, "assertions": [a.to_json() for a in result.assertions]}


def run_app(typer_app: typer.Typer) -> None:
    """Run a typer app; a TestbedError becomes one red line and its exit code, never a traceback."""
    try:
        typer_app()
    except TestbedError as exc:
        err.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("[bold red]interrupted[/bold red]")
        sys.exit(130)
