"""Locust users that send client-signed transactions to their organization's node.

`ChainUser` is the protocol adapter (one small abstract User, like Locust's HttpUser): it
owns one funded load account for its lifetime (no nonce is shared between users), sends
its organization's node pre-signed transactions in batched eth_sendRawTransaction calls,
fires one `eth_sendRawTransaction` request event per batch, and paces itself so that all
users together offer the context's target rate. Inclusion is not awaited here: the
context's block watcher fires the `inclusion` events.

A concrete user implements `next_batch()` returning (nonce, hash, raw) tuples and names its
`kind`. `TransferUser` sends value transfers.

CTI users (the seam): testbed/cti provides `CtiClient` (synchronous: signs, sends, waits
for each receipt) over a deployed `Deployment`. A CTI publisher/consumer user needs (1) a
deployed market and organization accounts admitted as members (publisher/consumer roles),
and (2) pre-signed contract calls, i.e. `contract_tx(...)` built once and signed with
increasing nonces, so that it can go through `ChainUser.submit` like transfers and be
measured the same way. A consumer's buy -> request -> await delivery is a chain of
dependent transactions; the natural shape is a `ChainUser` subclass whose `next_batch`
returns the calls that are ready (buy and request can be batched with consecutive nonces;
delivery is awaited by watching task state). Implemented in cti_users.py / cti_calls.py
(`CtiConsumerUser`: buy + requests in one batch; delivery is not awaited by the user, the
Solvers' finishes are counted from TaskChanged logs by benchmarks/load_cti.py;
`CtiPublisherUser`; the mix): see docs/load.md, "CTI users".
"""

from __future__ import annotations

import random
import time

import gevent

from locust import User, task

from testbed.chain.rpc import RpcClient
from testbed.load.profiles import pacing_interval


class ChainUser(User):
    abstract = True
    kind = "tx"
    pool = "transfer"  # which of the context's account pools this user takes its account from
    CATCH_UP_S = 1.0

    def on_start(self) -> None:
        self.ctx = self.environment.testbed
        self.account = self.ctx.acquire(self.pool)
        if self.account.inflight is not None:  # a stopped user's last batch may still be on its way
            self.account.inflight.join()
        self.rpc = RpcClient(self.account.rpc_url, timeout=10)
        self._next = time.monotonic()
        node_nonce = int(self.rpc.call("eth_getTransactionCount", self.account.address, "pending"), 16)
        if node_nonce != self.account.nonce:  # a previous user of this account was stopped mid-batch
            self.account.presigned.clear()
            self.account.nonce = node_nonce
        # spread users over the pacing interval so that batches do not arrive in bursts
        users = max(1, self.environment.runner.user_count)
        gevent.sleep(random.uniform(0, min(1.0, pacing_interval(self.ctx.current_rate(), users, self.batch()))))
        self._next = time.monotonic()

    def on_stop(self) -> None:
        self.ctx.release(self.account)  # the session is not closed: a detached send may still use it

    def wait_time(self) -> float:
        """Open-loop pacing at this user's share of the target rate (re-read every batch).

        Batches are scheduled at fixed intervals from the previous *scheduled* start, not from
        when the last call returned, so a slow RPC answer does not lower the offered rate: the
        user catches up, with at most `CATCH_UP_S` of backlog (beyond that the deficit is lost
        and shows as offered < target).
        """
        users = max(1, self.environment.runner.user_count)
        interval = min(5.0, pacing_interval(self.ctx.current_rate(), users, self.batch()))
        now = time.monotonic()
        self._next = max(self._next + interval, now - self.CATCH_UP_S)
        return max(0.0, self._next - now)

    def batch(self) -> int:
        """Transactions per batch of this user (what its pacing is computed from)."""
        return self.ctx.batch_size

    def next_batch(self) -> list[tuple[int, str, str]]:
        raise NotImplementedError

    @task
    def send(self) -> None:
        self.ctx.submit(self.rpc, self.account, self.next_batch(), self.kind)


class TransferUser(ChainUser):
    kind = "transfer"

    def batch(self) -> int:
        """At most one second of this user's share: with one user per organization at a low rate,
        full batches would come seconds apart, in bursts (and the figures with them)."""
        users = max(1, self.environment.runner.user_count)
        return max(1, min(self.ctx.batch_size, int(self.ctx.current_rate() / users)))

    def next_batch(self) -> list[tuple[int, str, str]]:
        return self.account.take(self.batch(), self.ctx.recipient[self.account.org])
