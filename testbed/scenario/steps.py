"""A scenario run's context and its steps: what each step of a scenario file does (faults,
waits, parallel branches, joins and leaves, load, CTI actions, Solvers), at its time, and the
final facts the assertions are judged on. testbed/scenario/engine.py makes one per run."""

from __future__ import annotations

import threading
import time
from typing import Callable

from testbed.errors import TestbedError
from testbed.runs import RunDir
from testbed.scenario.events import EventBus
from testbed.scenario.faults import FaultLedger
from testbed.scenario.resolve import Scenario
from testbed.scenario.solvers import solver_control

Progress = Callable[[str], None]


class StepFailed(TestbedError):
    """A step could not do what it says (the scenario fails; the message is the evidence)."""


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
        except Exception as exc:  # noqa: BLE001 - a report of the task's state, never a reason to fail the step
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

def deploy_cti(ctx: ScenarioRun, progress: Progress) -> None:
    """The contracts (deployed, or reused when the network has them), the CTI actions and state views."""
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
