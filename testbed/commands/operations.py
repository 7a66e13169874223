"""Operations on a running network: Prometheus, CTI listings, exported compose projects, Solvers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from testbed import shipped
from testbed.solver_plugin import require_solver_plugin
from testbed.network import resolve_network
from testbed.spec import load_network_spec
from testbed.commands.common import JsonOpt, NetworkOpt, _progress, app, out


# ---- live metrics: a Prometheus server per network (testbed.monitoring) --------------------------

monitor_app = typer.Typer(help="Prometheus for a network: every node's metrics, the chain exporter, node-exporter.",
                          no_args_is_help=True)
app.add_typer(monitor_app, name="monitor")


@monitor_app.command("up")
def monitor_up(network: Optional[str] = NetworkOpt) -> None:
    """Start Prometheus (scraping every second), the chain exporter and node-exporter; print the URL."""
    from testbed.monitoring import prometheus

    record = prometheus.up(resolve_network(network), _progress)
    out.print(f"prometheus: {record['url']}")


@monitor_app.command("down")
def monitor_down(network: Optional[str] = NetworkOpt) -> None:
    """Stop the network's monitor processes by pid (its data stays in <state>/monitor/)."""
    from testbed.monitoring import prometheus

    stopped = prometheus.down(resolve_network(network))
    _progress(f"monitor stopped: {', '.join(stopped)}" if stopped else "no monitor was running")


@monitor_app.command("status")
def monitor_status(network: Optional[str] = NetworkOpt, as_json: bool = JsonOpt) -> None:
    """Whether the monitor runs, its URL and ports; exit 1 when it does not run."""
    from testbed.monitoring import prometheus

    record = prometheus.running(resolve_network(network))
    if as_json:
        out.print_json(json.dumps(record))
    else:
        out.print(f"prometheus: {record['url']}" if record else "no monitor runs")
    raise typer.Exit(0 if record else 1)


# ---- CTI on a running network: list a MISP event (its org's Solver delivers it) ----------------

cti_app = typer.Typer(help="CTI on a running network: list a MISP event for the consortium.", no_args_is_help=True)
app.add_typer(cti_app, name="cti")


@cti_app.command("publish")
def cti_publish(event: Path = typer.Option(..., "--event", "-e", help="A MISP event JSON file (attributes, objects)."),
                org: str = typer.Option(..., "--org", "-o", help="The publishing organization."),
                network: Optional[str] = NetworkOpt,
                title: Optional[str] = typer.Option(None, help="Listing title (default: the event's info)."),
                price_wei: int = typer.Option(0, min=0, help="Price of one token, in wei."),
                supply: int = typer.Option(10, min=1, help="Tokens minted with the listing."),
                as_json: bool = JsonOpt) -> None:
    """Check a MISP event with pymisp, put it in the org's intelligence store and list it on-chain
    (its publisher account signs; its Solver is authorized to deliver it); prints the token."""
    from testbed.cti.listing import publish_event_file

    answer = publish_event_file(resolve_network(network), org, event, title=title, price_wei=price_wei, supply=supply)
    if as_json:
        out.print_json(json.dumps(answer))
        return
    out.print(f"token {answer['token']}: MISP event {answer['misp_uuid']} '{escape(answer['title'])}' "
              f"({answer['attributes']} attributes, {len(answer['objects'])} objects) listed by {org} in block {answer['block']}")


# ---- operators' files: a network carried elsewhere (testbed.backends.compose) -------------------

export_app = typer.Typer(help="Operators' files for a network, to run it elsewhere.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("compose")
def export_compose_cmd(spec: Path = typer.Argument(..., help="Network spec YAML, or a shipped spec's name (four-orgs)."),
                       out_dir: Path = typer.Argument(..., help="A new (or empty) directory for the project."),
                       as_json: bool = JsonOpt) -> None:
    """Write a docker-compose project: official client images, fresh keys (0600, mounted read-only),
    genesis, permissioned node lists, Prometheus. Start it with 'docker compose up -d' in DIR."""
    from testbed.backends.compose import export_compose

    parsed = load_network_spec(shipped.resolve(spec, "network"))
    summary = export_compose(parsed, out_dir)
    if as_json:
        out.print_json(json.dumps(summary))
        return
    out.print(f"wrote {out_dir}/docker-compose.yml: {len(summary['nodes'])} nodes ({', '.join(summary['images'])}); "
              f"keys in {out_dir}/keys (0600). Start with: cd {out_dir} && docker compose up -d")


# ---- solvers: the organizations' Solver daemons (through the Solver plugin) -------------------

solvers_app = typer.Typer(help="The organizations' Solvers: start, stop, status.", no_args_is_help=True)
app.add_typer(solvers_app, name="solvers")
OrgsOpt = typer.Option(None, "--org", "-o", help="Only these organizations (default: every org with solver: true).")


@solvers_app.command("start")
def solvers_start(network: Optional[str] = NetworkOpt, org: Optional[list[str]] = OrgsOpt) -> None:
    """Start the Solvers (through the network's backend, beside each org's node); waits until they serve."""
    net = resolve_network(network)
    started = require_solver_plugin().start(net, _progress, orgs=org or None)
    _progress(f"Solvers started: {', '.join(started)}" if started else "Solvers: all already running")


@solvers_app.command("stop")
def solvers_stop(network: Optional[str] = NetworkOpt, org: Optional[list[str]] = OrgsOpt) -> None:
    """Stop the Solvers by pid (SIGTERM, then SIGKILL)."""
    stopped = require_solver_plugin().stop(resolve_network(network), _progress, orgs=org or None)
    _progress(f"Solvers stopped: {', '.join(stopped)}" if stopped else "no Solver was running")


@solvers_app.command("status")
def solvers_status(network: Optional[str] = NetworkOpt,
                   as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Per org: process, delivery endpoint, chain cursor and tasks by step."""
    rows = require_solver_plugin().status(resolve_network(network))
    if as_json:
        out.print_json(json.dumps([r.to_json() for r in rows]))
        return
    table = Table(title="Solvers")
    for column in ("org", "enabled", "pid", "endpoint", "cursor", "tasks by step", "last log line"):
        table.add_column(column)
    for r in rows:
        pid = (str(r.pid) if r.alive else "[red]down[/red]") if r.enabled or r.pid else "-"
        table.add_row(r.org, "yes" if r.enabled else "no", pid, r.endpoint or "-", str(r.cursor if r.cursor is not None else "-"),
                      ", ".join(f"{k} {v}" for k, v in sorted(r.steps.items())) or "-", r.last_log[-80:])
    out.print(table)
