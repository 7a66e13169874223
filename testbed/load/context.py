"""The load context: everything a run's users share, attached to Locust's Environment.

`Environment` stays the one composition root: `LoadContext.attach(env, ...)` hangs the
context on `env.testbed`; users and shapes reach it through their environment, never
through a global. The context owns the account pool, the recorder, the current target
rate, and three background greenlets:

- block watcher: polls one node every `poll_interval` s, reads each new block once,
  marks the load transactions it holds and fires an `inclusion` request event per
  transaction with its submit->inclusion latency (ms), once per transaction: after a
  reorg the raw record follows the canonical block, the event is not fired again;
- head sampler: every second, every node's head (for per-node head lag);
- resource sampler: every second, CPU and RSS of every node process and of this process.

`SenderContext` is the users' part alone (accounts, pacing, submission): what a worker of a
distributed run holds (testbed.load.distributed).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict

import gevent
import gevent.pool

from testbed.chain.rpc import RpcClient, RpcError
from testbed.chain.txs import TxRecord
from testbed.load.accounts import LoadAccount
from testbed.load.profiles import users_for_rate
from testbed.load.records import Recorder
from testbed.monitoring.textfile import LoadMetrics
from testbed.poll import poll_until
from testbed.resources import ResourceSampler, node_pids

INCLUSION = "inclusion"  # request_type of inclusion events
SUBMIT = "eth_sendRawTransaction"  # request_type of submission events


class SenderContext:
    """What the users of one generator process share: account pools, the pacing target, submission.

    A worker of a distributed run (testbed.load.distributed) has only this part; the rows it
    records go to the master, whose `LoadContext` watches blocks and samples the nodes.
    """

    def __init__(self, environment, recorder, accounts: dict[str, list[LoadAccount]], recipient: dict[str, str], *,
                 batch_size: int = 50, per_user_rate: float = 50.0) -> None:
        self.environment = environment
        self.recorder = recorder
        self.recipient = recipient
        self.batch_size = batch_size
        self.per_user_rate = per_user_rate
        self.target_rate: float | None = None  # set by the shape; None = users x per_user_rate
        self.target_users: int | None = None  # the users the shape asked for (all workers together)
        self.free: dict[str, list[LoadAccount]] = {org: list(group) for org, group in accounts.items()}
        self.pools: dict[str, dict[str, list[LoadAccount]]] = {"transfer": self.free}  # user kind -> free accounts
        self._pool_of: dict[int, str] = {}
        self._all = [a for group in accounts.values() for a in group]
        # every organization with load accounts gets a user, so every org's node takes load
        self.min_users = max(1, sum(1 for group in accounts.values() if group))
        self.cti = None  # a CtiLoad (testbed.load.cti_users) when CTI users run
        self.busy: dict[str, int] = defaultdict(int)
        self.remote_users = 0  # accounts held by the workers of a distributed run (the master has none)
        self._inflight = gevent.pool.Group()

    def accounts(self) -> list[LoadAccount]:
        return self._all

    @property
    def max_users(self) -> int:
        local = sum(len(g) for pool in self.pools.values() for g in pool.values()) + sum(self.busy.values())
        return local + self.remote_users

    def add_pool(self, name: str, accounts: dict[str, list[LoadAccount]]) -> None:
        """Accounts only users of pool `name` take (e.g. CTI member accounts)."""
        self.pools[name] = {org: list(group) for org, group in accounts.items()}
        self._all += [a for group in accounts.values() for a in group]

    # ---- accounts --------------------------------------------------------------------------
    def acquire(self, pool: str = "transfer") -> LoadAccount:
        """A free account from the organization with the fewest active users (spreads load over nodes)."""
        free = self.pools[pool]
        org = min((o for o in free if free[o]), key=lambda o: self.busy[o], default=None)
        if org is None:
            raise RuntimeError(f"no free {pool} account: more users than the {self.max_users} accounts")
        self.busy[org] += 1
        account = free[org].pop()
        self._pool_of[id(account)] = pool
        return account

    def release(self, account: LoadAccount) -> None:
        self.busy[account.org] -= 1
        self.pools[self._pool_of.pop(id(account), "transfer")][account.org].append(account)

    def current_rate(self) -> float:
        """The rate this process's users offer together (they pace to current_rate / their count)."""
        users = self.environment.runner.user_count if self.environment.runner else 0
        return self.target_rate if self.target_rate is not None else users * self.per_user_rate

    def signed_late(self) -> int:
        return sum(a.signed_late for a in self._all)

    # ---- submission ------------------------------------------------------------------------
    def submit(self, rpc: RpcClient, account: LoadAccount, batch: list[tuple[int, str, str]], kind: str) -> None:
        """Send pre-signed (nonce, hash, raw) in one JSON-RPC batch; record every row; fire events.

        The call runs in its own greenlet, which the caller waits for: Locust may kill a user
        greenlet while it stops, and a half-sent batch would leave transactions that were
        recorded but never reached the node. `drain` waits for these greenlets too.
        """
        job = account.inflight = self._inflight.spawn(self._submit, rpc, account, batch, kind)
        job.join()

    def wait_inflight(self, timeout: float) -> None:
        """Wait for the sends still on their way (users stopped mid-batch)."""
        self._inflight.join(timeout=timeout)

    def settled(self, rows: list[TxRecord]) -> None:
        """A batch's rows know their fate (submitted or rejected); a worker forwards them here."""

    def _submit(self, rpc: RpcClient, account: LoadAccount, batch: list[tuple[int, str, str]], kind: str) -> None:
        fire = self.environment.events.request.fire
        start = time.time()
        # rows are recorded before sending: whatever happens next, every tx is accounted for
        # (nonce, hash, raw) or (nonce, hash, raw, kind): a contract-call batch names each row's kind
        rows = [TxRecord(item[1], account.org, account.node, account.address, item[0], item[3] if len(item) > 3 else kind,
                         start, status="submitted") for item in batch]
        for row in rows:
            self.recorder.submitted(row)
        t = time.perf_counter()
        try:
            results = rpc.batch([(SUBMIT, [item[2]]) for item in batch], allow_errors=True)
            transport_error = None
        except RpcError as exc:  # no answer: the node may still have taken some; keep them pending
            results, transport_error = [None] * len(batch), str(exc)
        elapsed_ms = (time.perf_counter() - t) * 1000
        rejected = 0
        for row, result in zip(rows, results):
            if isinstance(result, RpcError):
                rejected += 1
                self.recorder.reject(row, str(result).split(": ", 2)[-1])
            elif transport_error:
                row.error = transport_error
        self.settled(rows)
        name = f"{kind} x{len(batch)}"
        if transport_error or rejected:
            fire(request_type=SUBMIT, name=name, response_time=elapsed_ms, response_length=len(batch), context={},
                 exception=RuntimeError(transport_error or f"{rejected} of {len(batch)} rejected"))
            account.presigned.clear()  # nonces may now have a gap: resynchronise from the node
            try:
                account.nonce = int(rpc.call("eth_getTransactionCount", account.address, "pending"), 16)
            except RpcError:
                pass
        else:
            fire(request_type=SUBMIT, name=name, response_time=elapsed_ms, response_length=len(batch), context={},
                 exception=None)


