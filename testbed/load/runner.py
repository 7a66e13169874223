"""Run Locust load against a Network as a library: one Environment per run (the composition root).

This module is a load entry point: it imports Locust, which monkey-patches the process
with gevent. Import it lazily (inside a command), never from modules the rest of testbed
imports.

- `run_profile` offers one rate profile (constant, ramp, steps, spike) and records it.
- `bench` steps the offered rate until included/offered < min_ratio, p95 latency exceeds
  its limit, or the nodes disagree; each step is followed by a pause at rate 0 until its
  transactions are in blocks, so each step is measured on its own.
Both write the raw records and the report into the run directory.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from typing import Callable  # noqa: E402

import gevent  # noqa: E402
from locust.env import Environment  # noqa: E402

from testbed.contracts import chain_mark, record_pedometer  # noqa: E402
from testbed.errors import TestbedError  # noqa: E402
from testbed.load.accounts import fund_accounts, make_accounts  # noqa: E402
from testbed.load.context import LoadContext, presign  # noqa: E402
from testbed.load.locust_files import LocustFiles  # noqa: E402
from testbed.load.profiles import Profile, users_for_rate  # noqa: E402
from testbed.load.shapes import ControlledShape, ProfileShape  # noqa: E402
from testbed.load.users import TransferUser  # noqa: E402
from testbed.poll import poll_until  # noqa: E402
from testbed.report.data import RunData  # noqa: E402
from testbed.report.summary import step_figures  # noqa: E402

Progress = Callable[[str], None]


@dataclass
class LoadOptions:
    batch_size: int = 50  # transactions per eth_sendRawTransaction batch (50: half the generator CPU of 10)
    per_user_rate: float = 50.0  # at most this many tx/s per user (= per account)
    max_rate: float = 1000.0  # sizes the account pool: ceil(max_rate / per_user_rate) accounts
    drain_timeout: float = 30.0  # after the load: wait this long for pending transactions
    poll_interval: float = 0.1  # block watcher period (bounds the inclusion-time error)
    presign_seconds: float = 0.0  # pre-sign this many seconds of each account's share (0: the step / profile, <= 120 s)
    users: str = "transfers"  # transfers | cti (consumers: buy + request) | publishers | mix (see cti_users.py)
    workers: int = 0  # 0: users run in this process; N: a Locust master here and N workers (see worker_hosts)
    worker_hosts: str = "local"  # local: worker processes on this machine; ansible: on the member hosts
    worker_python: str = ""  # ansible: the hosts' interpreter with testbed (lab hosts: this one; else python3)
    worker_package: str = ""  # ansible: a testbed wheel/sdist to install on the hosts first
    remote_workers: int = 0  # also wait for this many workers started by someone else
    master_bind: str = "127.0.0.1"  # the master's address for workers (ansible lab hosts: their bridge)
    master_port: int = 0  # 0: any free port
    csv_prefix: str = ""  # also Locust's own CSV files: <prefix>_stats.csv, _stats_history.csv, _failures.csv
    html_file: str = ""  # also Locust's own HTML report
    monitor: str = "auto"  # the nodes' resource series: psutil | prometheus | auto (testbed.monitoring.resources)


class InProcess:
    """Users run in the load process itself (the generator interface; distributed.WorkerPool is the other)."""

    def __init__(self, ctx: LoadContext) -> None:
        self.ctx = ctx

    def presign(self, rate: float, seconds: float) -> float:
        return presign(self.ctx, rate, seconds)

    def flush(self) -> None:
        """Nothing to collect: the users recorded into the context's recorder directly."""

    def signed_late(self) -> int:
        return self.ctx.signed_late()

    def close(self) -> None:
        """Nothing to end: the runner quits with the environment."""


def _setup(net, run, opts: LoadOptions, shape, progress: Progress) -> tuple[Environment, LoadContext]:
    """The run's Locust environment and context, its accounts funded, its resource sources open."""
    env, ctx = _setup_users(net, run, opts, shape, progress)
    try:
        with_resource_source(net, ctx, opts, progress)
    except BaseException:
        _abort(env, ctx)
        raise
    return env, ctx


