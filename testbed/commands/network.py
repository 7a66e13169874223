"""Network lifecycle commands: up, status, ls, down, node control, watch, logs, schema, toolchain."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from testbed import shipped, toolchain
from testbed.engines import engine
from testbed.errors import StateError
from testbed.network import Network, NetworkStatus, resolve_network
from testbed.spec import load_network_spec
from testbed.spec.network import json_schema
from testbed.state import list_networks, state_root
from testbed.commands.common import DEFAULT_SPEC, NetworkOpt, _one_name, _progress, app, out, resolve_node


@app.command()
def up(spec: Path = typer.Argument(DEFAULT_SPEC, help="Network spec YAML, or a shipped spec's name."),
       timeout: Optional[float] = typer.Option(None, help="Seconds to wait for readiness (default 30 + 3 per node)."),
       check: bool = typer.Option(False, "--check", help="Only validate the spec; start and write nothing.")) -> None:
    """Bring up a network from a spec (a file, or a shipped spec's name: four-orgs-clique); returns once
    every node is peered and agrees on new blocks."""
    spec = shipped.resolve(spec, "network")
    parsed = load_network_spec(spec)
    if check:
        out.print(f"ok  {escape(str(spec))}  ({parsed.name}: {parsed.client} {parsed.consensus.engine}, "
                  f"{len(parsed.organizations)} organizations, {sum(o.node_count for o in parsed.organizations)} nodes)")
        return
    started = time.monotonic()
    net = Network.create(parsed, source=str(spec), progress=_progress, timeout=timeout)
    _progress(f"network {net.name!r} up in {time.monotonic() - started:.1f}s; state in {net.state.root}")
    render_status(net.status())

@app.command()
def status(network: Optional[str] = typer.Argument(None, help="Network name (default: the only one)."),
           as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
           network_opt: Optional[str] = NetworkOpt) -> None:
    """Per node: process, head, peers, validators; whether all nodes agree on the latest common block
    and whether the chain still grows (exit 1 if they disagree or it does not)."""
    st = resolve_network(_one_name(network, network_opt)).status()
    if as_json:
        out.print_json(json.dumps(st.to_json()))
    else:
        render_status(st)
    raise typer.Exit(0 if st.agreement.agreed and not st.stalled else 1)


def render_status(st: NetworkStatus) -> None:
    table = Table(title=f"{st.name} ({st.client}, {st.engine})")
    for column in ("org", "node", "role", "pid", "rpc", "head", "age", "hash", "peers", "validators"):
        table.add_column(column)
    for n in st.nodes:
        s = n.snapshot
        age = f"{max(0.0, st.observed_at - s.head_timestamp):.0f}s" if s.reachable and s.head_timestamp else "-"
        table.add_row(
            n.plan.org, n.plan.name, n.plan.role, str(n.pid or "-") if n.process_alive else "[red]down[/red]",
            n.plan.rpc_url, str(s.head_number) if s.reachable else "[red]-[/red]", age,
            (s.head_hash or "-")[:12], str(s.peers if s.peers is not None else "-"),
            str(len(s.validators)) if s.validators is not None else "-",
        )
    out.print(table)
    colour = "green" if st.agreement.agreed else "red"
    out.print(f"agreement: [{colour}]{st.agreement.summary()}[/{colour}]")
    if st.stalled:
        hint = "; " + engine(st.engine).stall_hint
        out.print(f"[red]the chain has not grown for {st.head_age_s:.0f}s[/red] (newest block on any node){hint}")


@app.command()
def ls(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the networks in the state directory and how many of their nodes run."""
    rows = []
    for state in list_networks():
        net = Network.load(state.name)
        rows.append({"network": net.name, "client": net.spec.client, "clients": list(net.spec.clients),
                     "engine": net.spec.consensus.engine, "backend": net.spec.backend, "nodes": len(net.nodes),
                     "running": len(net.running_nodes()), "state": str(net.state.root)})
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title=f"networks in {state_root()}")
    for column in ("network", "client", "engine", "nodes", "running"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["network"], " + ".join(row["clients"]), row["engine"], str(row["nodes"]), str(row["running"]))
    out.print(table)


@app.command()
def down(network: Optional[str] = typer.Argument(None, help="Network name (default: the only one)."),
         purge: bool = typer.Option(False, help="Also remove the state directory (keys, chain data, logs)."),
         network_opt: Optional[str] = NetworkOpt) -> None:
    """Stop every node of a network by pid; nothing is left running."""
    net = resolve_network(_one_name(network, network_opt))
    running = net.running_nodes()
    if not running and not purge:
        raise StateError(f"network {net.name!r} is not running", hint="use --purge to remove its state")
    stopped = net.down(purge=purge)
    _progress(f"stopped {len(stopped)} nodes of {net.name!r}" + ("; state removed" if purge else f"; state kept in {net.state.root}"))


def _node_command(action: str):
    def command(node: str = typer.Argument(..., help="Node name, e.g. acme-cert-v1."), network: Optional[str] = NetworkOpt) -> None:
        net, name = resolve_node(node, network)
        getattr(net, f"{action}_node")(name)
        _progress(f"{action}: {name}")
    command.__doc__ = {
        "stop": "Stop a node gracefully (SIGTERM).",
        "kill": "Kill a node with SIGKILL (a crash).",
        "pause": "Freeze a node (SIGSTOP).",
        "resume": "Unfreeze a paused node (SIGCONT).",
    }[action]
    return command


