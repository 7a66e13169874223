"""Random sequences of CTI operations against a model (hypothesis stateful testing).

Every operation is tried whether or not it should succeed; the model says which, and a
mismatch fails. Beside the CTI steps, the sequences expel member organizations (a removal
proposal and the votes that pass it), transfer tokens between members' accounts (ERC-1155
safeTransferFrom), dispute deliveries, and relay members' calls through a contract (the caller is
then the contract, no member). After every step: ether is conserved (accounts + market + fees paid), the
market holds exactly the proceeds it owes, every token's supply is accounted for
(inventory + holders = minted - used up - in escrow, the escrow burned until its task closes), and each org's counters equal the model.
At the end of a run the counters also equal the Step events the Activity contract emitted,
and no task was ever finished twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cache

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from testbed.cti import ContractRevert, Kind, TaskState
from testbed.cti.tx import contract_tx
from tests.unit.helpers_cti import ORGS, TIMEOUT, World, address_for, build_world, content_hash

ACCOUNTS = [f"{o}.{r}" for o in ORGS for r in ("pub", "sol", "con")]
orgs = st.sampled_from(ORGS)


# A relay contract: forwards its calldata and value to TARGET, returns or reverts with the answer.
# Runtime: CALLDATACOPY; CALL(gas, TARGET, callvalue, calldata); RETURNDATACOPY; success ? RETURN : REVERT
RELAY_RUNTIME = "36600060003760006000366000347f{target}5af13d600060003e603e573d6000fd5b3d6000f3"


def relay_initcode(target: str) -> str:
    runtime = RELAY_RUNTIME.format(target=target.lower().removeprefix("0x").rjust(64, "0"))
    size = len(runtime) // 2
    return f"0x60{size:02x}80600b6000396000f3{runtime}"


@cache
def shared_world() -> World:
    """The consortium, plus a relay contract in front of each CTI contract (before the snapshot
    every sequence starts from)."""
    world = build_world()
    rich = world.chain.tester.get_accounts()[0]
    world.relays = {}
    for name in ("CtiMarket", "Tasks", "Feedback", "Membership"):
        tx = world.w3.eth.send_transaction({"from": rich, "data": relay_initcode(world.deployment.address(name))})
        world.relays[name] = world.w3.eth.get_transaction_receipt(tx)["contractAddress"]
    world.snapshot = world.chain.tester.take_snapshot()
    return world


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
    rated: bool = False  # a verdict given: a rating or a dispute
    finishes: int = 0


class CtiMachine(RuleBasedStateMachine):
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
        self.active = set(ORGS)

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

    def member(self, *orgs: str) -> bool:
        return all(o in self.active for o in orgs)

    def count(self, org: str, kind: Kind, n: int = 1) -> None:
        self.counts[org][kind] += n

    def pick(self, data, candidates: list, fallback: list):
        """Mostly a valid candidate (so sequences get somewhere), sometimes anything."""
        if candidates and data.draw(st.integers(0, 3), label="valid") > 0:
            return data.draw(st.sampled_from(candidates), label="pick")
        return data.draw(st.sampled_from(fallback), label="any")

    def tasks_in(self, *states: TaskState) -> list[int]:
        return sorted(i for i, m in self.model_tasks.items() if m.state in states)

    def stock(self, token: int) -> int:
        t = self.model_tokens[token]
        held = sum(n for (_, k), n in self.holdings.items() if k == token)
        escrowed = sum(1 for m in self.model_tasks.values()
                       if m.token == token and m.state in (TaskState.PENDING, TaskState.ACCEPTED))
        return 0 if t.withdrawn else t.minted - t.burned - held - escrowed

    # ---- catalog -------------------------------------------------------------------------

    @precondition(lambda self: len(self.model_tokens) < 4)
    @rule(org=orgs, price=st.integers(0, 5000), supply=st.integers(1, 5))
    def publish(self, org, price, supply):
        sent = self.attempt(self.member(org), lambda: self.c(org, "pub").publish(
            f"uuid-{org}", "t", content_hash(org), price, supply, [address_for(f"{org}.sol")]), "NotMember")
        if sent is None:
            return
        self.model_tokens[sent.result] = ModelToken(org, price, supply)
        self.count(org, Kind.PUBLISHED)
        self.count(org, Kind.MINTED, supply)

    @precondition(lambda self: self.model_tokens)
    @rule(data=st.data(), amount=st.integers(0, 3))
    def mint_or_withdraw(self, data, amount):
        """Mint `amount` more tokens, or (amount 0) withdraw the listing and burn its stock."""
        token = data.draw(st.sampled_from(sorted(self.model_tokens)), label="token")
        t = self.model_tokens[token]
        pub = self.c(t.org, "pub")
        ok = not t.withdrawn and self.member(t.org)
        if amount == 0:
            stock = self.stock(token)
            if self.attempt(ok, lambda: pub.withdraw_listing(token)):
                t.withdrawn, t.burned = True, t.burned + stock
        elif self.attempt(ok, lambda: pub.mint(token, amount)):
            t.minted += amount
            self.count(t.org, Kind.MINTED, amount)

    @precondition(lambda self: self.model_tokens)
    @rule(data=st.data(), amount=st.integers(1, 3), delta=st.integers(-1, 500))
    def buy(self, data, amount, delta):
        """Buy as a consumer of another org (sometimes of the publisher org itself)."""
        token = self.pick(data, [k for k in sorted(self.model_tokens) if self.stock(k)], sorted(self.model_tokens))
        t = self.model_tokens[token]
        buyer = self.pick(data, [o for o in ORGS if o != t.org], list(ORGS))
        cost = t.price * amount
        value = max(cost + delta, 0)
        ok = (not t.withdrawn and buyer != t.org and amount <= self.stock(token) and value >= cost
              and self.member(buyer, t.org))
        if self.attempt(ok, lambda: self.c(buyer, "con").buy(token, amount, value=value)):
            self.holdings[(buyer, token)] += amount
            self.proceeds[t.org] += cost
            self.count(t.org, Kind.SOLD, amount)
            self.count(buyer, Kind.BOUGHT, amount)

    @precondition(lambda self: any(self.proceeds.values()))
    @rule(org=orgs)
    def withdraw_proceeds(self, org):
        if self.attempt(self.proceeds[org] > 0, lambda: self.c(org, "pub").withdraw_proceeds(), "NothingToWithdraw"):
            self.proceeds[org] = 0

    @precondition(lambda self: self.model_tokens)
    @rule(data=st.data())
    def like(self, data):
        pairs = [(k, o) for k, t in sorted(self.model_tokens.items()) for o in ORGS if o != t.org and o not in t.likes]
        token, org = self.pick(data, pairs, [(k, o) for k in sorted(self.model_tokens) for o in ORGS])
        t = self.model_tokens[token]
        if self.attempt(org != t.org and org not in t.likes and self.member(org), lambda: self.c(org, "con").like(token)):
            t.likes.add(org)
            self.count(org, Kind.LIKE_GIVEN)
            self.count(t.org, Kind.LIKE_RECEIVED)

    # ---- tasks ---------------------------------------------------------------------------

    @precondition(lambda self: self.model_tokens)
    @rule(data=st.data(), org=orgs)
    def request(self, data, org):
        """Request as a holder of a token (mostly), else as anyone."""
        held = sorted(k for k, n in self.holdings.items() if n > 0)
        org, token = self.pick(data, held, [(org, k) for k in sorted(self.model_tokens)])
        sent = self.attempt(self.holdings[(org, token)] > 0 and self.member(org),
                            lambda: self.c(org, "con").request(token, b"\x02" * 33))
        if sent is not None:
            self.holdings[(org, token)] -= 1
            self.model_tasks[sent.result] = ModelTask(token, org)
            self.count(org, Kind.REQUESTED)

    @precondition(lambda self: self.model_tokens)
    @rule(data=st.data(), delta=st.integers(-1, 500))
    def buy_and_request(self, data, delta):
        """Buy one token and request with it in one call (the token never in the buyer's balance)."""
        token = self.pick(data, [k for k in sorted(self.model_tokens) if self.stock(k)], sorted(self.model_tokens))
        t = self.model_tokens[token]
        buyer = self.pick(data, [o for o in ORGS if o != t.org], list(ORGS))
        value = max(t.price + delta, 0)
        ok = (not t.withdrawn and buyer != t.org and self.stock(token) >= 1 and value >= t.price
              and self.member(buyer, t.org))
        sent = self.attempt(ok, lambda: self.c(buyer, "con").buy_and_request(token, b"\x02" * 33, value=value))
        if sent is not None:
            self.proceeds[t.org] += t.price
            self.model_tasks[sent.result] = ModelTask(token, buyer)
            self.count(t.org, Kind.SOLD)
            self.count(buyer, Kind.BOUGHT)
            self.count(buyer, Kind.REQUESTED)

    def _publisher(self, task: int) -> str:
        return self.model_tokens[self.model_tasks[task].token].org

    @precondition(lambda self: self.model_tasks)
    @rule(data=st.data())
    def accept(self, data):
        task = self.pick(data, self.tasks_in(TaskState.PENDING), sorted(self.model_tasks))
        m = self.model_tasks[task]
        ok = m.state is TaskState.PENDING and self.member(m.consumer, self._publisher(task))
        if self.attempt(ok, lambda: self.c(self._publisher(task), "sol").accept(task)):
            m.state = TaskState.ACCEPTED
            self.count(self._publisher(task), Kind.ACCEPTED)

    @precondition(lambda self: self.model_tasks)
    @rule(data=st.data())
    def finish(self, data):
        task = self.pick(data, self.tasks_in(TaskState.ACCEPTED), sorted(self.model_tasks))
        m = self.model_tasks[task]
        ok = m.state is TaskState.ACCEPTED and not m.overdue and self.member(m.consumer, self._publisher(task))
        if self.attempt(ok, lambda: self.c(self._publisher(task), "sol").finish(task, content_hash(str(task)), "u")):
            m.state = TaskState.FINISHED
            m.finishes += 1
            self.model_tokens[m.token].burned += 1
            self.count(self._publisher(task), Kind.SOLVED)
            self.count(m.consumer, Kind.CONSUMED)

    @precondition(lambda self: self.model_tasks)
    @rule(data=st.data())
    def deliver(self, data):
        """Accept and finish a pending task in one call."""
        task = self.pick(data, self.tasks_in(TaskState.PENDING), sorted(self.model_tasks))
        m = self.model_tasks[task]
        pub = self._publisher(task)
        ok = m.state is TaskState.PENDING and self.member(m.consumer, pub)
        if self.attempt(ok, lambda: self.c(pub, "sol").deliver(task, content_hash(str(task)), "u")):
            m.state = TaskState.FINISHED
            m.finishes += 1
            self.model_tokens[m.token].burned += 1
            self.count(pub, Kind.ACCEPTED)
            self.count(pub, Kind.SOLVED)
            self.count(m.consumer, Kind.CONSUMED)

    def _returned(self, task: int, state: TaskState, org: str, kind: Kind) -> None:
        m = self.model_tasks[task]
        m.state = state
        self.holdings[(m.consumer, m.token)] += 1
        self.count(org, kind)

    @precondition(lambda self: self.model_tasks)
    @rule(data=st.data(), how=st.sampled_from(["cancel", "expire", "reject"]))
    def give_back(self, data, how):
        """cancel (consumer, Pending), expire (consumer, Accepted and overdue) or reject
        (solver, Pending or Accepted): the consumer gets the token back."""
        open_ = self.tasks_in(TaskState.PENDING, TaskState.ACCEPTED)
        valid = {"cancel": [i for i in open_ if self.model_tasks[i].state is TaskState.PENDING
                            or not self.member(self.model_tasks[i].consumer)],  # anyone, once the consumer is expelled
                 "expire": [i for i in self.tasks_in(TaskState.ACCEPTED) if self.model_tasks[i].overdue
                            and self.member(self.model_tasks[i].consumer)],
                 "reject": [i for i in open_ if self.member(self._publisher(i))]}[how]
        task = self.pick(data, valid, sorted(self.model_tasks))
        m = self.model_tasks[task]
        canceller = m.consumer if self.member(m.consumer) else data.draw(orgs, label="canceller")
        if how == "cancel":
            if self.attempt(task in valid, lambda: self.c(canceller, "con").cancel(task)):
                self._returned(task, TaskState.CANCELLED, m.consumer, Kind.CANCELLED)
        elif how == "expire":
            if self.attempt(task in valid, lambda: self.c(m.consumer, "con").expire(task)):
                self._returned(task, TaskState.EXPIRED, m.consumer, Kind.EXPIRED)
        elif self.attempt(task in valid, lambda: self.c(self._publisher(task), "sol").reject(task, "missing")):
            self._returned(task, TaskState.REJECTED, self._publisher(task), Kind.REJECTED)

    @precondition(lambda self: self.model_tasks)
    @rule(data=st.data(), rating=st.integers(1, 5))
    def rate(self, data, rating):
        task = self.pick(data, self.tasks_in(TaskState.FINISHED), sorted(self.model_tasks))
        m = self.model_tasks[task]
        ok = m.state is TaskState.FINISHED and not m.rated and self.member(m.consumer)
        if self.attempt(ok, lambda: self.c(m.consumer, "con").rate(task, rating)):
            m.rated = True
            self.count(m.consumer, Kind.FEEDBACK_GIVEN)
            self.count(self._publisher(task), Kind.FEEDBACK_RECEIVED)

    @precondition(lambda self: self.model_tasks)
    @rule(data=st.data(), listed=st.booleans())
    def dispute(self, data, listed):
        """Dispute a delivery with another hash than the listed one (or, wrongly, with the listed one)."""
        task = self.pick(data, self.tasks_in(TaskState.FINISHED), sorted(self.model_tasks))
        m = self.model_tasks[task]
        claimed = content_hash(self._publisher(task)) if listed else content_hash(f"other {task}")
        ok = m.state is TaskState.FINISHED and not m.rated and self.member(m.consumer) and not listed
        if self.attempt(ok, lambda: self.c(m.consumer, "con").dispute(task, claimed, "not what was listed")):
            m.rated = True
            self.count(m.consumer, Kind.DISPUTE_RAISED)
            self.count(self._publisher(task), Kind.DISPUTE_RECEIVED)
            event("a delivery disputed")

    # ---- contract callers ----------------------------------------------------------------

    @precondition(lambda self: self.model_tokens)
    @rule(data=st.data(), org=orgs, role=st.sampled_from(["pub", "sol", "con"]))
    def relayed(self, data, org, role):
        """A member account's call relayed by a contract: the contract is the caller (msg.sender),
        and it is no member, so every call fails with NotMember; nothing authorizes by tx.origin."""
        token = data.draw(st.sampled_from(sorted(self.model_tokens)), label="token")
        price = self.model_tokens[token].price
        contract, function, args, value = data.draw(st.sampled_from([
            ("CtiMarket", "buy", [token, 1], price), ("CtiMarket", "mint", [token, 1], 0),
            ("CtiMarket", "withdrawProceeds", [], 0), ("Tasks", "request", [token, b"\x02" * 33], 0),
            ("Feedback", "like", [token], 0), ("Membership", "proposeRemoval", [ORGS.index(org) + 1], 0)]), label="call")
        client = self.c(org, role)
        tx = {**contract_tx(client.c[contract], function, args, value), "to": self.w.relays[contract]}
        with pytest.raises(ContractRevert) as err:
            client.signer.transact(f"relayed {contract}.{function}", tx)
        assert err.value.error == "NotMember", str(err.value)
        assert err.value.error_args["account"].lower() == self.w.relays[contract].lower()  # the relay, not the member
        event("a call relayed by a contract")

    # ---- members and holders -------------------------------------------------------------

    @precondition(lambda self: len(self.active) > 1)
    @rule(proposer=orgs, expelled=orgs, second=orgs)
    def expel(self, proposer, expelled, second):
        """`proposer` proposes removing `expelled`; `second` votes yes. The target has no vote; a
        majority of the other active members removes it (with two members, the proposal alone)."""
        ids = {o: ORGS.index(o) + 1 for o in ORGS}
        ok = self.member(proposer, expelled) and proposer != expelled
        sent = self.attempt(ok, lambda: self.c(proposer, "pub").propose_removal(ids[expelled]))
        if sent is None:
            return
        voters = len(self.active) - 1
        if voters > 1:  # with more than two members, one more yes is needed
            ok = self.member(second) and second not in (proposer, expelled)
            if not self.attempt(ok, lambda: self.c(second, "con").vote(sent.result, True)):
                return
        self.active.discard(expelled)
        event("an organization expelled")

    @precondition(lambda self: any(n > 0 for n in self.holdings.values()))
    @rule(data=st.data(), to=orgs, amount=st.integers(1, 2))
    def transfer(self, data, to, amount):
        """A holder sends tokens to another org's consumer account (ERC-1155 safeTransferFrom)."""
        held = sorted(k for k, n in self.holdings.items() if n > 0)
        org, token = self.pick(data, held, [(o, k) for o in ORGS for k in sorted(self.model_tokens)])
        sender = self.c(org, "con")
        market = sender.c["CtiMarket"]
        ok = self.holdings[(org, token)] >= amount
        call = lambda: sender._send("CtiMarket", "safeTransferFrom", sender.address,  # noqa: E731
                                    address_for(f"{to}.con"), token, amount, b"")
        if self.attempt(ok, call):
            self.holdings[(org, token)] -= amount
            self.holdings[(to, token)] += amount
            event("tokens transferred")
        assert market.functions.balanceOf(address_for(f"{to}.con"), token).call() == self.holdings[(to, token)]

    @precondition(lambda self: any(m.state is TaskState.ACCEPTED for m in self.model_tasks.values()))
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
            *held, stock, in_tasks = market.functions.balanceOfBatch(holders, [token] * len(holders)).call()
            supply = market.functions.totalSupply(token).call()
            escrowed = sum(1 for m in self.model_tasks.values()  # burned at request, minted back if unused
                           if m.token == token and m.state in (TaskState.PENDING, TaskState.ACCEPTED))
            assert in_tasks == 0
            assert supply == sum(held) + stock == t.minted - t.burned - escrowed
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


# 120 sequences of up to 12 steps, the same every run (derandomized: a failure in CI replays here;
# hypothesis prints the failing sequence and a reproduce blob). 200 took 560 s in CI once the
# buyAndRequest and deliver rules came (252 s before), more than CI's time budget allows.
CtiMachine.TestCase.settings = settings(max_examples=120, stateful_step_count=12, deadline=None,
                                        suppress_health_check=list(HealthCheck), derandomize=True,
                                        print_blob=True, database=None)
TestCtiStateMachine = CtiMachine.TestCase
