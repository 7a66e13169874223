"""The whole CTI loop across several organizations, on the in-process py-evm chain."""

from __future__ import annotations

import pytest

from testbed.cti import ContractRevert, CtiClient, Deployment, Role, TaskState, check_deployed, deploy_with
from testbed.cti.deploy import founding_roles
from testbed.errors import ChainError, StateError
from tests.unit.helpers_cti import TIMEOUT, address_for, build_world, content_hash, key_for, new_chain

FOUR = ("acme", "bravo", "cyber", "delta")
PRICE = 10**15


@pytest.fixture(scope="module")
def four():
    """Four founding orgs, each with one all-roles account (the default role assignment)."""
    chain = new_chain()
    labels = [f"{o}.all" for o in FOUR] + ["echo.all", "operator"]
    chain.fund([address_for(label) for label in labels])
    dep = deploy_with(chain.w3, chain.w3.eth.chain_id, key_for("operator"),
                      {o: [address_for(f"{o}.all")] for o in FOUR})
    return chain, dep, chain.tester.take_snapshot()


def clients(chain, dep, *labels):
    return [CtiClient(chain.w3, dep, key_for(label)) for label in labels]


def test_deployment_record_round_trips_and_checks(four, tmp_path):
    chain, dep, _ = four
    path = dep.save(tmp_path / "state" / "deployment.json")
    loaded = Deployment.load(path)
    assert loaded == dep
    assert set(dep.contracts) == {"Membership", "Activity", "CtiMarket", "Tasks", "Feedback"}
    assert dep.compiler_version.startswith("0.8.28")
    assert len({r.address for r in dep.contracts.values()}) == 5
    check_deployed(chain.w3, dep)
    with pytest.raises(StateError, match="no CTI deployment record"):
        Deployment.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"chain_id": 1}')
    with pytest.raises(StateError, match="unreadable"):
        Deployment.load(tmp_path / "bad.json")
    other = new_chain()
    with pytest.raises(StateError):
        check_deployed(other.w3, dep.model_copy(update={"chain_id": other.w3.eth.chain_id}))


def test_deploy_refuses_a_wrong_chain_id():
    chain = new_chain()
    with pytest.raises(ChainError, match="chain id"):
        deploy_with(chain.w3, 12345, key_for("operator"), {"a": [address_for("a")]})


def test_deploy_refuses_a_task_timeout_the_contract_cannot_hold_before_sending_anything():
    chain = new_chain()
    for bad in (0, 2**32):
        with pytest.raises(ChainError, match="task_timeout") as err:
            deploy_with(chain.w3, chain.w3.eth.chain_id, key_for("operator"), {"a": [address_for("a")]},
                        task_timeout=bad)
        assert "1..4294967295" in str(err.value)
    assert chain.w3.eth.get_transaction_count(address_for("operator")) == 0  # nothing was deployed


def test_default_founding_roles_are_all_roles_with_overrides():
    seeded = founding_roles({"a": [address_for("a0"), address_for("a1")]}, {address_for("a1"): 4})
    assert [x.roles for x in seeded["a"]] == [int(Role.ALL), int(Role.CONSUMER)]
    with pytest.raises(ChainError):
        founding_roles({"a": []})


