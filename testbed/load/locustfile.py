"""Plain Locust entry: `locust -f testbed/load/locustfile.py --network NAME [--rate-profile ...]`.

Runs against a network that is already up (`testbed up`), with Locust's web UI or
--headless. On start it funds one load account per possible user from the
organizations' genesis accounts; users then send client-signed transfers to their
organization's node. With --rate-profile (constant:RATE:SECONDS, ramp:FROM:TO:SECONDS,
steps:R1,R2,..:SECONDS, spike:BASE:PEAK:AT:LENGTH:SECONDS) the rate follows that shape;
without it, the user count set in the UI (or -u) decides the rate (users x --per-user-rate).
When the test stops, the raw records and the report go to a new run directory of the
network (printed on exit).

Needs TESTBED_HOME to point at the network's state root if it is not the default.
"""

from __future__ import annotations

import sys
import time

from locust import events

from testbed.load.shapes import ProfileShape
from testbed.load.users import TransferUser  # noqa: F401  (the user class Locust picks up)


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
    from testbed.network import resolve_network
    from testbed.load.accounts import fund_accounts, make_accounts
    from testbed.load.context import LoadContext
    from testbed.load.profiles import parse_profile, users_for_rate
    from testbed.runs import RunDir

    options = environment.parsed_options
    net = resolve_network(options.network)
    top = options.max_rate
    if options.rate_profile:
        profile = parse_profile(options.rate_profile)
        top = max(top, max(profile.rate_at(t) or 0 for t in range(int(profile.duration) + 1)))
    per_org = -(-users_for_rate(top, options.per_user_rate, 10**6) // len(net.members))
    accounts = make_accounts(net, per_org)
    fund_accounts(net, accounts, progress=print)
    ctx = LoadContext.attach(environment, net, accounts, batch_size=options.batch, per_user_rate=options.per_user_rate)
    ctx.run = RunDir.create(net.state.runs_dir, "locust")
    ctx.run.write_json("spec.json", net.spec.model_dump())
    ctx.started = None


@events.test_start.add_listener
def _start(environment, **_) -> None:
    ctx = environment.testbed
    if ctx.started is None:
        ctx.started = time.time()
        ctx.start()
        ctx.run.event("load_started", profile=environment.parsed_options.rate_profile)


@events.quitting.add_listener
def _quit(environment, **_) -> None:
    from testbed.report import render

    ctx = getattr(environment, "testbed", None)
    if ctx is None or ctx.started is None:
        return
    ctx.run.event("load_finished")
    dropped = ctx.drain(30)
    ctx.stop()
    ctx.recorder.write(ctx.run.root)
    agreement = ctx.net.agreement()
    ctx.run.write_json("agreement.json", {"agreed": agreement.agreed, "summary": agreement.summary()})
    render(ctx.run.root)
    ctx.run.set_status("passed" if agreement.agreed else "failed", dropped=dropped)
    print(f"testbed run directory: {ctx.run.root}")
