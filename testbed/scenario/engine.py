"""The scenario engine: one composition root per run (network, run dir, event bus, monitor,
fault ledger, load, CTI, Solvers), steps in order, at times and in parallel, faults healed in
`finally`, then the assertions judged from what the run recorded. What each step does is in
testbed/scenario/steps.py (ScenarioRun).

The run directory (runs/<id>/) alone explains the run:
    scenario.json   the resolved scenario (network spec inlined)
    status.json     running | passed | failed | error
    events.jsonl    steps, faults (fault_injected / fault_healed with times), reorgs, load, checks
    samples.jsonl   the agreement monitor's samples; monitor.json its verdict with evidence
    txs.jsonl, blocks.jsonl   raw load records; tasks.json  task ids and final states per node
    results.json    every assertion with its detail and evidence; logs/  node log tails
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from testbed.contracts import chain_mark, record_pedometer
from testbed.engines import engine_of
from testbed.errors import TestbedError
from testbed.monitoring.resources import samplers as resource_samplers
from testbed.runs import RunDir
from testbed.scenario.assertions import AssertionResult, RunFacts, judge
from testbed.scenario.events import EventBus
from testbed.scenario.monitor import AgreementMonitor
from testbed.watchdog import StallWatchdog
from testbed.scenario.resolve import Scenario, load_scenario
from testbed.scenario.steps import ScenarioRun, StepFailed, deploy_cti  # noqa: F401  (StepFailed re-exported)
from testbed.state import state_root

Progress = Callable[[str], None]
QUIET_EVENTS = ("step_started",)


def _quiet(_: str) -> None:
    return None


@dataclass
class ScenarioResult:
    name: str
    run_dir: Path
    status: str  # passed | failed | error
    assertions: list[AssertionResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def failures(self) -> list[AssertionResult]:
        return [a for a in self.assertions if not a.passed]


def default_runs_dir() -> Path:
    return state_root() / "runs"

def _event_writer(run: RunDir) -> Callable[[dict], None]:
    def write(event: dict) -> None:
        fields = {k: v for k, v in event.items() if k not in ("event", "time")}
        run.event(event["event"], event["time"], **fields)
    return write


def _progress_printer(progress: Progress) -> Callable[[dict], None]:
    def show(event: dict) -> None:
        kind = event["event"]
        if kind in QUIET_EVENTS:
            return
        details = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("time", "t", "event") and v is not None)
        progress(f"[{event['t']:6.1f}s] {kind}" + (f": {details}" if details else ""))
    return show


def run_scenario(scenario: Scenario | Path | str, *, runs_dir: Path | None = None, network=None,
                 progress: Progress = _quiet, keep: bool = False,
                 network_overrides: dict | None = None) -> ScenarioResult:
    """Run one scenario. With `network`, run on that running network and leave it up."""
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario, network_overrides=network_overrides)
    runs = Path(runs_dir) if runs_dir else default_runs_dir()
    run = RunDir.create(runs, scenario.name)
    run.write_json("scenario.json", scenario.resolved())
    bus = EventBus()
    bus.subscribe(_event_writer(run))
    bus.subscribe(_progress_printer(progress))
    ctx: ScenarioRun | None = None
    net = None  # the run's network once it is up (ctx.net after a join or leave)
    started = time.monotonic()
    result = ScenarioResult(name=scenario.name, run_dir=run.root, status="error")
    own_network = network is None
    monitor: AgreementMonitor | None = None
    watchdog: StallWatchdog | None = None
    samplers: list = []
    try:
        net = network or _network_up(scenario, progress)
        bus.emit("network_ready", network=net.name, nodes=len(net.nodes), backend=net.spec.backend)
        ctx = ScenarioRun(scenario, run, bus, progress, net)
        if scenario.deploy:
            deploy_cti(ctx, progress)
        ctx.chain_start = chain_mark(ctx.net)
        samplers = resource_samplers(ctx.net, scenario.spec.monitor.resources, progress)
        monitor = AgreementMonitor(ctx.endpoints, validator_method=lambda node: ctx.net.validator_rpc_of(node).list_method,
                                   admin=lambda: ctx.net.admin_urls() or {}, run=run, interval=scenario.spec.monitor.interval,
                                   recheck=scenario.spec.monitor.recheck, stall_after=scenario.spec.monitor.stall_after,
                                   views=ctx.views, emit=bus.emit).start()
        watchdog = StallWatchdog(ctx.net, enabled=scenario.spec.monitor.watchdog, paused=ctx.ledger.splits_network,
                                 record=bus.emit, progress=progress).start()
        ctx.t0 = bus.t0 = time.time()  # event times count from the scenario's start
        ctx.deadline = ctx.t0 + scenario.spec.timeout
        bus.emit("scenario_started", scenario=scenario.name, steps=len(scenario.spec.steps))
        try:
            ctx.run_steps(scenario.spec.steps, "steps")
        except StepFailed:
            pass  # recorded in step_errors; the remaining steps are skipped, faults heal below
        finally:
            ctx.stopping.set()  # after the last step, or on Ctrl-C: any branch still running stops, holds end
            problems = ctx.ledger.heal_all(restart_crashed=not own_network or keep)
            ctx.paused.clear()
            for problem in problems:
                bus.emit("heal_failed", problem=problem)
            if ctx.solvers.available:
                try:
                    ctx.solvers.stop_all(everything=own_network and not keep)
                except TestbedError as exc:
                    bus.emit("solver_stop_failed", error=str(exc))
        bus.emit("settling", seconds=scenario.spec.settle)
        time.sleep(scenario.spec.settle)
        end = time.time()
        watchdog.stop()
        verdict = monitor.stop()
        monitor = None
        bus.emit("monitor_verdict", summary=verdict.summary())
        tasks = ctx.final_tasks()
        txs = [r for lr in ctx.load_results for r in lr.records]
        blocks = [b for lr in ctx.load_results for b in lr.blocks]
        facts = RunFacts(t0=ctx.t0, end=end, verdict=verdict, heads=[p for p in _heads(run)], periods=ctx.periods,
                         txs=txs, blocks=blocks, tasks=tasks, step_errors=ctx.step_errors,
                         interventions=ctx.ledger.interventions + watchdog.interventions,
                         normal_reorg_depth=engine_of(ctx.net.spec).max_reorg_depth)
        result.assertions = [judge(a, facts) for a in scenario.spec.assertions]
        result.assertions += [AssertionResult(f"step {e.split(':')[0]}", "step", False, e, []) for e in ctx.step_errors]
        for a in result.assertions:
            bus.emit("check", name=a.name, passed=a.passed, detail=a.detail)
        _write_records(run, ctx, txs, tasks)
        if samplers:
            rows = [row for sampler in samplers for row in sampler.stop()]
            run.write_jsonl("resources.jsonl", sorted(rows, key=lambda r: (r["time"], r["process"])))
        record_pedometer(ctx.net, run, since=ctx.chain_start)
        result.status = "passed" if all(a.passed for a in result.assertions) else "failed"
    except TestbedError as exc:
        result.error = str(exc)
        bus.emit("run_error", error=str(exc))
    except KeyboardInterrupt:
        result.error = "interrupted (Ctrl-C): faults healed, the run's network torn down unless it was given"
        bus.emit("run_error", error=result.error)
        raise
    finally:
        if watchdog is not None:
            watchdog.stop()
        for sampler in samplers:
            sampler.close()
        if monitor is not None:
            try:
                monitor.stop()
            except Exception:  # noqa: BLE001 - teardown after an error: the run's error is the one reported
                pass
        if ctx is not None and result.status == "error":
            ctx.ledger.heal_all(restart_crashed=False)
        net = ctx.net if ctx is not None else net
        if net is not None:
            _keep_logs(run, net, also=ctx.departed_nodes if ctx is not None else [])
        if net is not None and own_network and not keep:
            progress(f"tearing down {net.name!r}")
            net.down()
        result.seconds = round(time.monotonic() - started, 2)
        summary = {"scenario": scenario.name, "status": result.status, "seconds": result.seconds, "error": result.error,
                   "assertions": [a.to_json() for a in result.assertions]}
        run.write_json("results.json", summary)
        run.set_status(result.status, seconds=result.seconds, **({"error": result.error} if result.error else {}))
    return result


def _network_up(scenario: Scenario, progress: Progress):
    from testbed.network import Network

    return Network.create(scenario.network, source=scenario.network_source, progress=progress)

def _heads(run: RunDir):
    from testbed.consensus import HeadPoint

    path = run.root / "samples.jsonl"
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        row = json.loads(line)
        for node, info in row["nodes"].items():
            yield HeadPoint(row["time"], node, info.get("head"))


def _write_records(run: RunDir, ctx: ScenarioRun, txs, tasks) -> None:
    if txs:
        rows = []
        for lr in ctx.load_results:
            rows += [{**r.to_json(), "phase": lr.phase} for r in lr.records]
        run.write_jsonl("txs.jsonl", rows)
        run.write_jsonl("blocks.jsonl", ({**b, "phase": lr.phase} for lr in ctx.load_results for b in lr.blocks))
        run.write_json("load.json", [lr.figures() for lr in ctx.load_results])
    if ctx.cti is not None:
        run.write_json("tasks.json", {"requested": ctx.cti.tasks, "final": tasks, "ctis": ctx.cti.ctis})
    run.write_json("periods.json", {name: {"start": s - ctx.t0, "end": e - ctx.t0} for name, (s, e) in ctx.periods.items()})


def _keep_logs(run: RunDir, net, lines: int = 200, also: list[str] = ()) -> None:
    for name in [n.name for n in net.nodes] + list(also):
        try:
            run.write_text(f"logs/{name}.log", "\n".join(net.state.tail_log(name, lines)) + "\n")
        except OSError:
            pass
