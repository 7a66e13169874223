"""Crash safety (journal reconciliation) and reorg handling of the Solver, without a network."""

from __future__ import annotations

import random
import socket
from contextlib import nullcontext

import pytest
from eth_account import Account

from solver import journal as J
from solver.consumer import Consumer
from solver.crash import CLAIM_FIRST_POINTS, DELIVER_POINTS
from solver.daemon import Solver, SolverConfig
from solver.intel import DirectoryStore
from solver.journal import Journal
from solver.seed import publish_events, sample_event
from solver.watch import TASK_CHANGED, TaskWatcher, org_topic
from testbed.cti import TaskState
from tests.unit.helpers_cti import JsonRpcBatches, key_for, world, world_once  # noqa: F401 (fixtures)

GAS = 1_000_000


class Crash(BaseException):
    """Stands in for SIGKILL: nothing after the crash point runs."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_solver(world, tmp_path, store, crash_at: str | None = None, claim_first: bool = False) -> Solver:
    """A Solver on the journal in tmp_path; like a real one it keeps its endpoint port across restarts."""
    port_file = tmp_path / "port"
    if not port_file.exists():
        port_file.write_text(str(free_port()))
    solver = Solver(world.w3, world.deployment, key_for("acme.sol"),
                    SolverConfig(workdir=tmp_path / "solver", intel=store, depth=0, gas_limit=GAS,
                                 port=int(port_file.read_text()), claim_first=claim_first))
    if crash_at:
        def crash(point: str, _solver=solver) -> None:
            if point == crash_at:
                raise Crash(point)
        solver._crash = crash
    solver.start_endpoint()
    solver.connect()
    solver.reconcile()
    return solver


def finished_events(world, task_id: int) -> int:
    logs = world.w3.eth.get_logs({"address": world.deployment.address("Tasks"), "fromBlock": 0, "toBlock": "latest",
                                  "topics": [TASK_CHANGED, "0x" + task_id.to_bytes(32, "big").hex()]})
    return sum(1 for e in logs if int(bytes(e["data"]).hex() or "0", 16) == TaskState.FINISHED)


@pytest.fixture(params=["one-by-one", "batches"])
def transport(world, request):  # noqa: F811
    """The Solver against a node without JSON-RPC batches (py-evm) and with them (like geth)."""
    with JsonRpcBatches(world.w3) if request.param == "batches" else nullcontext() as batches:
        yield batches


@pytest.fixture
def setup(world, tmp_path, transport):  # noqa: F811
    store = DirectoryStore(tmp_path / "intel")
    pub = world.client("acme.pub")
    event = sample_event(random.Random(3), "acme", 0)
    token = publish_events(pub, store, [event], solvers=[Account.from_key(key_for("acme.sol")).address])[0].token_id
    consumer = Consumer(world.w3, world.deployment, key_for("bravo.con"), tmp_path / "consumer", gas_limit=GAS)
    yield world, tmp_path, store, token, consumer
    consumer.close()


MODES = {"deliver": (False, ["deliver"]), "claim-first": (True, ["accept", "finish"])}


@pytest.mark.parametrize("mode,point", [("deliver", p) for p in DELIVER_POINTS] +
                         [("claim-first", p) for p in CLAIM_FIRST_POINTS])
def test_crash_at_each_step_then_restart_finishes_exactly_once(setup, mode, point):
    world, tmp_path, store, token, consumer = setup
    claim_first, kinds = MODES[mode]
    solver_address = Account.from_key(key_for("acme.sol")).address
    nonce_before = world.w3.eth.get_transaction_count(solver_address)
    task_id = consumer.request(token)
    first = make_solver(world, tmp_path, store, crash_at=point, claim_first=claim_first)
    with pytest.raises(Crash):
        for _ in range(6):
            first.tick()
    first.close()
    second = make_solver(world, tmp_path, store, claim_first=claim_first)  # a new process on the same journal
    for _ in range(4):
        second.tick()
    row = second.journal.get(task_id)
    assert row.step == J.FINISHED
    assert consumer.cti.task(task_id).state == TaskState.FINISHED
    assert finished_events(world, task_id) == 1
    assert [t["kind"] for t in second.journal.txs(task_id)] == kinds
    # one transaction per kind from the solver account: nothing re-signed with a new nonce
    assert world.w3.eth.get_transaction_count(solver_address) == nonce_before + len(kinds)
    assert row.accepted_block is not None and row.accepted_block <= row.finished_block
    assert consumer.wait_all(timeout=20) == {"consumed": 1}
    second.close()


@pytest.mark.parametrize("mode", MODES)
def test_a_finish_sent_but_not_mined_is_resent_with_the_same_bytes(setup, mode):
    world, tmp_path, store, token, consumer = setup
    claim_first, kinds = MODES[mode]
    task_id = consumer.request(token)
    first = make_solver(world, tmp_path, store, crash_at=f"{kinds[-1]}_sent", claim_first=claim_first)
    world.chain.tester.disable_auto_mine_transactions()
    try:
        with pytest.raises(Crash):
            for _ in range(6):
                first.tick()
                world.chain.tester.mine_blocks(1)
        first.close()
        journaled = Journal(tmp_path / "solver" / "solver.sqlite").get(task_id)
        assert journaled.step == J.FINISH_SENT and journaled.pending_hash
        second = make_solver(world, tmp_path, store)  # reconcile re-sends the journaled bytes
        world.chain.tester.mine_blocks(1)
        second.tick()
    finally:
        world.chain.tester.enable_auto_mine_transactions()
    row = second.journal.get(task_id)
    assert row.step == J.FINISHED
    finish = [t for t in second.journal.txs(task_id) if t["kind"] == kinds[-1]]
    assert len(finish) == 1 and finish[0]["hash"] == journaled.pending_hash and finish[0]["status"] == 1
    assert finished_events(world, task_id) == 1
    second.close()


def test_an_accepted_task_is_not_forgotten_even_without_a_journal(setup):
    """The journal is lost after the accept was mined: the chain says the task is ours; it is finished
    (by a Solver that now delivers in one call: a task it accepted before is finished)."""
    world, tmp_path, store, token, consumer = setup
    task_id = consumer.request(token)
    first = make_solver(world, tmp_path, store, crash_at="accepted", claim_first=True)
    with pytest.raises(Crash):
        for _ in range(3):  # batched: the accept is sent in one tick, seen mined in the next
            first.tick()
    first.close()
    for name in ("solver.sqlite", "solver.sqlite-wal", "solver.sqlite-shm"):
        (tmp_path / "solver" / name).unlink(missing_ok=True)
    second = make_solver(world, tmp_path, store)
    for _ in range(3):
        second.tick()
    assert second.journal.get(task_id).step == J.FINISHED
    assert finished_events(world, task_id) == 1
    second.close()


# ---- reorgs: the watcher against a scripted chain -----------------------------------------------

class FakeEth:
    def __init__(self) -> None:
        self.hashes: list[str] = []
        self.logs: list[dict] = []

    def grow(self, n: int, tag: str = "a") -> None:
        for _ in range(n):
            self.hashes.append(f"0x{tag}{len(self.hashes):063x}")

    def fork_at(self, number: int, tag: str) -> None:
        """Replace every block from `number` on with a different branch of the same length + 1."""
        length = len(self.hashes)
        del self.hashes[number:]
        self.logs = [e for e in self.logs if e["blockNumber"] < number]
        self.grow(length - number + 1, tag)

    def add_task(self, block: int, task_id: int, state: int = 1, org: int = 1) -> None:
        self.logs.append({"blockNumber": block, "blockHash": self.hashes[block], "transactionHash": "0x" + "00" * 32,
                          "topics": [TASK_CHANGED, "0x" + task_id.to_bytes(32, "big").hex(),
                                     "0x" + (1).to_bytes(32, "big").hex(), org_topic(org)],
                          "data": "0x" + state.to_bytes(32, "big").hex()})

    @property
    def block_number(self) -> int:
        return len(self.hashes) - 1

    def get_block(self, number: int) -> dict:
        if number >= len(self.hashes):
            raise LookupError("block not found")
        return {"hash": self.hashes[number], "number": number}

    def get_logs(self, query: dict) -> list[dict]:
        lo, hi = query["fromBlock"], query["toBlock"]
        return [e for e in self.logs if lo <= e["blockNumber"] <= hi and e["topics"][3] == query["topics"][3]]


class FakeW3:
    def __init__(self) -> None:
        self.eth = FakeEth()


def test_watcher_reads_by_range_with_a_confirmation_depth(tmp_path):
    w3 = FakeW3()
    w3.eth.grow(10)
    w3.eth.add_task(5, 1)
    w3.eth.add_task(9, 2)  # head is 9: not confirmed at depth 1
    w3.eth.add_task(7, 3, org=2)  # another org's task
    watcher = TaskWatcher(w3, "0xTasks", Journal(tmp_path / "j.sqlite"), publisher_org=1, depth=1, start_block=2)
    assert [e.task_id for e in watcher.poll()] == [1]
    assert watcher.journal.cursor()[0] == 8
    w3.eth.grow(1)
    assert [e.task_id for e in watcher.poll()] == [2]
    assert watcher.poll() == []


def test_watcher_rewinds_when_the_hash_at_the_cursor_changed(tmp_path):
    w3 = FakeW3()
    w3.eth.grow(10)
    w3.eth.add_task(4, 1)
    w3.eth.add_task(8, 2)
    journal = Journal(tmp_path / "j.sqlite")
    watcher = TaskWatcher(w3, "0xTasks", journal, publisher_org=1, depth=0, start_block=0)
    for head in range(3, 10):  # poll block by block so there are stored hashes to fall back on
        watcher.poll(head)
    assert journal.cursor()[0] == 9
    # a reorg replaces blocks 7.. : task 2 moves to block 8 of the new branch, task 3 appears at 9
    w3.eth.fork_at(7, "b")
    w3.eth.add_task(8, 2)
    w3.eth.add_task(9, 3)
    events = watcher.poll()
    assert watcher.rewinds == 1
    assert [e.task_id for e in events] == [2, 3]  # blocks 7..10 read again
    assert journal.cursor() == (10, w3.eth.hashes[10])
    assert watcher.poll() == []


def test_watcher_survives_a_restart_from_its_persisted_cursor(tmp_path):
    w3 = FakeW3()
    w3.eth.grow(6)
    w3.eth.add_task(3, 1)
    path = tmp_path / "j.sqlite"
    assert [e.task_id for e in TaskWatcher(w3, "0xT", Journal(path), publisher_org=1, depth=0).poll()] == [1]
    w3.eth.grow(2)
    w3.eth.add_task(7, 2)
    again = TaskWatcher(w3, "0xT", Journal(path), publisher_org=1, depth=0)
    assert [e.task_id for e in again.poll()] == [2]


@pytest.mark.parametrize("mode", MODES)
def test_a_journaled_transaction_whose_nonce_another_took_is_signed_again(setup, mode):
    """The first transaction was signed and journaled, then the Solver died; meanwhile another transaction of
    the same account took that nonce. A re-send answers "nonce too low", which must not be read
    as "mined": the receipt of those bytes never comes, so the task goes back and is signed anew."""
    from solver.daemon import REPLACED

    world, tmp_path, store, token, consumer = setup
    claim_first, kinds = MODES[mode]
    task_id = consumer.request(token)
    first = make_solver(world, tmp_path, store, crash_at=f"{kinds[0]}_signed", claim_first=claim_first)
    with pytest.raises(Crash):
        for _ in range(3):
            first.tick()
    first.close()
    journaled = Journal(tmp_path / "solver" / "solver.sqlite").txs(task_id)
    assert [t["kind"] for t in journaled] == kinds[:1] and journaled[0]["status"] is None
    # the same account spends that nonce on something else (an operator's transfer, another tool)
    solver_key = key_for("acme.sol")
    other = Account.sign_transaction({"to": Account.from_key(solver_key).address, "value": 0, "gas": 21000,
                                      "gasPrice": world.w3.eth.gas_price * 2, "nonce": journaled[0]["nonce"],
                                      "chainId": world.w3.eth.chain_id}, solver_key)
    world.w3.eth.send_raw_transaction(other.raw_transaction)
    second = make_solver(world, tmp_path, store, claim_first=claim_first)  # re-sending: "nonce too low"
    for _ in range(6):
        second.tick()
    row = second.journal.get(task_id)
    assert row.step == J.FINISHED and consumer.cti.task(task_id).state == TaskState.FINISHED
    txs = second.journal.txs(task_id)
    assert [(t["kind"], t["status"]) for t in txs] == [(kinds[0], REPLACED)] + [(k, 1) for k in kinds], txs
    assert finished_events(world, task_id) == 1
    second.close()


def test_held_writes_commit_at_the_end_and_a_journaled_transaction_at_once(tmp_path):
    """A tick's writes are held in one sqlite transaction; journaling a transaction commits what
    is held before it returns (it may be sent next); a block that raises keeps what it did."""
    path = tmp_path / "solver.sqlite"
    journal, reader = Journal(path), Journal(path)  # the reader: another connection, as after a crash
    journal.ensure(1, 5)
    with journal.held():
        journal.update(1, step=J.ACCEPTED)
        assert reader.get(1).step == J.NEW  # held: not on disk yet
        journal.record_tx(1, "finish", "0x" + "ab" * 32, b"raw", 0, J.FINISH_SENT)
        assert reader.get(1).step == J.FINISH_SENT and reader.get(1).pending_raw == b"raw"
        journal.update(1, uri="https://x")
        assert reader.get(1).uri is None
    assert reader.get(1).uri == "https://x"
    with pytest.raises(RuntimeError):
        with journal.held():
            journal.update(1, reason="a prefix")
            raise RuntimeError("the tick failed")
    assert reader.get(1).reason == "a prefix"
    with pytest.raises(ValueError):  # a refused write inside leaves the others of the block
        with journal.held():
            journal.update(1, ct_hash="0x01")
            journal.update(1, nonsense=1)
    assert reader.get(1).ct_hash == "0x01"
    journal.close()
    reader.close()
