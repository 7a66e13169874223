"""Commands that run something and report it: demo, bench, Locust workers, report, scenarios."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from testbed import shipped
from testbed.errors import StateError
from testbed.network import resolve_network
from testbed.spec import load_network_spec
from testbed.commands.common import DEFAULT_SPEC, JsonOpt, NetworkOpt, _progress, _result_json, app, out


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
          monitor: str = typer.Option("auto", help="The nodes' CPU/memory/disk/network series: psutil (node processes "
                                      "of this machine) | prometheus (the nodes' own metrics via the network's "
                                      "Prometheus: 'testbed monitor up', else one started for the run) | auto "
                                      "(psutil for local nodes, else prometheus) | none."),
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
    from testbed.spec.scenario import RESOURCE_SOURCES

    if monitor not in RESOURCE_SOURCES:
        raise StateError(f"--monitor {monitor!r}: one of {', '.join(RESOURCE_SOURCES)}")
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
                    "html_file": str(html.resolve()) if html else "", "monitor": monitor},
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