def test_full_loop_across_four_orgs(four):
    chain, dep, snap = four
    chain.tester.revert_to_snapshot(snap)
    a, b, c, d = clients(chain, dep, *(f"{o}.all" for o in FOUR))
    start = {x.address: chain.w3.eth.get_balance(x.address) for x in (a, b, c, d)}
    fees = {x.address: 0 for x in (a, b, c, d)}

    def paid(sent, who):
        fees[who.address] += sent.fee_wei
        return sent

    # every org publishes one CTI; each other org buys one token of it
    tokens = {}
    for i, pub in enumerate((a, b, c, d)):
        sent = paid(pub.publish(f"uuid-{i}", f"CTI of {i}", content_hash(f"c{i}"), PRICE * (i + 1), 5), pub)
        tokens[pub.address] = sent.result
    assert sorted(tokens.values()) == [1, 2, 3, 4]
    for pub in (a, b, c, d):
        for buyer in (a, b, c, d):
            if buyer is pub:
                continue
            paid(buyer.buy(tokens[pub.address], value=pub.listing(tokens[pub.address]).price + 7), buyer)  # change
    for pub in (a, b, c, d):
        tok = tokens[pub.address]
        assert pub.inventory(tok) == 2
        assert pub.proceeds() == 3 * pub.listing(tok).price

    # each buyer requests, the publisher's solver accepts and finishes, the buyer rates and likes
    for pub in (a, b, c, d):
        tok = tokens[pub.address]
        for buyer in (a, b, c, d):
            if buyer is pub:
                continue
            task = paid(buyer.request(tok, b"\x02" + bytes(32)), buyer).result
            # the token is burned into escrow: in no balance and out of the supply until the task closes
            assert buyer.balance(tok) == 0 and pub.balance(tok, dep.address("Tasks")) == 0
            assert pub._call("CtiMarket", "totalSupply", tok) == pub.inventory(tok) + sum(x.balance(tok) for x in (a, b, c, d))
            paid(pub.accept(task), pub)
            paid(pub.finish(task, content_hash(f"result {task}"), f"https://{task}.example/x"), pub)
            t = buyer.task(task)
            assert t.state is TaskState.FINISHED and t.solver == pub.address and t.result_uri.endswith("/x")
            paid(buyer.rate(task, 1 + task % 5), buyer)
            paid(buyer.like(tok), buyer)
        assert pub.balance(tok, dep.address("Tasks")) == 0  # all consumed
        assert pub.likes(tok) == 3
        assert pub.rating(tok)[1] == 3

    # pull payments
    for pub in (a, b, c, d):
        owed = pub.proceeds()
        paid(pub.withdraw_proceeds(), pub)
        assert pub.proceeds() == 0 and owed > 0
    assert chain.w3.eth.get_balance(dep.address("CtiMarket")) == 0
    for x in (a, b, c, d):  # each paid 3 prices (change refunded) and earned 3 x its own price
        bought = sum(y.listing(tokens[y.address]).price for y in (a, b, c, d) if y is not x)
        earned = 3 * x.listing(tokens[x.address]).price
        assert chain.w3.eth.get_balance(x.address) == start[x.address] - fees[x.address] - bought + earned

    # per-org activity: each org published 1, sold 3, bought 3, requested 3, solved 3, ...
    for x in (a, b, c, d):
        act = x.activity()
        assert act["published"] == 1 and act["minted"] == 5
        assert act["sold"] == act["bought"] == act["requested"] == 3
        assert act["accepted"] == act["solved"] == act["consumed"] == 3
        assert act["feedback_given"] == act["feedback_received"] == 3
        assert act["like_given"] == act["like_received"] == 3
        assert act["cancelled"] == act["expired"] == act["rejected"] == 0


def test_cancel_reject_and_expire_return_the_token(four):
    chain, dep, snap = four
    chain.tester.revert_to_snapshot(snap)
    a, b = clients(chain, dep, "acme.all", "bravo.all")
    tok = a.publish("uuid", "t", content_hash("x"), PRICE, 10).result
    b.buy(tok, 3)
    t1 = b.request(tok, b"k").result
    b.cancel(t1)
    assert b.task(t1).state is TaskState.CANCELLED and b.balance(tok) == 3
    t2 = b.request(tok, b"k").result
    a.reject(t2, "MISP event not found")
    assert b.task(t2).state is TaskState.REJECTED and b.task(t2).reason == "MISP event not found"
    t3 = b.request(tok, b"k").result
    a.accept(t3)
    with pytest.raises(ContractRevert) as err:
        b.expire(t3)
    assert err.value.error == "DeadlineNotPassed"
    chain.advance(TIMEOUT + 1)
    with pytest.raises(ContractRevert) as err:
        a.finish(t3, content_hash("late"), "u")
    assert err.value.error == "DeadlinePassed"
    b.expire(t3)
    assert b.task(t3).state is TaskState.EXPIRED and b.balance(tok) == 3
    t4 = b.request(tok, b"k").result
    a.accept(t4)
    a.reject(t4, "abandoned: feed offline")  # an accepted task can be abandoned by its solver
    assert b.balance(tok) == 3
    with pytest.raises(ContractRevert) as err:
        b.rate(t4, 5)
    assert err.value.error == "NotFinished" and "not finished" in str(err.value)
    act_a, act_b = a.activity(), b.activity()
    assert (act_b["requested"], act_b["cancelled"], act_b["expired"], act_b["consumed"]) == (4, 1, 1, 0)
    assert (act_a["rejected"], act_a["accepted"], act_a["solved"]) == (2, 2, 0)
    # the batch path of the Solver (one eth_call per task in a JSON-RPC batch) decodes the same Task
    for task_id in (t1, t2, t3, t4):
        raw = bytes(chain.w3.eth.call(a.task_call(task_id)))
        assert a.decode_task(task_id, raw) == a.task(task_id, details=False)
        assert a.task_details(a.decode_task(task_id, raw)) == a.task(task_id)


