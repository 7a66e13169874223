"""The Solver and the consumer side on the in-process py-evm chain (eth-tester)."""

from __future__ import annotations

import dataclasses

import random
import time
from contextlib import nullcontext

import pytest
import requests
from eth_account import Account

from solver import journal as J
from solver.consumer import Consumer
from solver.crypto import decrypt, delivery_public_key, sign_fetch
from solver.daemon import Solver, SolverConfig
from solver.delivery import SIGNATURE_HEADER, fetch, fetch_headers
from solver.errors import DeliveryError
from solver.intel import DirectoryStore
from testbed.cti.misp import attribute_rows, parse_event
from solver.records import load_tasks
from solver.seed import publish_events, sample_event
from testbed.cti import TaskState
from testbed.cti import CtiClient, Role, deploy_with
from tests.unit.helpers_cti import TIMEOUT, JsonRpcBatches, address_for, key_for, new_chain, world, world_once  # noqa: F401 (fixtures)

GAS = 1_000_000


class Rig:
    """acme publishes (acme.pub) and solves (acme.sol); bravo consumes (bravo.con)."""

    def __init__(self, world, tmp_path) -> None:
        self.world = world
        self.tmp = tmp_path
        self.store = DirectoryStore(tmp_path / "intel")
        self.pub = world.client("acme.pub")
        rng = random.Random(7)
        self.events = [sample_event(rng, "acme", i) for i in range(3)]
        self.listings = publish_events(self.pub, self.store, self.events, solvers=[self.pub_solver_address()],
                                       supply=50)
        self.solver = self.make_solver("acme.sol", "solver")
        self.consumer = Consumer(world.w3, world.deployment, key_for("bravo.con"), tmp_path / "consumer",
                                 gas_limit=GAS)

    def pub_solver_address(self) -> str:
        return Account.from_key(key_for("acme.sol")).address

    def make_solver(self, label: str, name: str, **changes) -> Solver:
        config = SolverConfig(workdir=self.tmp / name, intel=self.store, org_name="acme", depth=0, gas_limit=GAS,
                              **changes)
        solver = Solver(self.world.w3, self.world.deployment, key_for(label), config)
        solver.start_endpoint()
        solver.connect()
        solver.reconcile()
        return solver

    def settle(self, *solvers: Solver, rounds: int = 6) -> None:
        for _ in range(rounds):
            for s in solvers or (self.solver,):
                s.tick()


@pytest.fixture(params=["one-by-one", "batches"])
def rig(world, tmp_path, request):  # noqa: F811
    """The Solver against a node without JSON-RPC batches (py-evm) and with them (like geth)."""
    with JsonRpcBatches(world.w3) if request.param == "batches" else nullcontext() as batches:
        r = Rig(world, tmp_path)
        r.batches = batches
        yield r
        r.solver.close()
        r.consumer.close()


