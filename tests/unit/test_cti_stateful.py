"""Random sequences of CTI operations against a model (hypothesis stateful testing).

Every operation is tried whether or not it should succeed; the model says which, and a
mismatch fails. After every step: ether is conserved (accounts + market + fees paid), the
market holds exactly the proceeds it owes, every token's supply is accounted for
(inventory + holders + escrow = minted - burned), and each org's counters equal the model.
At the end of a run the counters also equal the Step events the Activity contract emitted,
and no task was ever finished twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cache

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule

from testbed.cti import ContractRevert, Kind, TaskState
from tests.unit.helpers_cti import ORGS, TIMEOUT, World, address_for, build_world, content_hash

ACCOUNTS = [f"{o}.{r}" for o in ORGS for r in ("pub", "sol", "con")]
orgs = st.sampled_from(ORGS)


@cache
def shared_world() -> World:
    return build_world()


@dataclass
class ModelToken:
    org: str
    price: int
    minted: int
    burned: int = 0
    withdrawn: bool = False
    likes: set = field(default_factory=set)


@dataclass
class ModelTask:
    token: int
    consumer: str  # org name
    state: TaskState = TaskState.PENDING
    overdue: bool = False
    rated: bool = False
    finishes: int = 0


class CtiMachine(RuleBasedStateMachine):
    tokens = Bundle("tokens")
    tasks = Bundle("tasks")

    def __init__(self) -> None:
        super().__init__()
        self.w = shared_world()
        self.w.reset()
        self.clients = {label: self.w.client(label) for label in ACCOUNTS}
        self.eth = self.w.w3.eth
        self.market = self.w.deployment.address("CtiMarket")
        self.escrow = self.w.deployment.address("Tasks")
        self.everyone = [address_for(label) for label in ACCOUNTS] + [self.market]
        self.start_ether = sum(self.eth.get_balance(a) for a in self.everyone)
        self.fees = 0
        self.model_tokens: dict[int, ModelToken] = {}
        self.model_tasks: dict[int, ModelTask] = {}
        self.holdings: Counter = Counter()  # (org, token) -> tokens held by <org>.con
        self.proceeds: Counter = Counter()
        self.counts: dict[str, Counter] = {o: Counter() for o in ORGS}

    # ---- helpers -------------------------------------------------------------------------

    def c(self, org: str, role: str):
        return self.clients[f"{org}.{role}"]

    def attempt(self, ok: bool, call, error: str | None = None):
        """Run `call`; it must succeed iff `ok`. Returns the Sent or None."""
        if ok:
            sent = call()
            self.fees += sent.fee_wei
            return sent
        with pytest.raises(ContractRevert) as err:
            call()
        if error is not None:
            assert err.value.error == error, str(err.value)
        return None

    def count(self, org: str, kind: Kind, n: int = 1) -> None:
        self.counts[org][kind] += n

    # ---- catalog -------------------------------------------------------------------------

    @rule(target=tokens, org=orgs, price=st.integers(0, 5000), supply=st.integers(1, 4))
    def publish(self, org, price, supply):
        sent = self.attempt(True, lambda: self.c(org, "pub").publish(
            f"uuid-{org}", "t", content_hash(org), price, supply, [address_for(f"{org}.sol")]))
        self.model_tokens[sent.result] = ModelToken(org, price, supply)
        self.count(org, Kind.PUBLISHED)
        self.count(org, Kind.MINTED, supply)
        return sent.result

    @rule(token=tokens, amount=st.integers(1, 3))
    def mint(self, token, amount):
        t = self.model_tokens[token]
        if self.attempt(not t.withdrawn, lambda: self.c(t.org, "pub").mint(token, amount), "ListingWithdrawn"):
            t.minted += amount
            self.count(t.org, Kind.MINTED, amount)

    @rule(token=tokens)
    def withdraw_listing(self, token):
        t = self.model_tokens[token]
        stock = self.c(t.org, "pub").inventory(token)
        if self.attempt(not t.withdrawn, lambda: self.c(t.org, "pub").withdraw_listing(token), "ListingWithdrawn"):
            t.withdrawn, t.burned = True, t.burned + stock

    @rule(token=tokens, buyer=orgs, amount=st.integers(1, 3), delta=st.integers(-1, 500))
    def buy(self, token, buyer, amount, delta):
        t = self.model_tokens[token]
        stock = t.minted - t.burned - sum(n for (_, k), n in self.holdings.items() if k == token) \
            - sum(1 for x in self.model_tasks.values() if x.token == token and x.state is not TaskState.FINISHED)
        cost = t.price * amount
        value = max(cost + delta, 0)
        ok = not t.withdrawn and buyer != t.org and amount <= stock and value >= cost
        if self.attempt(ok, lambda: self.c(buyer, "con").buy(token, amount, value=value)):
            self.holdings[(buyer, token)] += amount
            self.proceeds[t.org] += cost
            self.count(t.org, Kind.SOLD, amount)
            self.count(buyer, Kind.BOUGHT, amount)

    @rule(org=orgs)
    def withdraw_proceeds(self, org):
        if self.attempt(self.proceeds[org] > 0, lambda: self.c(org, "pub").withdraw_proceeds(), "NothingToWithdraw"):
            self.proceeds[org] = 0

    @rule(token=tokens, org=orgs)
    def like(self, token, org):
        t = self.model_tokens[token]
        if self.attempt(org != t.org and org not in t.likes, lambda: self.c(org, "con").like(token)):
            t.likes.add(org)
            self.count(org, Kind.LIKE_GIVEN)
            self.count(t.org, Kind.LIKE_RECEIVED)

    # ---- tasks ---------------------------------------------------------------------------

    @rule(target=tasks, token=tokens, org=orgs)
    def request(self, token, org):
        sent = self.attempt(self.holdings[(org, token)] > 0, lambda: self.c(org, "con").request(token, b"\x02" * 33),
                            "NoToken")
        if sent is None:
            return multiple()
        self.holdings[(org, token)] -= 1
        self.model_tasks[sent.result] = ModelTask(token, org)
        self.count(org, Kind.REQUESTED)
        return sent.result

    def _publisher(self, task: int) -> str:
        return self.model_tokens[self.model_tasks[task].token].org

    @rule(task=tasks)
    def accept(self, task):
        m = self.model_tasks[task]
        if self.attempt(m.state is TaskState.PENDING, lambda: self.c(self._publisher(task), "sol").accept(task),
                        "BadState"):
            m.state = TaskState.ACCEPTED
            self.count(self._publisher(task), Kind.ACCEPTED)

    @rule(task=tasks)
    def finish(self, task):
        m = self.model_tasks[task]
        ok = m.state is TaskState.ACCEPTED and not m.overdue
        if self.attempt(ok, lambda: self.c(self._publisher(task), "sol").finish(task, content_hash(str(task)), "u")):
            m.state = TaskState.FINISHED
            m.finishes += 1
            self.model_tokens[m.token].burned += 1
            self.count(self._publisher(task), Kind.SOLVED)
            self.count(m.consumer, Kind.CONSUMED)

    def _returned(self, task: int, state: TaskState, org: str, kind: Kind) -> None:
        m = self.model_tasks[task]
        m.state = state
        self.holdings[(m.consumer, m.token)] += 1
        self.count(org, kind)

    @rule(task=tasks)
    def cancel(self, task):
        m = self.model_tasks[task]
        if self.attempt(m.state is TaskState.PENDING, lambda: self.c(m.consumer, "con").cancel(task), "BadState"):
            self._returned(task, TaskState.CANCELLED, m.consumer, Kind.CANCELLED)

    @rule(task=tasks)
    def expire(self, task):
        m = self.model_tasks[task]
        ok = m.state is TaskState.ACCEPTED and m.overdue
        if self.attempt(ok, lambda: self.c(m.consumer, "con").expire(task)):
            self._returned(task, TaskState.EXPIRED, m.consumer, Kind.EXPIRED)

    @rule(task=tasks)
    def reject(self, task):
        m = self.model_tasks[task]
        ok = m.state in (TaskState.PENDING, TaskState.ACCEPTED)
        if self.attempt(ok, lambda: self.c(self._publisher(task), "sol").reject(task, "missing"), "BadState"):
            self._returned(task, TaskState.REJECTED, self._publisher(task), Kind.REJECTED)

    @rule(task=tasks, rating=st.integers(1, 5))
    def rate(self, task, rating):
        m = self.model_tasks[task]
        ok = m.state is TaskState.FINISHED and not m.rated
        if self.attempt(ok, lambda: self.c(m.consumer, "con").rate(task, rating)):
            m.rated = True
            self.count(m.consumer, Kind.FEEDBACK_GIVEN)
            self.count(self._publisher(task), Kind.FEEDBACK_RECEIVED)

    @rule()
    def time_passes(self):
        self.w.chain.advance(TIMEOUT + 1)
        for m in self.model_tasks.values():
            if m.state is TaskState.ACCEPTED:
                m.overdue = True

    # ---- invariants ----------------------------------------------------------------------

    @invariant()
    def ether_is_conserved(self):
        total = sum(self.eth.get_balance(a) for a in self.everyone)
        assert total + self.fees == self.start_ether
        assert self.eth.get_balance(self.market) == sum(self.proceeds.values())

    @invariant()
    def token_supply_is_conserved(self):
        market = self.clients["acme.pub"].c["CtiMarket"]
        holders = [address_for(label) for label in ACCOUNTS] + [self.market, self.escrow]
        for token, t in self.model_tokens.items():
            *held, stock, escrowed = market.functions.balanceOfBatch(holders, [token] * len(holders)).call()
            supply = market.functions.totalSupply(token).call()
            assert supply == sum(held) + stock + escrowed == t.minted - t.burned
            assert sum(held) == sum(n for (_, k), n in self.holdings.items() if k == token)

    @invariant()
    def counters_match_the_model(self):
        for org in ORGS:
            got = self.clients[f"{org}.pub"].activity(ORGS.index(org) + 1)
            assert {k: v for k, v in got.items() if v} == {k.name.lower(): v for k, v in self.counts[org].items() if v}

    def teardown(self):
        # counters == Step events, and no task finished twice
        activity = self.clients["acme.pub"].c["Activity"]
        steps = activity.events.Step().get_logs(from_block=0)
        from_events = Counter()
        for log in steps:
            from_events[(log.args.org, Kind(log.args.kind))] += log.args.amount
        for i, org in enumerate(ORGS, start=1):
            counts = self.clients[f"{org}.pub"].activity(i)
            for kind in Kind:
                assert counts[kind.name.lower()] == from_events[(i, kind)]
        assert all(m.finishes <= 1 for m in self.model_tasks.values())
        finished = sum(1 for m in self.model_tasks.values() if m.state is TaskState.FINISHED)
        assert sum(from_events[(i, Kind.CONSUMED)] for i in range(1, len(ORGS) + 1)) == finished


CtiMachine.TestCase.settings = settings(max_examples=12, stateful_step_count=25, deadline=None,
                                        suppress_health_check=[HealthCheck.too_slow], derandomize=False)
TestCtiStateMachine = CtiMachine.TestCase