def _facts(chain, dep, a, b, tok, task_id, since):
    """What the chain holds of one exchange: the task, the Activity steps from block `since`, the
    counters, proceeds and supply (compared between the four-call and the two-call paths)."""
    task = b.task(task_id)
    steps = b.c["Activity"].events.Step().get_logs(from_block=since)
    return {"task": (task.consumer, task.consumer_org, task.publisher_org, task.solver, task.state, task.result_uri),
            "steps": sorted((e.args.kind, e.args.org, e.args.tokenId, e.args.actor, e.args.amount) for e in steps),
            "counts": (a.activity(), b.activity()), "proceeds": a.proceeds(1), "supply": b.c["CtiMarket"].functions.totalSupply(tok).call(),
            "inventory": b.inventory(tok), "balance": b.balance(tok)}


def test_buy_and_request_then_deliver_record_what_four_calls_record(four):
    """The two-call exchange (buyAndRequest + deliver) leaves the same facts as buy + request +
    accept + finish: the task (consumer, orgs, solver, state, result), every Activity step with its
    org, token and actor, the counters, the publisher's proceeds and the token supply."""
    chain, dep, snap = four
    facts = []
    for path in ("four calls", "two calls"):
        chain.tester.revert_to_snapshot(snap)
        a, b = clients(chain, dep, "acme.all", "bravo.all")
        tok = a.publish("uuid", "t", content_hash("x"), PRICE, 10, [a.address]).result
        since = chain.w3.eth.block_number + 1
        if path == "four calls":
            b.buy(tok, 1)
            task_id = b.request(tok, b"k").result
            a.accept(task_id)
            a.finish(task_id, content_hash("r"), "https://acme.example/r")
        else:
            before = chain.w3.eth.get_balance(b.address)
            sent = b.buy_and_request(tok, b"k", value=3 * PRICE)  # change refunded to the buyer
            task_id = sent.result
            assert chain.w3.eth.get_balance(b.address) == before - PRICE - sent.fee_wei
            assert b.task(task_id).encryption_key == b"k"
            a.deliver(task_id, content_hash("r"), "https://acme.example/r")
        assert b.task(task_id).result_hash == content_hash("r")
        facts.append(_facts(chain, dep, a, b, tok, task_id, since))
    assert facts[0] == facts[1]
    assert facts[1]["task"][4] is TaskState.FINISHED and facts[1]["supply"] == 9 and facts[1]["balance"] == 0


def test_a_bought_and_requested_token_goes_back_to_the_consumer_and_deliver_takes_pending_tasks_only(four):
    chain, dep, snap = four
    chain.tester.revert_to_snapshot(snap)
    a, b = clients(chain, dep, "acme.all", "bravo.all")
    tok = a.publish("uuid", "t", content_hash("x"), PRICE, 2, [a.address]).result
    for bad, error in ((lambda: b.buy_and_request(tok, b"k", value=PRICE - 1), "Underpaid"),
                       (lambda: b.buy_and_request(tok, b""), "encryption public key must be 1..1024 bytes"),
                       (lambda: a.buy_and_request(tok, b"k"), "OwnListing"),
                       (lambda: b.buy_and_request(99, b"k", value=PRICE), "NoSuchListing")):
        with pytest.raises(ContractRevert) as err:
            bad()
        assert error in (err.value.error, str(err.value).partition(": ")[2])
    t1 = b.buy_and_request(tok, b"k").result
    b.cancel(t1)  # closed unused: the token is the consumer's, like a bought one
    assert b.task(t1).state is TaskState.CANCELLED and b.balance(tok) == 1 and b.inventory(tok) == 1
    t2 = b.buy_and_request(tok, b"k").result
    with pytest.raises(ContractRevert) as err:
        b.buy_and_request(tok, b"k")
    assert err.value.error == "SoldOut"
    with pytest.raises(ContractRevert) as err:
        a.deliver(t2, bytes(32), "u")
    assert err.value.error == "EmptyResult"
    a.accept(t2)
    with pytest.raises(ContractRevert) as err:  # accepted: only `finish` closes it now
        a.deliver(t2, content_hash("r"), "u")
    assert err.value.error == "BadState"
    a.finish(t2, content_hash("r"), "u")
    t3 = b.request(tok, b"k").result
    a.deliver(t3, content_hash("r3"), "u3")
    for late in (lambda: a.deliver(t3, content_hash("r3"), "u3"), lambda: a.accept(t3), lambda: b.cancel(t3)):
        with pytest.raises(ContractRevert) as err:
            late()
        assert err.value.error == "BadState"
    assert b.activity()["consumed"] == 2 and a.activity()["solved"] == 2 and a.activity()["accepted"] == 2


