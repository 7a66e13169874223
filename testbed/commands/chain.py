"""Commands that change the consortium on its chain: deploy, join, leave, validator votes."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.table import Table

from testbed.network import resolve_network
from testbed.commands.network import render_status
from testbed.commands.common import NetworkOpt, _progress, app, out, resolve_node


@app.command()
def deploy(network: Optional[str] = NetworkOpt,
           force: bool = typer.Option(False, help="Deploy a new set even if one is recorded.")) -> None:
    """Deploy the CTI contracts (client-side signed by the consortium operator); writes deployment.json."""
    from testbed.contracts import deploy_to_network

    net = resolve_network(network)
    deployment = deploy_to_network(net, force=force, progress=_progress)
    table = Table(title=f"CTI contracts on {net.name} (solc {deployment.compiler_version})")
    for column in ("contract", "address", "block", "gas used"):
        table.add_column(column)
    for name, record in deployment.contracts.items():
        table.add_row(name, record.address, str(record.block), str(record.gas_used))
    out.print(table)


@app.command()
def join(org: str = typer.Argument(..., help="Name of the joining organization."), network: Optional[str] = NetworkOpt,
         validators_count: int = typer.Option(1, "--validators", help="Validator nodes of the newcomer."),
         accounts: int = typer.Option(8, help="Funded accounts of the newcomer (one per signing purpose, the rest "
                                      "send load; at least 6).")) -> None:
    """Onboard an organization: keys, node started, funded, voted in as validator and as CTI member."""
    from testbed.membership import join as join_org

    grown = join_org(resolve_network(network), org, validators_count=validators_count, accounts=accounts, progress=_progress)
    render_status(grown.status())


@app.command()
def leave(org: str = typer.Argument(..., help="Name of the leaving organization."), network: Optional[str] = NetworkOpt) -> None:
    """Offboard an organization: removal vote in the contracts, validator vote out, its nodes stopped."""
    from testbed.membership import leave as leave_org

    remaining = leave_org(resolve_network(network), org, progress=_progress)
    render_status(remaining.status())


validators_app = typer.Typer(help="Validator set: list per node, vote a node in or out.", no_args_is_help=False)
app.add_typer(validators_app, name="validators")


@validators_app.callback(invoke_without_command=True)
def validators_list(ctx: typer.Context, network: Optional[str] = NetworkOpt,
                    as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the validator set each running node reports, and whether they agree."""
    if ctx.invoked_subcommand is not None:
        return
    from testbed import validators

    net = resolve_network(network)
    current = validators.view(net)
    names = {n.address.lower(): n.name for n in net.nodes}
    if as_json:
        out.print_json(json.dumps({
            "network": net.name, "agreed": current.agreed,
            "validators": [{"address": a, "node": names.get(a)} for a in current.validators],
            "per_node": {node: ([names.get(a, a) for a in answer] if answer is not None else None)
                         for node, answer in current.per_node.items()}}))
        raise typer.Exit(0 if current.agreed else 1)
    table = Table(title=f"validators of {net.name} ({net.validator_rpc.list_method})")
    table.add_column("node")
    table.add_column("validators")
    for node, answer in current.per_node.items():
        table.add_row(node, "[red]no answer[/red]" if answer is None else ", ".join(names.get(a, a) for a in answer))
    out.print(table)
    out.print("agreed" if current.agreed else "[red]NOT agreed[/red]")
    raise typer.Exit(0 if current.agreed else 1)


@validators_app.command("add")
def validators_add(node: str = typer.Argument(..., help="Node to vote in, e.g. acme-cert-m1."), network: Optional[str] = NetworkOpt,
                   timeout: float = typer.Option(90, help="Seconds to wait for every node to agree.")) -> None:
    """Every current validator votes the node in; returns when every node reports it."""
    from testbed import validators

    net, name = resolve_node(node, network)
    validators.change(net, name, add=True, timeout=timeout, progress=_progress)


@validators_app.command("remove")
def validators_remove(node: str = typer.Argument(..., help="Validator node to vote out."), network: Optional[str] = NetworkOpt,
                      timeout: float = typer.Option(90, help="Seconds to wait for every node to agree.")) -> None:
    """Every current validator votes the node out; returns when every node agrees."""
    from testbed import validators

    net, name = resolve_node(node, network)
    validators.change(net, name, add=False, timeout=timeout, progress=_progress)