def test_full_loop_request_accept_finish_fetch_decrypt_store_rate(rig):
    token = rig.listings[0].token_id
    task_id = rig.consumer.request(token)
    single_reads = []
    read_task = rig.solver.cti.task
    rig.solver.cti.task = lambda t, **kw: single_reads.append(t) or read_task(t, **kw)
    log_reads = []
    read_details = rig.solver.cti.task_details
    rig.solver.cti.task_details = lambda t, *a: log_reads.append(t.task_id) or read_details(t, *a)
    rig.settle()
    assert log_reads == []  # the consumer's key came with the watcher's logs, no eth_getLogs per task
    if rig.batches:  # every read of the task's state went into a tick's batch, none one by one
        assert single_reads == []
    else:
        assert single_reads
    task = rig.consumer.cti.task(task_id)
    assert task.state == TaskState.FINISHED
    assert task.solver == rig.pub_solver_address()
    assert task.result_uri == f"{rig.solver.endpoint}/v1/tasks/{task_id}"
    assert rig.solver.journal.get(task_id).step == J.FINISHED
    assert rig.consumer.poll() == 0
    assert rig.consumer.status() == {"consumed": 1}
    stored = list((rig.tmp / "consumer" / "received").glob(f"{task_id}-*.json"))
    assert len(stored) == 1 and rig.listings[0].misp_uuid in stored[0].name
    # what the consumer received is the published event, attribute by attribute (objects' too)
    published = parse_event(rig.store.load(rig.listings[0].misp_uuid))
    received = parse_event(stored[0].read_bytes())
    assert published.objects and attribute_rows(received) == attribute_rows(published)
    assert rig.consumer.cti.rating(token) == (5, 1)
    merged = load_tasks([rig.tmp / "solver" / "tasks.jsonl", rig.tmp / "consumer" / "tasks.jsonl"])
    row = merged[task_id]
    assert row["solver"]["outcome"] == "finished" and row["consumer"]["outcome"] == "consumed"
    assert row["request_to_finished"] >= 0 and row["request_to_consumed"] > 0
    # exactly one transaction, a deliver, was sent for the task, nothing else; accepted and finished in its block
    assert [t["kind"] for t in rig.solver.journal.txs(task_id)] == ["deliver"]
    journaled = rig.solver.journal.get(task_id)
    assert journaled.accepted_block == journaled.finished_block is not None
    if rig.batches:  # it was pre-checked and sent in the tick's batches
        assert sum(b.count("eth_sendRawTransaction") for b in rig.batches.batches) == 1
        assert sum(b.count("eth_call") for b in rig.batches.batches) >= 1


def test_a_solver_restarted_after_the_request_reads_the_key_from_the_chain(rig):
    """The key cached from the watcher is gone after a restart once the cursor is past the request:
    the Solver reads it from the request's block (one eth_getLogs) and delivers as usual."""
    task_id = rig.consumer.request(rig.listings[0].token_id)
    poll = rig.solver.watcher.poll  # the events as a restarted Solver has them: the key not among them
    rig.solver.watcher.poll = lambda *a: [dataclasses.replace(e, key=None) for e in poll(*a)]
    log_reads = []
    read_details = rig.solver.cti.task_details
    rig.solver.cti.task_details = lambda t, *a: log_reads.append(t.task_id) or read_details(t, *a)
    rig.settle()
    assert rig.consumer.cti.task(task_id).state == TaskState.FINISHED
    assert log_reads == [task_id]
    assert rig.consumer.poll() == 0 and rig.consumer.status() == {"consumed": 1}


def test_a_finish_refused_for_its_deadline_becomes_a_reject(rig):
    """A claim-first Solver accepted, then the deadline passes before the finish: its pre-check (alone,
    or in the tick's eth_call batch) is refused with DeadlinePassed and the Solver rejects the task instead."""
    tester = rig.world.chain.tester
    rig.solver.close()
    rig.solver = rig.make_solver("acme.sol", "solver-claim-first", claim_first=True)
    task_id = rig.consumer.request(rig.listings[0].token_id)
    tester.disable_auto_mine_transactions()
    try:
        rig.solver.tick()  # accept sent
        tester.mine_blocks(1)
        rig.world.chain.advance(TIMEOUT + 1)
        for _ in range(3):  # accepted -> encrypted -> finish refused -> reject sent -> rejected
            rig.solver.tick()
            tester.mine_blocks(1)
    finally:
        tester.enable_auto_mine_transactions()
    task = rig.consumer.cti.task(task_id)
    assert task.state == TaskState.REJECTED and task.reason == "deadline passed before delivery"
    assert rig.solver.journal.get(task_id).step == J.REJECTED
    assert [t["kind"] for t in rig.solver.journal.txs(task_id)] == ["accept", "reject"]