def test_underpayment_has_a_reason_and_change_is_refunded(four):
    chain, dep, snap = four
    chain.tester.revert_to_snapshot(snap)
    a, b = clients(chain, dep, "acme.all", "bravo.all")
    tok = a.publish("uuid", "t", content_hash("x"), PRICE, 10).result
    with pytest.raises(ContractRevert) as err:
        b.buy(tok, 2, value=2 * PRICE - 1)
    assert err.value.error == "Underpaid"
    assert err.value.error_args == {"required": 2 * PRICE, "sent": 2 * PRICE - 1}
    assert "payment too low" in str(err.value)
    before = chain.w3.eth.get_balance(b.address)
    sent = b.buy(tok, 2, value=5 * PRICE)
    assert chain.w3.eth.get_balance(b.address) == before - 2 * PRICE - sent.fee_wei
    assert chain.w3.eth.get_balance(dep.address("CtiMarket")) == 2 * PRICE
    with pytest.raises(ContractRevert) as err:
        b.buy(tok, 9)
    assert err.value.error == "SoldOut" and err.value.error_args["available"] == 8


def test_membership_admits_and_removes_by_majority(four):
    chain, dep, snap = four
    chain.tester.revert_to_snapshot(snap)
    a, b, c, d, e = clients(chain, dep, "acme.all", "bravo.all", "cyber.all", "delta.all", "echo.all")
    prop = a.propose_admission("echo", [e.address], [int(Role.ALL)]).result
    b.vote(prop, True)
    assert e.org_of() == (0, 0)  # 2 of 4 is not a majority
    with pytest.raises(ContractRevert) as err:
        b.vote(prop, True)
    assert err.value.error == "AlreadyVoted"
    c.vote(prop, True)  # 3 of 4
    assert e.org_of() == (5, Role.ALL)
    assert [o.name for o in a.orgs()] == ["acme", "bravo", "cyber", "delta", "echo"]
    # removal of delta: needs 3 of 5
    tok = d.publish("uuid", "t", content_hash("x"), PRICE, 3).result
    b.buy(tok)
    task = b.request(tok, b"k").result
    prop = a.propose_removal(4).result
    b.vote(prop, False)
    c.vote(prop, True)
    assert d.org_of()[0] == 4
    e.vote(prop, True)
    assert d.org_of() == (0, 0)
    with pytest.raises(ContractRevert) as err:
        d.publish("uuid", "t", content_hash("x"), PRICE, 3)
    assert err.value.error == "NotMember"
    assert a.proposal(prop)["status"] == 2  # Passed
    with pytest.raises(ContractRevert) as err:
        d.accept(task)  # its solver can no longer work; the consumer cancels and keeps the token
    assert err.value.error == "NotMember"
    b.cancel(task)
    assert b.balance(tok) == 1
    d.withdraw_proceeds()
    assert d.proceeds(4) == 0
    # the target of a removal has no vote on it; a proposal that can no longer pass is closed as
    # rejected: 2 no of the 3 voters (4 members less the target)
    prop = b.propose_removal(1).result
    with pytest.raises(ContractRevert) as err:
        a.vote(prop, False)
    assert err.value.error == "TargetCannotVote"
    c.vote(prop, False)
    e.vote(prop, False)
    assert a.proposal(prop)["status"] == 3
    with pytest.raises(ContractRevert) as err:
        c.vote(prop, True)
    assert err.value.error in ("ProposalNotOpen", "AlreadyVoted")
    # the removed org's listing no longer sells, but it keeps what it earned
    with pytest.raises(ContractRevert) as err:
        b.buy(tok)
    assert err.value.error == "PublisherRemoved"


