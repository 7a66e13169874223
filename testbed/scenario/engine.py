"""The scenario engine: one composition root per run (network, run dir, event bus, monitor,
fault ledger, load, CTI, Solvers), steps in order, at times and in parallel, faults healed in
`finally`, then the assertions judged from what the run recorded.

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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from testbed.contracts import chain_mark, record_pedometer
from testbed.engines import engine_of
from testbed.errors import TestbedError
from testbed.resources import ResourceSampler, node_pids
from testbed.runs import RunDir
from testbed.scenario.assertions import AssertionResult, RunFacts, judge
from testbed.scenario.events import EventBus
from testbed.scenario.faults import FaultLedger
from testbed.scenario.monitor import AgreementMonitor
from testbed.watchdog import StallWatchdog
from testbed.scenario.resolve import Scenario, load_scenario
from testbed.scenario.solvers import solver_control
from testbed.state import state_root

Progress = Callable[[str], None]
QUIET_EVENTS = ("step_started",)


def _quiet(_: str) -> None:
    return None


class StepFailed(TestbedError):
    """A step could not do what it says (the scenario fails; the message is the evidence)."""


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


class ScenarioRun:
    """One run's context, whole from the start: its network (replaced by a join or leave), fault
    ledger and Solver control; the CTI actions and state views once `deploy` ran (a scenario
    without CTI steps has none)."""

    def __init__(self, scenario: Scenario, run: RunDir, bus: EventBus, progress: Progress, net, *,
                 solvers=None) -> None:
        self.scenario, self.run, self.bus, self.progress = scenario, run, bus, progress
        self.net = net
        self.ledger = FaultLedger(net, bus.emit)
        self.solvers = solvers if solvers is not None else solver_control(net)
        self.cti = None  # CtiActions, after deploy
        self.views = None  # StateViews, after deploy
        self.paused: set[str] = set()
        self.departed_nodes: list[str] = []  # nodes of organizations that left during the run (logs kept)
        self.periods: dict[str, tuple[float, float]] = {}
        self.step_errors: list[str] = []
        self.load_results: list = []
        self.chain_start = 0  # the common head when the steps began: the pedometer counts from here
        self.deadline = 0.0
        self.t0 = 0.0
        self.stopping = threading.Event()  # set when the run ends early (Ctrl-C): branches stop, faults stay for heal_all
        self._lock = threading.Lock()

    # ---- helpers ----------------------------------------------------------------------------
    def alive(self, net=None) -> list[str]:
        net = net or self.net  # one Network object per call: a join or leave may replace self.net meanwhile
        return [n.name for n in net.nodes if n.name not in self.paused and net.process(n.name)]

    def endpoints(self) -> dict[str, str]:
        """What the agreement monitor samples: the live nodes of the network as it is now."""
        net = self.net
        return net.endpoints(self.alive(net))

    def use_network(self, net) -> None:
        """After a join or leave: every part of the run works on the new Network object."""
        with self._lock:
            self.net = net
            self.ledger.net = net
            self.solvers.use_network(net)
            if self.cti is not None:
                self.cti.net = net

    def emit(self, kind: str, **data) -> None:
        self.bus.emit(kind, **data)

    # ---- steps ------------------------------------------------------------------------------
    def run_steps(self, steps, where: str) -> None:
        for i, step in enumerate(steps):
            if self.step_errors and where == "steps":
                return
            self.run_step(step, f"{where}.{i}")

    def _pause_for(self, seconds: float) -> None:
        """Sleep, unless the run is stopping (then StepFailed at once)."""
        if self.stopping.wait(max(0.0, seconds)):
            raise StepFailed("the run was interrupted")

    def run_step(self, step, where: str) -> None:
        if step.at is not None:
            delay = self.t0 + step.at - time.time()
            if delay > 0:
                self._pause_for(delay)
            elif delay < -1:
                self.emit("step_late", step=where, at=step.at, late_s=round(-delay, 2))
        if self.stopping.is_set():
            raise StepFailed("the run was interrupted")
        if time.time() > self.deadline:
            raise StepFailed(f"scenario timeout ({self.scenario.spec.timeout:.0f}s) reached before {where}")
        label = step.label()
        started = time.time()
        self.emit("step_started", step=where, action=step.action, name=step.name)
        held_until = None
        try:
            held_until = getattr(self, f"do_{step.action}")(step.body, where)
        except TestbedError as exc:
            with self._lock:
                self.step_errors.append(f"{where} ({label}): {exc}")
            self.emit("step_failed", step=where, action=step.action, name=step.name, error=str(exc))
            if step.action != "parallel":
                raise StepFailed(str(exc)) from None
            raise
        finally:
            if step.name:  # a fault held `for:` a while: its period ends when the heal begins
                self.periods[step.name] = (started, held_until if isinstance(held_until, float) else time.time())
        self.emit("step_finished", step=where, action=step.action, name=step.name,
                  seconds=round(time.time() - started, 2))

    def do_parallel(self, branches, where: str) -> None:
        errors: list[str] = []

        def branch(i: int, steps) -> None:
            try:
                for j, step in enumerate(steps):
                    self.run_step(step, f"{where}.{i}.{j}")
            except TestbedError as exc:
                errors.append(str(exc))
            except Exception as exc:  # a bug in a branch still fails the run, with its name
                errors.append(f"{exc.__class__.__name__}: {exc}")
                with self._lock:
                    self.step_errors.append(f"{where}.{i}: {exc.__class__.__name__}: {exc}")

        threads = [threading.Thread(target=branch, args=(i, b), name=f"branch-{i}") for i, b in enumerate(branches)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise StepFailed(f"{len(errors)} parallel branch(es) failed: {errors[0]}")

    def do_wait(self, body, where: str) -> None:
        if isinstance(body, float):
            self._pause_for(body)
            return
        heads, silent = self._live_heads()
        target = max(heads.values()) + body.blocks
        limit = time.monotonic() + body.timeout
        while silent or min(heads.values()) < target:  # every live node has them (a restarted one caught up)
            if time.monotonic() > limit:
                low = min(heads, key=heads.get)
                behind = f"{silent[0]} does not answer" if silent else f"{low} is at {heads[low]}"
                raise StepFailed(f"waited {body.timeout:.0f}s for {body.blocks} blocks on every live node: {behind}, "
                                 f"the highest at {max(heads.values())}, needed {target}")
            self._pause_for(0.3)
            heads, silent = self._live_heads()

    def _live_heads(self) -> tuple[dict[str, int], list[str]]:
        """Head number of every live node that answers, and the live nodes that do not;
        StepFailed if none answers."""
        from testbed.chain.rpc import RpcClient

        heads, silent = {}, []
        for name in self.alive():
            with RpcClient(self.net.node(name).rpc_url, timeout=3) as rpc:
                try:
                    heads[name] = int(rpc.call("eth_blockNumber"), 16)
                except TestbedError:
                    silent.append(name)
        if not heads:
            raise StepFailed("no live node answers")
        return heads, silent

    def _hold(self, fault, hold: float | None) -> float | None:
        """With `for:`, keep the fault that long, then end it; returns when the heal began."""
        if hold is None:
            return None
        if self.stopping.wait(hold):
            return time.time()  # the run is ending: heal_all ends this fault, once
        healing = time.time()
        self.ledger.end(fault)
        if fault.kind == "pause":
            self.paused.discard(fault.target)
        return healing

    def do_crash(self, body, where: str) -> float | None:
        return self._hold(self.ledger.crash(body.node), body.hold)

    def do_pause(self, body, where: str) -> float | None:
        fault = self.ledger.pause(body.node)
        self.paused.add(body.node)
        return self._hold(fault, body.hold)

    def do_resume(self, body, where: str) -> None:
        self.ledger.resume(body.node)
        self.paused.discard(body.node)

    def do_restart(self, body, where: str) -> None:
        self.ledger.restart(body.node)
        self.paused.discard(body.node)

    def do_partition(self, body, where: str) -> float | None:
        return self._hold(self.ledger.partition([list(g) for g in body.groups]), body.hold)

    def do_delay(self, body, where: str) -> float | None:
        return self._hold(self.ledger.delay(body.org, body.ms, body.jitter_ms, body.loss_pct), body.hold)

    def do_heal(self, body, where: str) -> None:
        self.ledger.heal()
        self.paused.clear()

    def _membership_progress(self, org: str):
        return lambda message: self.emit("membership_progress", org=org, message=message)

    def do_join(self, body, where: str) -> None:
        from testbed.membership import join

        grown = join(self.net, body.org, validators_count=body.validators, members=body.members,
                     accounts=body.accounts, solver=body.solver, progress=self._membership_progress(body.org),
                     timeout=body.timeout)
        self.use_network(grown)
        nodes = [n.name for n in grown.nodes if n.org == body.org]
        org_id = None
        if self.cti is not None:
            org_id = self._cti_call(lambda: self.cti.org_ids().get(body.org), "join")
            if org_id is not None:
                self.views.add_org(body.org, org_id)
        self.emit("org_joined", org=body.org, nodes=nodes, validators=body.validators, cti_org_id=org_id)
        if body.solver and self.cti is not None and self.solvers.available:
            self.solvers.start(body.org)
            self.emit("solver_started", org=body.org)

    def do_leave(self, body, where: str) -> None:
        from testbed.membership import leave

        if self.solvers.available:  # its Solver goes with it (the remaining network no longer lists the org)
            try:
                self.solvers.stop(body.org)
            except TestbedError as exc:
                self.emit("solver_stop_failed", org=body.org, error=str(exc))
        nodes = [n.name for n in self.net.nodes if n.org == body.org]
        remaining = leave(self.net, body.org, progress=self._membership_progress(body.org), timeout=body.timeout)
        self.departed_nodes += nodes
        self.use_network(remaining)
        self.emit("org_left", org=body.org, nodes=nodes)

    def do_load(self, body, where: str) -> None:
        from testbed.scenario.load import TransferLoad

        with self._lock:
            index = len(self.load_results) + 1
        result = TransferLoad(self.net, body, alive=self.alive, emit=self.emit, index=index, stop=self.stopping).run()
        with self._lock:
            self.load_results.append(result)

    def do_solver(self, body, where: str) -> None:
        getattr(self.solvers, body.action)(body.org)
        self.emit(f"solver_{body.action}ed" if body.action == "start" else "solver_stopped", org=body.org)

    def _cti(self, action: str, body) -> None:
        self._cti_call(lambda: getattr(self.cti, action)(body), action)

    @staticmethod
    def _cti_call(call, action: str):
        try:
            return call()
        except TestbedError:
            raise
        except Exception as exc:  # web3 errors of a node that is down, etc.: the step failed, with what happened
            raise StepFailed(f"{action}: {exc.__class__.__name__}: {str(exc)[:300]}") from None

    def do_publish(self, body, where: str) -> None:
        self._cti("publish", body)

    def do_buy(self, body, where: str) -> None:
        self._cti("buy", body)

    def do_request(self, body, where: str) -> None:
        self._cti("request", body)

    def do_await_delivery(self, body, where: str) -> None:
        if not self.solvers.available:
            from testbed.scenario.solvers import MISSING

            states = {a: self._state_or_error(a) for a in body.tasks}
            self.emit("delivery_impossible", reason=MISSING, tasks=states)
            # still wait: a Solver running outside this harness could deliver
        self._cti("await_delivery", body)

    def _state_or_error(self, alias: str) -> str:
        try:
            return self.cti.task_state(alias)
        except Exception as exc:
            return f"unknown ({exc.__class__.__name__})"

    def do_feedback(self, body, where: str) -> None:
        self._cti("feedback", body)

    # ---- final facts ------------------------------------------------------------------------
    def final_tasks(self) -> dict[str, dict]:
        if self.cti is None or not self.cti.tasks:
            return {}
        from testbed.chain.rpc import RpcClient, RpcError

        for alias, info in self.cti.tasks.items():
            self.views.watch_task(info["id"])
        views = {v.key: v for v in self.views.views() if v.kind == "task"}
        out = {alias: {"id": info["id"], "org": info["org"], "states": {}} for alias, info in self.cti.tasks.items()}
        for name in self.alive():
            with RpcClient(self.net.node(name).rpc_url, timeout=5) as rpc:
                try:
                    keys = [f"task {info['id']}" for info in self.cti.tasks.values()]
                    answers = rpc.batch([("eth_call", [{"to": views[k].to, "data": views[k].data}, "latest"]) for k in keys],
                                        allow_errors=True)
                    for (alias, _), key, raw in zip(self.cti.tasks.items(), keys, answers):
                        state = self.views.decode(views[key], raw) if isinstance(raw, str) else None
                        out[alias]["states"][name] = state.upper() if isinstance(state, str) else None
                except RpcError:
                    continue
        return out


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
    sampler: ResourceSampler | None = None
    try:
        net = network or _network_up(scenario, progress)
        bus.emit("network_ready", network=net.name, nodes=len(net.nodes), backend=net.spec.backend)
        ctx = ScenarioRun(scenario, run, bus, progress, net)
        if scenario.deploy:
            _deploy(ctx, progress)
        ctx.chain_start = chain_mark(ctx.net)
        if ctx.net.backend.local_processes:  # the nodes are processes of this machine: sample what they use
            sampler = ResourceSampler(lambda: node_pids(ctx.net)).start()
        monitor = AgreementMonitor(ctx.endpoints, validator_method=lambda node: ctx.net.validator_rpc_of(node).list_method,
                                   admin=lambda: ctx.net.admin_urls() or {}, out_dir=run.root, interval=scenario.spec.monitor.interval,
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
        if sampler is not None:
            run.write_jsonl("resources.jsonl", sampler.stop())
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
        if sampler is not None:
            sampler.stop()
        if monitor is not None:
            try:
                monitor.stop()
            except Exception:
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


def _deploy(ctx: ScenarioRun, progress: Progress) -> None:
    from testbed.contracts import deploy_to_network, deployment_of
    from testbed.scenario.cti import CtiActions
    from testbed.scenario.views import StateViews

    net = ctx.net
    if net.state.deployment_file.is_file():
        deployment = deployment_of(net)
        ctx.emit("contracts_reused", membership=deployment.address("Membership"))
    else:
        try:
            deployment = deploy_to_network(net, progress=progress)
        except TestbedError as exc:
            if not net.state.deployment_file.is_file():
                raise
            # deployed, but a hook after it (starting the Solvers) failed: delivery steps will show it
            ctx.emit("solver_start_failed", org="(deploy hook)", error=str(exc))
            deployment = deployment_of(net)
        ctx.emit("contracts_deployed", membership=deployment.address("Membership"))
    ctx.cti = CtiActions(net, deployment, ctx.emit, stop=ctx.stopping, event_files=ctx.scenario.event_files)
    ctx.views = StateViews(deployment, ctx.cti.org_ids())
    ctx.cti.views = ctx.views
    if ctx.solvers.available:
        for org in net.members:
            if org.solver:
                try:
                    ctx.solvers.start(org.name)
                    ctx.emit("solver_started", org=org.name)
                except TestbedError as exc:  # delivery steps will fail with this as evidence
                    ctx.emit("solver_start_failed", org=org.name, error=str(exc))


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
        run.write_jsonl("blocks.jsonl", ({**vars(b), "phase": lr.phase} for lr in ctx.load_results for b in lr.blocks))
        run.write_json("load.json", [lr.figures() for lr in ctx.load_results])
    if ctx.cti is not None:
        run.write_json("tasks.json", {"requested": ctx.cti.tasks, "final": tasks, "ctis": ctx.cti.ctis})
    run.write_json("periods.json", {name: {"start": s - ctx.t0, "end": e - ctx.t0} for name, (s, e) in ctx.periods.items()})


def _keep_logs(run: RunDir, net, lines: int = 200, also: list[str] = ()) -> None:
    target = run.root / "logs"
    target.mkdir(exist_ok=True)
    for name in [n.name for n in net.nodes] + list(also):
        try:
            (target / f"{name}.log").write_text("\n".join(net.state.tail_log(name, lines)) + "\n")
        except OSError:
            pass