def _setup_users(net, run, opts: LoadOptions, shape, progress: Progress) -> tuple[Environment, LoadContext]:
    from testbed.load.cti_calls import CONSUMER_POOL, PUBLISHER_POOL, prepare_cti
    from testbed.load.cti_users import needs_transfers, user_classes

    logging.getLogger("locust").setLevel(logging.WARNING)
    classes = user_classes(opts.users)
    run.write_json("load_options.json", asdict(opts))
    if opts.workers or opts.remote_workers:
        return _setup_distributed(net, run, opts, classes, shape, progress)
    if needs_transfers(opts.users):
        users = users_for_rate(opts.max_rate, opts.per_user_rate, 10**6)
        per_org = -(-users // len(net.members))
        accounts = make_accounts(net, per_org)
        fund_accounts(net, accounts, progress=progress)
    else:
        accounts = {org.name: [] for org in net.members}
    cti = None if classes == [TransferUser] else prepare_cti(net, opts.users, opts.batch_size, progress)
    env = Environment(user_classes=classes, shape_class=shape, stop_timeout=10)
    ctx = LoadContext.attach(env, net, accounts, batch_size=opts.batch_size, per_user_rate=opts.per_user_rate,
                             poll_interval=opts.poll_interval)
    if cti is not None:
        ctx.cti = cti
        ctx.add_pool(CONSUMER_POOL, cti.consumers)
        ctx.add_pool(PUBLISHER_POOL, cti.publishers)
    env.create_local_runner()
    ctx.generators = InProcess(ctx)
    return env, ctx


def _setup_distributed(net, run, opts: LoadOptions, classes, shape, progress: Progress):
    """A Locust master here; its workers make the accounts, the master funds them (distributed.py)."""
    from testbed.load.distributed import DISTRIBUTED_USERS, WorkerPool

    if opts.users not in DISTRIBUTED_USERS:
        raise TestbedError(f"load users {opts.users!r} cannot run on Locust workers (only {', '.join(DISTRIBUTED_USERS)})",
                           hint="run CTI users with workers: 0")
    expect = opts.workers + opts.remote_workers
    users = users_for_rate(opts.max_rate, opts.per_user_rate, 10**6)
    per_worker = -(-users // expect) + 1  # Locust's dispatcher may give a worker one user more than its share
    per_org = -(-per_worker // len(net.members))
    # stop_timeout: a stopped worker sleeps this long before it reports ready again (users stop at
    # once anyway: a batch on its way is finished by its own greenlet)
    env = Environment(user_classes=classes, shape_class=shape, stop_timeout=2)
    ctx = LoadContext.attach(env, net, {org.name: [] for org in net.members}, batch_size=opts.batch_size,
                             per_user_rate=opts.per_user_rate, poll_interval=opts.poll_interval)
    launcher, bind = _launcher(net, run, opts)
    pool = WorkerPool(env, ctx, net, run, expect=expect, launcher=launcher, bind_host=bind,
                      bind_port=opts.master_port, progress=progress)
    ctx.generators = pool
    try:
        pool.start(per_org)
    except BaseException:
        env.runner.quit()
        pool.close()
        raise
    return env, ctx


def _launcher(net, run, opts: LoadOptions):
    """Who starts the workers, and the address the master listens on for them."""
    from testbed.load.distributed import LocalProcesses, MemberHosts

    if not opts.workers:
        return None, opts.master_bind
    if opts.worker_hosts == "local":
        return LocalProcesses(opts.workers, run), opts.master_bind
    if opts.worker_hosts != "ansible":
        raise TestbedError(f"worker_hosts {opts.worker_hosts!r}: one of local, ansible")
    from testbed.backends.ansible_workers import master_address

    lab_address = master_address(net)  # refuses a network that is not on the ansible backend
    bind = opts.master_bind if opts.master_bind != "127.0.0.1" else lab_address
    if bind is None:
        raise TestbedError("worker_hosts: ansible on an operator's hosts needs master_bind: an address of this "
                           "machine the member hosts reach", hint="e.g. --master-bind 10.0.0.5 --master-port 5557")
    hosts = MemberHosts(net.name, opts.workers, run.root, python=opts.worker_python, package=opts.worker_package)
    return hosts, bind


def submit_stats(env: Environment) -> dict:
    """Locust's own view of the eth_sendRawTransaction batches since the last stats reset."""
    from testbed.load.context import SUBMIT

    entries = [e for (name, method), e in env.stats.entries.items() if method == SUBMIT]
    calls = sum(e.num_requests for e in entries)
    if not calls:
        return {"calls": 0}
    total = sum(e.total_response_time for e in entries)
    return {"calls": calls, "failures": sum(e.num_failures for e in entries), "avg": round(total / calls, 1),
            "p95": max(e.get_response_time_percentile(0.95) or 0 for e in entries)}


def _finish(env: Environment, ctx: LoadContext, run, opts: LoadOptions, progress: Progress, since: int) -> int:
    """Drain and stop; write the records, and the pedometer counted from block `since`."""
    try:
        ctx.generators.flush()
    finally:
        dropped = ctx.drain(opts.drain_timeout)
        ctx.stop()
        env.runner.quit()
        ctx.generators.close()
    if ctx.prometheus is not None:
        ctx.recorder.resources += ctx.prometheus.stop()
    if ctx.cti is not None:
        ctx.cti.conclude(ctx.recorder, run)  # reverted contract calls, cti.json
    ctx.recorder.write(run)
    record_pedometer(ctx.net, run, since=since)
    if dropped:
        progress(f"load: {dropped} transactions accepted but not in a block after {opts.drain_timeout:.0f}s")
    return dropped


def _abort(env: Environment, ctx: LoadContext) -> None:
    """A run that failed half-way: stop the users and every worker, keep nothing running."""
    ctx.stop()
    env.runner.quit()
    ctx.generators.close()
    if ctx.prometheus is not None:
        ctx.prometheus.close()


def with_resource_source(net, ctx: LoadContext, opts: LoadOptions, progress: Progress) -> None:
    """Where the nodes' resource series come from (`opts.monitor`, testbed.monitoring.resources):
    psutil samples the node processes beside the generator; prometheus reads them back at the end."""
    from testbed.monitoring.resources import PrometheusResources, resolve

    choice = resolve(net, opts.monitor)
    ctx.sample_nodes = choice == "psutil"
    if choice == "prometheus":
        ctx.prometheus = PrometheusResources.open(net, progress).start()


def run_profile(net, run, profile: Profile, opts: LoadOptions, progress: Progress = lambda _: None) -> dict:
    """Offer `profile`; write raw records; return figures for the whole run."""
    opts.max_rate = max(opts.max_rate, max(profile.rate_at(t) or 0 for t in range(int(profile.duration) + 1)))
    shape = ProfileShape(profile)
    since = chain_mark(net)  # the pedometer of this run counts from here
    env, ctx = _setup(net, run, opts, shape, progress)
    files = LocustFiles(env, opts.csv_prefix, opts.html_file)
    top = max(profile.rate_at(t) or 0 for t in range(int(profile.duration) + 1))
    try:
        signing = ctx.generators.presign(top, opts.presign_seconds or min(profile.duration, 120.0))
        run.event("load_started", **profile.describe(), presign_seconds=round(signing, 3))
        ctx.start()
        started = time.time()
        env.runner.start_shape()
        files.start()
        while env.runner.shape_greenlet is not None:
            gevent.sleep(0.5)
        ended = time.time()
        env.runner.stop()
    except BaseException:
        _abort(env, ctx)
        raise
    run.event("load_finished", seconds=round(ended - started, 3))
    _finish(env, ctx, run, opts, progress, since)
    files.finish()
    figures = step_figures(RunData.from_recorder(ctx.recorder), started, ended)
    run.write_json("load.json", figures)
    return figures


@dataclass
class BenchLimits:
    min_ratio: float = 0.95  # included / offered
    p95_limit_s: float = 5.0
    step_seconds: float = 20.0
    settle_timeout: float = 15.0  # pause after each step until its transactions are included


def bench(net, run, rates: list[float], opts: LoadOptions, limits: BenchLimits,
          progress: Progress = lambda _: None) -> dict:
    """Step the offered rate; stop at the first step that breaks a limit. Returns the bench figures."""
    opts.max_rate = max(rates)
    shape = ControlledShape(0.0)
    since = chain_mark(net)  # the pedometer of this run counts from here
    env, ctx = _setup(net, run, opts, shape, progress)
    ctx.start()
    env.runner.start_shape()
    files = LocustFiles(env, opts.csv_prefix, opts.html_file)
    files.start()
    steps: list[dict] = []
    stop_reason = f"reached the last step ({rates[-1]:g} tx/s)"
    try:
        for rate in rates:
            signing = ctx.generators.presign(rate, opts.presign_seconds or limits.step_seconds)
            shape.rate, ctx.target_rate = rate, rate
            wanted = users_for_rate(rate, ctx.per_user_rate, ctx.max_users, ctx.min_users)
            poll_until(lambda: env.runner.user_count == wanted, timeout=5, interval=0.05, sleep=gevent.sleep)
            env.stats.reset_all()  # Locust's submit stats per step
            late_before = ctx.generators.signed_late()
            started = time.time()
            run.event("step_started", target=rate, presign_seconds=round(signing, 3))
            gevent.sleep(limits.step_seconds)
            ended = time.time()
            shape.rate, ctx.target_rate = 0.0, 0.0
            run.event("step_finished", target=rate)
            mine = [r for r in ctx.recorder.rows if started <= r.submit_time < ended]
            poll_until(lambda: not any(r.status == "submitted" for r in mine), timeout=limits.settle_timeout,
                       interval=0.25, sleep=gevent.sleep)
            gevent.sleep(1.0)
            figures = step_figures(RunData.from_recorder(ctx.recorder), started, ended)
            figures["submit_rpc_ms"] = submit_stats(env)
            figures["signed_while_sending"] = ctx.generators.signed_late() - late_before
            agreement = net.agreement()
            figures["agreement"] = {"agreed": agreement.agreed, "summary": agreement.summary()}
            steps.append(figures)
            lat = figures["latency"]
            progress(f"step {rate:g} tx/s: offered {figures['offered_tps']:.0f}, included {figures['included_tps_steady']:.0f} "
                     f"(ratio {figures['included_ratio']:.3f}), p50/p95 {lat['p50_s'] or 0:.2f}/{lat['p95_s'] or 0:.2f}s, "
                     f"send rpc avg {figures['submit_rpc_ms'].get('avg', 0)}ms, signed late {figures['signed_while_sending']}, "
                     f"generator CPU {figures['cpu']['generator_percent']:.0f}%, "
                     + (f"Solvers CPU {figures['cpu']['solvers_percent']:.0f}%, " if figures['cpu'].get('solvers_percent') else "")
                     + f"nodes CPU {figures['cpu']['nodes_percent']:.0f}%")
            if figures["included_ratio"] < limits.min_ratio:
                stop_reason = f"included/offered {figures['included_ratio']:.3f} < {limits.min_ratio} at {rate:g} tx/s"
                break
            if (lat["p95_s"] or 0) > limits.p95_limit_s:
                stop_reason = f"p95 latency {lat['p95_s']:.2f}s > {limits.p95_limit_s}s at {rate:g} tx/s"
                break
            if not agreement.agreed:
                stop_reason = f"nodes disagree at {rate:g} tx/s: {agreement.summary()}"
                break
    finally:
        shape.rate = None
        gevent.sleep(1.5)
        env.runner.stop()
        _finish(env, ctx, run, opts, progress, since)
        files.finish()
    sustained = [s for s in steps if s["included_ratio"] >= limits.min_ratio
                 and (s["latency"]["p95_s"] or 0) <= limits.p95_limit_s and s["agreement"]["agreed"]]
    best = max(sustained, key=lambda s: s["included_tps_steady"] or 0, default=None)
    result = {"steps": steps, "stop_reason": stop_reason, "limits": asdict(limits),
              "max_sustainable_included_tps": best["included_tps_steady"] if best else None,
              "max_sustainable_target_tps": best["target_tps"] if best else None}
    run.write_json("bench.json", result)
    return result