for _action in ("stop", "kill", "pause", "resume"):
    app.command(name=_action)(_node_command(_action))


@app.command()
def start(node: Optional[str] = typer.Argument(None, help="Node name; omit to start every stopped node."),
          network: Optional[str] = NetworkOpt,
          wait: bool = typer.Option(True, help="Wait until the started nodes are peered and in agreement.")) -> None:
    """Start a stopped node (or all stopped nodes of a network) on its existing data."""
    if node:
        net, name = resolve_node(node, network)
        net.start_node(name)
        names = [name]
    else:
        net = resolve_network(network)
        names = [n.name for n in net.nodes if not net.process(n.name)]
        net.start_all(_progress)
    if wait and names:
        net.wait_ready(progress=_progress, new_blocks=1, only=net.running_nodes())
    _progress(f"started: {', '.join(names) if names else 'nothing (all running)'}")


@app.command()
def watch(network: Optional[str] = NetworkOpt,
          seconds: float = typer.Option(0.0, min=0, help="Stop after this long (0: until Ctrl-C)."),
          stall_after: float = typer.Option(0.0, min=0, help="Seconds without a new head before acting "
                                            "(0: max(15, 10 block periods))."),
          interval: float = typer.Option(1.0, min=0.01, help="Seconds between looks at the heads.")) -> None:
    """Clique stall watchdog: rewind the nodes off one of two stuck equal-weight branches; each act is
    printed and appended to <state>/watchdog.jsonl."""
    from testbed.watchdog import StallWatchdog

    net = resolve_network(network)
    if not net.running_nodes():
        raise StateError(f"network {net.name!r} is not running", hint=f"'testbed start --network {net.name}'")
    log = net.state.root / "watchdog.jsonl"

    def record(kind: str, **data) -> None:
        with log.open("a") as f:
            f.write(json.dumps({"event": kind, **data}) + "\n")
        _progress(f"[yellow]stalled {data['stalled_s']}s on competing branches: rewound "
                  f"{', '.join(f'{n} to #{h}' for n, h in sorted(data['rewound'].items()))}[/yellow]")

    dog = StallWatchdog(net, stall_after=stall_after or None, interval=interval, record=record, progress=_progress)
    if not dog.enabled:
        raise StateError(f"network {net.name!r} runs {net.spec.consensus.engine}: its blocks are final, "
                         "no branches to reconcile", hint="the watchdog is for Clique networks")
    _progress(f"watching {net.name!r}: acting after {dog.stall_after:g}s without a new head on diverged nodes"
              + (f", for {seconds:g}s" if seconds else "; Ctrl-C to stop"))
    end = time.monotonic() + seconds
    with dog:
        try:
            while not seconds or time.monotonic() < end:
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
    _progress(f"{len(dog.interventions)} intervention(s)" + (f", recorded in {log}" if dog.interventions else ""))


@app.command()
def logs(node: str = typer.Argument(..., help="Node name."), network: Optional[str] = NetworkOpt,
         lines: int = typer.Option(40, "--lines", "-l", help="How many last lines.")) -> None:
    """Show the last lines of a node's log."""
    net, name = resolve_node(node, network)
    for line in net.state.tail_log(name, lines):
        out.print(line, markup=False, highlight=False)


@app.command()
def schema(kind: str = typer.Argument("network", help="Which schema: network | scenario."),
           file: Optional[Path] = typer.Option(None, "--file", help="Write it to this file instead.")) -> None:
    """Print the JSON Schema of network spec files or of scenario files (editors validate with it:
    the shipped files name schemas/*.schema.json in a yaml-language-server modeline)."""
    from testbed.spec.scenario import json_schema as scenario_schema

    schemas = {"network": json_schema, "scenario": scenario_schema}
    if kind not in schemas:
        raise StateError(f"unknown schema {kind!r}; available: {', '.join(schemas)}")
    if file is not None:
        file.write_text(json.dumps(schemas[kind](), indent=2, sort_keys=True) + "\n")
        return
    out.print_json(json.dumps(schemas[kind]()))


@app.command(name="toolchain")
def toolchain_cmd(check: bool = typer.Option(False, help="Only report; never build.")) -> None:
    """Build (once) and report the pinned node clients; cached outside the repo.

    GoQuorum is built from $TESTBED_GOQUORUM_SOURCE (or taken from $TESTBED_GOQUORUM_BIN) when one is set; without either it is reported and skipped.
    """
    for name, tool in sorted(toolchain.GO_TOOLS.items()):
        path = toolchain.locate(name) if check else toolchain.ensure(name, log=_progress)
        out.print(f"{name} {tool.version}: {path or '[red]not built[/red]'}")
    for name, vtool in sorted(toolchain.VENDORED_TOOLS.items()):
        if check or not toolchain.available(name):
            path = toolchain.locate(name)
        else:
            path = toolchain.ensure(name, log=_progress)
        note = "" if path or check else f" (set {vtool.source_env} or {vtool.binary_env}; see docs/goquorum.md)"
        out.print(f"{name} {vtool.version}: {path or '[red]not built[/red]'}{note}")