class LoadContext(SenderContext):
    """The run's context in the load process (or the master of a distributed run): the users'
    part plus the block watcher, the head and resource samplers and the recorder they fill."""

    def __init__(self, environment, net, accounts: dict[str, list[LoadAccount]], *, batch_size: int = 50,
                 per_user_rate: float = 50.0, poll_interval: float = 0.1) -> None:
        orgs = list(accounts)
        # each org pays the next org's first genesis account: traffic crosses organizations
        recipient = {org: net.keys.accounts[orgs[(i + 1) % len(orgs)]][0].address for i, org in enumerate(orgs)}
        super().__init__(environment, Recorder(), accounts, recipient, batch_size=batch_size,
                         per_user_rate=per_user_rate)
        self.net = net
        self.poll_interval = poll_interval
        self.generators = None  # how the users run: in this process or on workers (runner.py / distributed.py)
        self.sample_nodes = True  # psutil samples the node processes too (runner.with_resource_source)
        self.prometheus = None  # PrometheusResources when the nodes' resource series come from Prometheus
        # the run's figures for a running monitor (node-exporter's textfile collector; nothing without one)
        self.metrics = LoadMetrics(net.state.root / "monitor", SUBMIT, INCLUSION)
        environment.events.request.add_listener(self.metrics.on_request)
        self._greenlets: list[gevent.Greenlet] = []
        self._watch = RpcClient(net.nodes[0].rpc_url, timeout=10)
        self.recorder.next_block = int(self._watch.call("eth_blockNumber"), 16) + 1
        self.t0 = time.time()

    @classmethod
    def attach(cls, environment, net, accounts, **options) -> "LoadContext":
        ctx = cls(environment, net, accounts, **options)
        environment.testbed = ctx
        return ctx

    # ---- background ------------------------------------------------------------------------
    def start(self) -> None:
        self._greenlets = [gevent.spawn(self._watch_blocks), gevent.spawn(self._sample_heads),
                           gevent.spawn(self._sample_resources), gevent.spawn(self._write_metrics)]

    def stop(self) -> None:
        gevent.killall(self._greenlets, block=True, timeout=5)
        self._watch.close()
        self.metrics.target.set(0)
        self.metrics.write()  # the final totals (the next load run removes them)

    def poll_blocks(self) -> int:
        """Read the new blocks (testbed.chain.inclusion); one inclusion event per load transaction found."""
        fire = self.environment.events.request.fire
        found = 0
        for row in self.recorder.poll(self._watch):
            found += 1
            if row.reorged:  # its inclusion event already fired, from the block that left the chain
                continue
            fire(request_type=INCLUSION, name=row.kind, response_time=(row.included_time - row.submit_time) * 1000,
                 response_length=0, context={"block": row.included_block}, exception=None)
        return found

    def drain(self, timeout: float) -> int:
        """After the users stop: wait for pending transactions; mark what is left as dropped."""
        self.wait_inflight(30)
        poll_until(lambda: not self.recorder.pending, timeout=timeout, interval=0.25, sleep=gevent.sleep)
        gevent.sleep(self.poll_interval * 2)
        return self.recorder.drop_pending(f"not in a block within {timeout:.0f}s after the load stopped")

    def _watch_blocks(self) -> None:
        while True:
            try:
                self.poll_blocks()
            except RpcError:
                pass  # the watched node may be down during a fault; the next poll catches up
            gevent.sleep(self.poll_interval)

    def _sample_heads(self) -> None:
        clients = {n.name: RpcClient(n.rpc_url, timeout=1) for n in self.net.nodes}
        try:
            while True:
                now = time.time()
                users = self.environment.runner.user_count if self.environment.runner else 0
                # the shape's target; without a shape (Locust UI), what the users are asked to offer
                driven = self.environment.shape_class is not None  # a shape sets the target (None: over)
                target = self.target_rate if driven or self.target_rate is not None else (
                    self.current_rate() if users else None)
                self.recorder.rate(now, target, users)
                jobs = {name: gevent.spawn(rpc.call, "eth_blockNumber") for name, rpc in clients.items()}
                gevent.joinall(list(jobs.values()), timeout=1)
                for name, job in jobs.items():
                    value = job.value if job.successful() else None
                    self.recorder.head(now, name, int(value, 16) if value else None)
                gevent.sleep(max(0.0, 1.0 - (time.time() - now)))
        finally:
            for rpc in clients.values():
                rpc.close()

    def _write_metrics(self) -> None:
        while True:
            self.metrics.target.set(self.target_rate or 0)
            self.metrics.write()
            gevent.sleep(1.0)

    def _sample_resources(self) -> None:
        sampler = ResourceSampler(lambda: node_pids(self.net) if self.sample_nodes else {"generator": os.getpid()})
        sampler.sample_now()  # starts the CPU measurement of every process
        while True:
            gevent.sleep(1.0)
            self.recorder.resources += sampler.sample_now()


def presign(ctx, rate: float, seconds: float) -> float:
    """Sign ahead: enough transfers for `seconds` at `rate` on the accounts the users will take."""
    if seconds <= 0 or rate <= 0:
        return 0.0
    started = time.perf_counter()
    users = users_for_rate(rate, ctx.per_user_rate, ctx.max_users, ctx.min_users)
    share = int(rate / users * seconds) + ctx.batch_size
    per_org = -(-users // len(ctx.free))  # users are spread evenly; acquire() pops from the end
    for org, group in ctx.free.items():
        for account in group[len(group) - per_org:]:
            missing = share - len(account.presigned)
            if missing > 0:
                account.presign_transfers(missing, ctx.recipient[org])
            gevent.sleep(0)
    if ctx.cti is not None:
        ctx.cti.presign(rate, seconds, ctx.batch_size, ctx.per_user_rate)
    return time.perf_counter() - started
