"""Plain Locust entry: `locust -f testbed/load/locustfile.py --network NAME [--rate-profile ...]`.

Runs against a network that is already up (`testbed up`), with Locust's web UI or
--headless. Three user classes, all client-signed, each sending to its organization's node:
`TransferUser` (value transfers), `CtiConsumerUser` (buy + request another org's CTI; needs
`testbed deploy`, whose Solvers then deliver) and `CtiPublisherUser` (publish + mint). Name the
classes to run after the options (`locust -f ... TransferUser`), or pick them in the web UI
(`--class-picker`); with none named, all three run. On start it funds one load account per
possible transfer user from the organizations' genesis accounts, and for CTI users lists one CTI
per organization and estimates each call's gas once. With --rate-profile (constant:RATE:SECONDS,
ramp:FROM:TO:SECONDS, steps:R1,R2,..:SECONDS, spike:BASE:PEAK:AT:LENGTH:SECONDS) the rate follows that shape;
without it, the user count set in the UI (or -u) decides the rate (users x --per-user-rate).
When the test stops, the raw records and the report go to a new run directory of the
network (printed on exit).

Distributed, plain Locust style (TransferUser only): `locust -f ... --master --expect-workers N
TransferUser` and N times `locust -f ... --worker --master-host HOST TransferUser`. Each worker
makes its own accounts (private keys never leave it) and sends their addresses; the master funds
them once, keeps the one record of every transaction and block, and writes the run directory.

Needs TESTBED_HOME to point at the network's state root if it is not the default.
"""

from __future__ import annotations

import sys
import time

from locust import events

from testbed.load.cti_users import CtiConsumerUser, CtiPublisherUser  # noqa: F401  (user classes Locust picks up)
from testbed.load.shapes import ProfileShape
from testbed.load.users import TransferUser  # noqa: F401


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    group = parser.add_argument_group("testbed")
    group.add_argument("--network", default=None, help="Network name (default: the only one).")
    group.add_argument("--rate-profile", default=None, help="Offered-rate profile, e.g. steps:100,200,400:20.")
    group.add_argument("--per-user-rate", type=float, default=50.0, help="tx/s per user (= per account).")
    group.add_argument("--batch", type=int, default=50, help="Transactions per eth_sendRawTransaction batch.")
    group.add_argument("--max-rate", type=float, default=1000.0, help="Sizes the funded account pool.")


def _wants_profile() -> bool:
    # Locust imports this file before it parses options, and a shape class found here takes
    # the user count away from the web UI: define the shape only when a profile is asked for.
    return any(a == "--rate-profile" or a.startswith("--rate-profile=") for a in sys.argv)


if _wants_profile():
    class TestbedShape(ProfileShape):
        """Follows --rate-profile."""

        def __init__(self) -> None:
            super().__init__(profile=None)

        def tick(self):
            if self.profile is None:
                from testbed.load.profiles import parse_profile
                self.profile = parse_profile(self.runner.environment.parsed_options.rate_profile)
            return super().tick()


@events.init.add_listener
def _init(environment, **_) -> None:
    from testbed.errors import TestbedError

    try:
        _setup(environment)
    except TestbedError as exc:  # one line, like the testbed CLI (no Locust traceback)
        raise SystemExit(f"error: {exc}") from None