def test_a_send_batch_that_fails_is_re_sent_from_the_journal(world, tmp_path):  # noqa: F811
    """The node drops the tick's send batch (e.g. it restarts): the transactions are journaled, so
    the next ticks re-send the same bytes; nothing is signed twice."""
    class DroppingSends(JsonRpcBatches):
        dropped = 0

        def answer(self, requests):
            if any(method == "eth_sendRawTransaction" for method, _ in requests) and not self.dropped:
                self.dropped += 1
                raise ConnectionError("node restarting")
            return super().answer(requests)

    with DroppingSends(world.w3) as batches:
        rig = Rig(world, tmp_path)
        try:
            nonce = world.w3.eth.get_transaction_count(rig.pub_solver_address())
            tasks = [rig.consumer.request(rig.listings[0].token_id) for _ in range(2)]
            rig.settle(rounds=8)
            assert batches.dropped == 1
            assert [rig.consumer.cti.task(t).state for t in tasks] == [TaskState.FINISHED] * 2
            assert [[t["kind"] for t in rig.solver.journal.txs(task)] for task in tasks] == [["deliver"]] * 2
            assert world.w3.eth.get_transaction_count(rig.pub_solver_address()) == nonce + 2
        finally:
            rig.solver.close()
            rig.consumer.close()


def test_wrong_account_cannot_fetch_or_decrypt(rig):
    task_id = rig.consumer.request(rig.listings[1].token_id)
    rig.settle()
    task = rig.consumer.cti.task(task_id)
    chain_id, tasks = rig.world.deployment.chain_id, rig.world.deployment.address("Tasks")
    url = task.result_uri
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={SIGNATURE_HEADER: "0xdead"}, timeout=5).status_code == 401
    bad = fetch_headers(key_for("bravo.con"), chain_id, tasks, task_id)
    assert requests.get(url, headers={**bad, SIGNATURE_HEADER: "0xdead"}, timeout=5).status_code == 401
    other = key_for("cyber.con")
    with pytest.raises(DeliveryError) as info:
        fetch(url, task_id, other, chain_id, tasks)
    assert info.value.status == 403
    # a signature over another task id does not open this one either
    stamp, nonce = int(time.time()), "ab" * 16
    other_task = {**fetch_headers(key_for("bravo.con"), chain_id, tasks, task_id, stamp, nonce),
                  SIGNATURE_HEADER: sign_fetch(key_for("bravo.con"), chain_id, tasks, task_id + 1, stamp, nonce)}
    assert requests.get(url, headers=other_task, timeout=5).status_code == 403
    ciphertext = fetch(url, task_id, key_for("bravo.con"), chain_id, tasks, expected_hash=task.result_hash)
    with pytest.raises(DeliveryError, match="cannot decrypt"):
        decrypt(other, ciphertext)
    assert rig.listings[1].misp_uuid.encode() in decrypt(key_for("bravo.con"), ciphertext)


def test_hash_mismatch_is_detected(rig):
    task_id = rig.consumer.request(rig.listings[0].token_id)
    rig.settle()
    # the ciphertext served no longer matches what `deliver` recorded on-chain
    rig.solver.journal.encrypted(task_id, b"tampered")
    with pytest.raises(DeliveryError, match="not the on-chain result hash"):
        rig.consumer.fetch(task_id)
    for _ in range(10):
        rig.consumer.poll()
    assert rig.consumer.status() == {"failed": 1}
    assert rig.consumer.cti.rating(rig.listings[0].token_id) == (1, 1)


def test_missing_or_invalid_misp_event_is_rejected_with_a_reason(rig):
    missing, broken = rig.listings[0], rig.listings[1]
    rig.store.path(missing.misp_uuid).unlink()
    rig.store.path(broken.misp_uuid).write_text('{"Event": {"uuid": "%s"}}' % broken.misp_uuid)
    t1 = rig.consumer.request(missing.token_id)
    t2 = rig.consumer.request(broken.token_id)
    rig.settle()
    for task_id, words in ((t1, "no MISP event"), (t2, "info field")):
        task = rig.consumer.cti.task(task_id)
        assert task.state == TaskState.REJECTED
        assert words in task.reason
        assert rig.solver.journal.get(task_id).step == J.REJECTED
    # the consumer got its tokens back and its loop closes the requests
    assert rig.consumer.cti.balance(missing.token_id) == 1
    rig.consumer.poll()
    assert rig.consumer.status() == {"closed": 2}


