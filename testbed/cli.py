"""The `testbed` command: parse, call the library, render with rich. Nothing else lives here."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from testbed import shipped, toolchain
from testbed.solver_plugin import require_solver_plugin
from testbed.engines import engine
from testbed.errors import StateError, TestbedError
from testbed.network import Network, NetworkStatus, resolve_network
from testbed.spec import load_network_spec
from testbed.spec.network import json_schema
from testbed.state import list_networks, state_root

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


def _one_name(positional: Optional[str], option: Optional[str]) -> Optional[str]:
    """`testbed down NAME` and `testbed down --network NAME` alike (every other command takes --network)."""
    if positional and option and positional != option:
        raise StateError(f"two network names given ({positional!r} and --network {option!r})", hint="give one")
    return positional or option


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


JsonOpt = typer.Option(False, "--json", help="Machine-readable output on stdout (progress stays on stderr).")


def _result_json(result) -> dict:
    """A scenario result for machines: name, status, run directory, seconds, error, every assertion."""
    return {"scenario": result.name, "status": result.status, "run_dir": str(result.run_dir), "seconds": result.seconds,
            "error": result.error, "assertions": [a.to_json() for a in result.assertions]}


@app.command()
def demo(scenario: Path = typer.Argument(None, help="Scenario YAML (default: scenarios/demo.yaml)."),
         keep: bool = typer.Option(False, help="Leave the network running afterwards."),
         as_json: bool = JsonOpt) -> None:
    """The main job: four-org network, contracts, Solvers, the demo scenario under Locust load; verdict and report path."""
    from testbed.demo import DEMO_SCENARIO, run_demo
    from testbed.scenario.cli_support import render_verdicts

    result, report = run_demo(scenario or DEMO_SCENARIO, progress=_progress, keep=keep)
    if as_json:
        out.print_json(json.dumps({**_result_json(result), "report": str(report) if report else None}))
        raise typer.Exit(0 if result.passed else 1)
    render_verdicts(out, [result])
    verdict = "[bold green]PASSED[/bold green]" if result.passed else "[bold red]FAILED[/bold red]"
    out.print(f"verdict: {verdict}")
    out.print(f"report: {report or result.run_dir}")
    raise typer.Exit(0 if result.passed else 1)


# ---- load and reports: logic lives in testbed.load / testbed.report ---------------------------
# Locust needs gevent's monkey-patching before ssl/socket are imported, so load runs in its own
# process (`python -m testbed.load`); this command only parses and hands over.

def _load_process(request: dict) -> dict:
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "testbed.load", json.dumps(request)], stdout=subprocess.PIPE, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode not in (0, 1) or not lines:
        raise typer.Exit(proc.returncode or 2)
    return json.loads(lines[-1])


@app.command()
def bench(spec: Path = typer.Argument(DEFAULT_SPEC, help="Network spec YAML (ignored with --network)."),
          network: Optional[str] = typer.Option(None, "--network", "-n", help="Bench this running network instead."),
          rates: str = typer.Option("100,200,400,600,800,1000,1200,1500", help="Offered rates to step through, tx/s."),
          step_seconds: float = typer.Option(20.0, help="Seconds per step."),
          p95_limit: float = typer.Option(5.0, help="Stop when p95 submit->inclusion latency exceeds this (s)."),
          min_ratio: float = typer.Option(0.95, help="Stop when included/offered falls below this."),
          batch: int = typer.Option(50, help="Transactions per eth_sendRawTransaction batch."),
          per_user_rate: float = typer.Option(50.0, help="At most this many tx/s per Locust user (= account)."),
          users: str = typer.Option("transfers", help="Load users: transfers | cti (buy + request; needs "
                                    "'testbed deploy') | publishers | mix (transfers + consumers + publishers)."),
          workers: int = typer.Option(0, min=0, max=32, help="Locust worker processes (0: users run in the load "
                                      "process; N: a Locust master and N workers, records merged). Transfers only."),
          worker_hosts: str = typer.Option("local", help="Where --workers run: local (processes here) | ansible "
                                           "(the member hosts of an ansible network, via infra/ansible/locust-workers.yml)."),
          remote_workers: int = typer.Option(0, min=0, max=256, help="Also wait for this many workers started on other "
                                             "hosts (infra/ansible/locust-workers.yml) to connect."),
          master_bind: str = typer.Option("127.0.0.1", help="Address the Locust master listens on for workers."),
          master_port: int = typer.Option(0, min=0, max=65535, help="Port of the Locust master (0: any free port; "
                                          "set it when remote workers must know it)."),
          watchdog: bool = typer.Option(True, help="Rewind a Clique chain stuck on equal-weight branches (recorded "
                                        "as an intervention); --no-watchdog leaves a stall for you to see."),
          keep: bool = typer.Option(False, help="Leave a network brought up from SPEC running."),
          csv: Optional[Path] = typer.Option(None, "--csv", help="Also write Locust's own CSV files: PREFIX_stats.csv, "
                                             "PREFIX_stats_history.csv, PREFIX_failures.csv (totals: the last step's)."),
          html: Optional[Path] = typer.Option(None, "--html", help="Also write Locust's own HTML report to this file."),
          as_json: bool = JsonOpt) -> None:
    """Find the maximum sustainable transfer rate: step the offered rate until a limit breaks; write JSON + report."""
    try:
        steps = [float(r) for r in rates.split(",") if r.strip()]
    except ValueError:
        raise StateError(f"--rates {rates!r}: give comma-separated numbers, e.g. 100,200,400") from None
    if users not in ("transfers", "cti", "publishers", "mix"):
        raise StateError(f"--users {users!r}: one of transfers, cti, publishers, mix")
    if (workers or remote_workers) and users != "transfers":
        raise StateError(f"--users {users}: Locust workers run transfer users only", hint="drop --workers for CTI users")
    if worker_hosts not in ("local", "ansible"):
        raise StateError(f"--worker-hosts {worker_hosts!r}: one of local, ansible")
    if remote_workers and not master_port:
        raise StateError("--remote-workers needs --master-port: the workers on other hosts must know where to connect")
    spec = shipped.resolve(spec, "network")
    if not network:
        load_network_spec(spec)  # validate here: a spec error is reported before any process starts
    answer = _load_process({
        "command": "bench", "spec": None if network else str(spec.resolve()), "network": network, "rates": steps,
        "keep": keep, "watchdog": watchdog, "limits": {"min_ratio": min_ratio, "p95_limit_s": p95_limit, "step_seconds": step_seconds},
        "options": {"batch_size": batch, "per_user_rate": per_user_rate, "users": users, "workers": workers,
                    "worker_hosts": worker_hosts, "remote_workers": remote_workers, "master_bind": master_bind,
                    "master_port": master_port, "csv_prefix": str(csv.resolve()) if csv else "",
                    "html_file": str(html.resolve()) if html else ""},
    })
    result = answer["result"]
    if as_json:
        out.print_json(json.dumps({"run_dir": answer["run_dir"], "report": str(Path(answer["run_dir"]) / "report.html"),
                                   "result": result}))
        raise typer.Exit(0 if result["agreement"]["agreed"] else 1)
    out.print(f"max sustainable included TPS: {result['max_sustainable_included_tps']}  ({result['stop_reason']})")
    for done in result.get("interventions", []):
        out.print(f"[yellow]the chain stalled {done['stalled_s']}s on competing Clique branches: rewound "
                  f"{', '.join(sorted(done['rewound']))} (see the run's events)[/yellow]")
    out.print(f"report: {Path(answer['run_dir']) / 'report.html'}")
    raise typer.Exit(0 if result["agreement"]["agreed"] else 1)


workers_app = typer.Typer(help="Locust workers on the member hosts of an ansible network (for a master started "
                                 "with 'testbed bench --remote-workers N --master-bind ADDR --master-port PORT').",
                            no_args_is_help=True)
app.add_typer(workers_app, name="workers")


@workers_app.command("start")
def workers_start(master: str = typer.Option(..., help="HOST:PORT of the Locust master, reachable from the hosts."),
                  count: int = typer.Option(1, min=1, max=256, help="Workers, spread over the member hosts."),
                  python: str = typer.Option("", help="Interpreter on the hosts that imports testbed (default: this "
                                             "one on lab hosts, else python3)."),
                  package: Optional[Path] = typer.Option(None, help="A testbed wheel/sdist to install on the hosts "
                                                          "into <testbed_root>/venv first."),
                  network: Optional[str] = NetworkOpt) -> None:
    """Start Locust workers on the member hosts (infra/ansible/locust-workers.yml); they quit with their master."""
    from testbed.backends import ansible_workers
    from testbed.load.address import parse_master

    parse_master(master)
    if package is not None and not package.is_file():
        raise StateError(f"--package {package}: no such file", hint="build one with 'pip wheel --no-deps -w dist .'")
    net = resolve_network(network)
    pids = ansible_workers.start(net, master, count, python=python, package=str(package.resolve()) if package else "")
    out.print(f"{len(pids)} workers started for {master}: pids {', '.join(map(str, pids))}")


@workers_app.command("stop")
def workers_stop(logs: Path = typer.Option(Path("worker-logs"), help="Where the workers' logs are copied "
                                           "(<logs>/<host>/worker-N.log)."),
                 network: Optional[str] = NetworkOpt) -> None:
    """End any worker still running on the member hosts and copy their logs here."""
    from testbed.backends import ansible_workers

    net = resolve_network(network)
    ansible_workers.stop(net, logs.resolve())
    out.print(f"workers stopped; logs in {logs}")


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run directory (…/runs/<run id>).")) -> None:
    """Re-render report.html and summary.json from a run directory alone (no network needed)."""
    from testbed.report import render

    if not run_dir.is_dir():
        raise StateError(f"{run_dir} is not a directory", hint="give a run directory: <state>/<network>/runs/<id>")
    html_path, json_path = render(run_dir)
    out.print(f"report: {html_path}\nsummary: {json_path}")


# ---- scenarios: logic lives in testbed.scenario -----------------------------------------------

@app.command(name="run")
def run_cmd(paths: list[Path] = typer.Argument(..., help="Scenario YAML files or directories of them; a shipped "
                                              "scenario's name (demo) or 'scenarios' (all shipped ones)."),
            junit: Optional[Path] = typer.Option(None, "--junit", help="Also write a JUnit XML report here."),
            runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help="Where run directories go (default: runs/ in the state dir)."),
            port_base: Optional[int] = typer.Option(None, "--port-base", help="Override ports.base of every scenario's network."),
            keep: bool = typer.Option(False, help="Leave each network running afterwards."),
            check: bool = typer.Option(False, "--check", help="Only validate the files; start nothing."),
            as_json: bool = JsonOpt) -> None:
    """Run incident scenarios: network up, steps, faults, agreement monitor; a verdict table; exit 0 only if all held."""
    from testbed.scenario.cli_support import collect, render_verdicts, validate_all, write_junit
    from testbed.scenario.engine import run_scenario

    files = collect(paths)
    overrides = {"port_base": port_base} if port_base else None
    scenarios = validate_all(files, overrides)  # every file validated before anything starts
    if check:
        if as_json:
            out.print_json(json.dumps([{"file": str(s.source), "scenario": s.name, "steps": len(s.spec.steps),
                                        "assertions": len(s.spec.assertions)} for s in scenarios]))
            return
        for s in scenarios:
            out.print(f"ok  {s.source}  ({s.name}: {len(s.spec.steps)} steps, {len(s.spec.assertions)} assertions)")
        return
    results = []
    for scenario in scenarios:
        _progress(f"scenario {scenario.name} ({scenario.source})")
        results.append(run_scenario(scenario, runs_dir=runs_dir, progress=_progress, keep=keep))
    if junit:
        write_junit(junit, results)
    if as_json:
        out.print_json(json.dumps([_result_json(r) for r in results]))
    else:
        render_verdicts(out, results)
        if junit:
            out.print(f"junit: {junit}")
    raise typer.Exit(0 if results and all(r.passed for r in results) else 1)



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

# ---- end of solvers ----------------------------------------------------------------------------


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


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