def _setup(environment) -> None:
    from testbed.contracts import chain_mark
    from testbed.network import resolve_network
    from testbed.load.accounts import fund_accounts, make_accounts
    from testbed.load.cti_calls import CONSUMER_POOL, PUBLISHER_POOL, prepare_cti
    from testbed.load.context import LoadContext
    from testbed.load.profiles import parse_profile, users_for_rate
    from testbed.runs import RunDir

    from locust.runners import MasterRunner, WorkerRunner

    from testbed.errors import TestbedError

    options = environment.parsed_options
    classes = set(environment.user_classes)
    distributed = isinstance(environment.runner, (MasterRunner, WorkerRunner))
    if distributed and classes != {TransferUser}:
        raise TestbedError("Locust workers run TransferUser only (CTI users need member accounts admitted through "
                           "the contracts, which stays in one process)", hint="name TransferUser after the options")
    if isinstance(environment.runner, WorkerRunner):  # its accounts come from the master's setup message
        from testbed.load.distributed import Worker

        environment.testbed_worker = Worker(environment, environment.runner)
        return
    net = resolve_network(options.network)
    top = options.max_rate
    if options.rate_profile:
        profile = parse_profile(options.rate_profile)
        top = max(top, max(profile.rate_at(t) or 0 for t in range(int(profile.duration) + 1)))
    accounts = {org.name: [] for org in net.members}
    per_org = -(-users_for_rate(top, options.per_user_rate, 10**6) // len(net.members))
    if TransferUser in classes and not distributed:
        accounts = make_accounts(net, per_org)
        fund_accounts(net, accounts, progress=print)
    cti = None
    if classes & {CtiConsumerUser, CtiPublisherUser}:
        cti = prepare_cti(net, "mix" if CtiPublisherUser in classes else "cti", options.batch, print)
    ctx = LoadContext.attach(environment, net, accounts, batch_size=options.batch, per_user_rate=options.per_user_rate)
    if cti is not None:
        ctx.cti = cti
        ctx.add_pool(CONSUMER_POOL, cti.consumers)
        ctx.add_pool(PUBLISHER_POOL, cti.publishers)
    ctx.run = RunDir.create(net.state.runs_dir, "locust")
    ctx.run.write_json("spec.json", net.spec.model_dump())
    ctx.run.write_json("load_options.json", {"users": sorted(c.__name__ for c in classes), "batch_size": options.batch,
                                             "per_user_rate": options.per_user_rate, "rate_profile": options.rate_profile})
    ctx.started = None
    ctx.since = chain_mark(net)  # the pedometer of this run counts from here
    if isinstance(environment.runner, MasterRunner):
        # the workers make their accounts and send the addresses; funded here, once for all
        from testbed.load.distributed import WorkerPool

        expect = options.expect_workers
        print(f"waiting for {expect} Locust worker(s) to connect (--expect-workers)")
        ctx.generators = WorkerPool(environment, ctx, net, ctx.run, expect=expect, runner=environment.runner,
                                    connect_timeout=600, progress=print)
        ctx.generators.start(-(-(-(-per_org * len(net.members) // expect) + 1) // len(net.members)))


@events.test_start.add_listener
def _start(environment, **_) -> None:
    ctx = getattr(environment, "testbed", None)
    if getattr(ctx, "started", False) is None:  # the master or a single process (a worker's context has none)
        ctx.started = time.time()
        ctx.start()
        ctx.run.event("load_started", profile=environment.parsed_options.rate_profile)


@events.test_stopping.add_listener
def _stopping(environment, **_) -> None:
    """On a master: the workers' users stop and their last rows arrive before Locust quits them."""
    ctx = getattr(environment, "testbed", None)
    pool = getattr(ctx, "generators", None)
    if pool is not None and not getattr(ctx, "flushed", False):
        pool.stop_users()
        pool.flush()
        ctx.flushed = True


@events.quitting.add_listener
def _quit(environment, **_) -> None:
    from testbed.contracts import record_pedometer
    from testbed.report import render

    worker = getattr(environment, "testbed_worker", None)
    if worker is not None:
        worker.stop()
        return
    ctx = getattr(environment, "testbed", None)
    if ctx is None or ctx.started is None:
        return
    ctx.run.event("load_finished")
    generators = getattr(ctx, "generators", None)
    if generators is not None and not getattr(ctx, "flushed", False):  # a master: every worker's last rows first
        generators.flush()
    dropped = ctx.drain(30)
    ctx.stop()
    if ctx.cti is not None:
        ctx.cti.conclude(ctx.recorder, ctx.run)  # reverted contract calls, cti.json
    ctx.recorder.write(ctx.run)
    record_pedometer(ctx.net, ctx.run, since=ctx.since)
    agreement = ctx.net.agreement()
    ctx.run.write_json("agreement.json", {"agreed": agreement.agreed, "summary": agreement.summary()})
    render(ctx.run.root)
    ctx.run.set_status("passed" if agreement.agreed else "failed", dropped=dropped)
    if generators is not None:
        generators.close()
    print(f"testbed run directory: {ctx.run.root}")