def test_bad_encryption_key_is_rejected(rig):
    token = rig.listings[2].token_id
    cti = rig.consumer.cti
    cti.buy(token)
    task_id = cti.request(token, b"\x01" * 40).result
    rig.settle()
    task = cti.task(task_id)
    assert task.state == TaskState.REJECTED and "encryption key" in task.reason


@pytest.mark.parametrize("claim_first", [False, True], ids=["deliver", "claim-first"])
@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batches"])
def test_two_solvers_of_one_org_share_work_through_the_race(tmp_path, batched, claim_first):
    """acme runs two Solvers (two solver accounts); every task is finished exactly once, by one of them."""
    chain = new_chain()
    if batched:
        JsonRpcBatches(chain.w3).__enter__()
    labels = ["acme.pub", "acme.s1", "acme.s2", "bravo.con", "operator"]
    chain.fund([address_for(label) for label in labels])
    roles = {address_for("acme.pub"): int(Role.PUBLISHER), address_for("acme.s1"): int(Role.SOLVER),
             address_for("acme.s2"): int(Role.SOLVER), address_for("bravo.con"): int(Role.CONSUMER)}
    dep = deploy_with(chain.w3, chain.w3.eth.chain_id, key_for("operator"),
                      {"acme": [address_for(x) for x in labels[:3]], "bravo": [address_for("bravo.con")]},
                      roles=roles)
    store = DirectoryStore(tmp_path / "intel")
    pub = CtiClient(chain.w3, dep, key_for("acme.pub"), gas_limit=GAS)
    event = sample_event(random.Random(1), "acme", 0)
    token = publish_events(pub, store, [event], solvers=[address_for("acme.s1"), address_for("acme.s2")])[0].token_id
    solvers = []
    for label in ("acme.s1", "acme.s2"):
        s = Solver(chain.w3, dep, key_for(label),
                   SolverConfig(workdir=tmp_path / label, intel=store, depth=0, gas_limit=GAS, claim_first=claim_first))
        s.start_endpoint(); s.connect(); s.reconcile()
        solvers.append(s)
    consumer = Consumer(chain.w3, dep, key_for("bravo.con"), tmp_path / "consumer", gas_limit=GAS)
    consumer.cti.buy(token, 6)
    tasks = [consumer.request(token) for _ in range(6)]
    for _ in range(8):
        for s in (solvers if _ % 2 else solvers[::-1]):
            s.tick()
    steps = [[s.journal.get(t).step for s in solvers] for t in tasks]
    assert all(sorted(pair) == [J.FINISHED, J.LOST] for pair in steps), steps
    assert {consumer.cti.task(t).solver for t in tasks} <= {s.address for s in solvers}
    consumer.wait_all(timeout=30)
    assert consumer.status() == {"consumed": 6}
    for s in solvers:
        s.close()
    consumer.close()


def test_consumer_key_is_derived_and_stable():
    key = key_for("bravo.con")
    assert delivery_public_key(key) == delivery_public_key(key)
    assert delivery_public_key(key) != delivery_public_key(key_for("cyber.con"))
    assert len(delivery_public_key(key)) == 65


def test_a_journal_entry_from_a_replaced_block_follows_the_chain_and_says_so(rig, caplog):
    """A TaskChanged log of a block a reorg replaced can name another token (and consumer) for a
    task id than the canonical chain: the Solver must serve the chain's task and log both values."""
    token, other = rig.listings[0].token_id, rig.listings[1].token_id
    task_id = rig.consumer.request(token)
    rig.solver.journal.ensure(task_id, other, block=None)  # what the replaced block's log said
    rig.solver.journal.update(task_id, consumer=address_for("cyber.con"))
    with caplog.at_level("ERROR", logger="solver"):
        rig.settle()
    row = rig.solver.journal.get(task_id)
    assert (row.token_id, row.consumer) == (token, rig.consumer.address)
    assert row.step == J.FINISHED
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"token {other}" in said and f"token {token}" in said and rig.consumer.address in said