def test_single_org_consortium_admits_alone_and_two_members_can_part():
    w = build_world(orgs=("solo",))
    solo = w.client("solo.pub")
    newcomer = address_for("newcomer")
    solo.propose_admission("second", [newcomer], [int(Role.CONSUMER)])
    assert solo.org_of(newcomer) == (2, Role.CONSUMER)
    with pytest.raises(ContractRevert) as err:
        solo.propose_admission("dup", [newcomer], [1])
    assert err.value.error == "AccountTaken"
    with pytest.raises(ContractRevert) as err:
        solo.propose_removal(1)
    assert err.value.error == "BadProposal"  # no organization proposes its own removal
    # two members: the target has no vote, so the proposer's yes is a majority of the one voter
    prop = solo.propose_removal(2).result
    assert solo.proposal(prop)["status"] == 2 and solo.org_of(newcomer) == (0, 0)
    with pytest.raises(ContractRevert) as err:
        solo.propose_removal(1)
    assert err.value.error in ("LastMember", "BadProposal")


def test_an_expelled_consumers_open_tasks_are_refunded_not_served(four):
    """Issue 14: a removed consumer org's tasks were still accepted and delivered, and its escrowed
    tokens stuck. Now: no accept or finish for them; anyone cancels, the token goes back."""
    chain, dep, snap = four
    chain.tester.revert_to_snapshot(snap)
    a, b, c, d = clients(chain, dep, "acme.all", "bravo.all", "cyber.all", "delta.all")
    tok = a.publish("uuid", "t", content_hash("x"), PRICE, 5).result
    a.set_solver(tok, a.address)
    b.buy(tok, 2, value=2 * PRICE)
    pending = b.request(tok, b"k").result
    accepted = b.request(tok, b"k").result
    a.accept(accepted)
    prop = a.propose_removal(2).result  # bravo, the consumer
    c.vote(prop, True)
    assert b.org_of() == (0, 0)
    for call in (lambda: a.accept(pending), lambda: a.finish(accepted, content_hash("r"), "http://x")):
        with pytest.raises(ContractRevert) as err:
            call()
        assert err.value.error == "ConsumerNotMember"
    d.cancel(pending)  # anyone may close them now
    b.cancel(accepted)  # the consumer too, though no longer a member
    assert [a.task(t).state for t in (pending, accepted)] == [TaskState.CANCELLED] * 2
    assert a.balance(tok, b.address) == 2


def test_an_admission_whose_account_was_taken_meanwhile_closes_rejected(four):
    chain, dep, snap = four
    chain.tester.revert_to_snapshot(snap)
    a, b, c = clients(chain, dep, "acme.all", "bravo.all", "cyber.all")
    shared = address_for("newcomer")
    first = a.propose_admission("first", [shared], [int(Role.CONSUMER)]).result
    second = b.propose_admission("second", [shared], [int(Role.CONSUMER)]).result
    c.vote(first, True)
    b.vote(first, True)  # 3 of 4: "first" admitted with the shared account
    assert a.org_of(shared)[0] == 5
    a.vote(second, True)
    c.vote(second, True)  # a majority, but the account is taken: closed as rejected, not open forever
    assert a.proposal(second)["status"] == 3
    assert a.org_of(shared)[0] == 5 and [o.name for o in a.orgs()][-1] == "first"


def test_activity_counters_saturate_instead_of_blocking_publishing(four):
    chain, dep, snap = four
    chain.tester.revert_to_snapshot(snap)
    (a,) = clients(chain, dep, "acme.all")
    top = 2**64 - 1
    a.publish("uuid-1", "t", content_hash("x"), PRICE, top)
    a.publish("uuid-2", "t", content_hash("y"), PRICE, top)  # the org's Minted counter would pass 2^64
    counts = a.activity(1)
    assert counts["minted"] == top and counts["published"] == 2
