"""Distributed load without processes: late rows in the recorder, the master's merge of worker
messages, a worker's share of the rate, the worker command, and the spec's `workers` field.
(The live run of a master with two worker processes is tests/integration/test_load.py.)"""

import json
from types import SimpleNamespace

import pytest

from testbed.chain.txs import TxRecord
from testbed.errors import TestbedError
from testbed.load import distributed
from testbed.load.distributed import ROW_FIELDS, Worker, WorkerContext, WorkerPool, run_worker, worker_command
from testbed.load.records import Recorder
from testbed.spec.scenario import Load

from .test_load_records import block


def row(i, t=999.5):
    return TxRecord(f"0xh{i}", "acme", "acme-v1", "0xs", i, "transfer", t, status="submitted")


def test_a_row_arriving_after_its_block_is_included_from_that_block():
    rec = Recorder(late_rows=True)
    early = row(0)
    rec.submitted(early)
    rec.apply_block(block(1, ["0xh0", "0xh1", "0xforeign"]), seen_time=1001.25)
    late = row(1, t=1000.0)
    assert rec.submitted(late) is True
    assert (late.status, late.included_block, late.block_timestamp) == ("included", 1, 1001)
    assert late.latency == pytest.approx(1.25)
    assert rec.blocks[0]["load_txs"] == 2 and not rec.pending
    # a row no block holds stays pending, and drops like any other
    missing = row(2)
    assert rec.submitted(missing) is False and rec.drop_pending("gone") == 1 and missing.status == "dropped"


def test_without_late_rows_a_late_row_waits_for_a_later_block():
    rec = Recorder()
    rec.apply_block(block(1, ["0xh1"]), seen_time=1001.0)
    late = row(1)
    assert rec.submitted(late) is False and late.status == "submitted" and rec.blocks[0]["load_txs"] == 0


def test_a_late_row_of_a_block_that_left_the_chain_is_not_matched_to_it():
    rec = Recorder(late_rows=True)
    rec.apply_block(block(1, []), 1001.0)
    rec.apply_block(block(2, ["0xh1"], tag="a"), 1002.0)
    rec.rollback(2, 1002.5)
    late = row(1)
    assert rec.submitted(late) is False and late.status == "submitted"
    rec.apply_block(block(2, ["0xh1"], tag="b", parent="0x0001"), 1003.0)
    assert late.status == "included" and late.included_block == 2


def test_hashes_older_than_the_window_are_forgotten():
    rec = Recorder(late_rows=True)
    rec.LATE_WINDOW = 3
    for n in range(1, 6):
        rec.apply_block(block(n, [f"0xh{n}"], parent=None), 1000.0 + n)
    assert rec.submitted(row(1)) is False  # block 1 is 4 blocks back: beyond the window
    assert rec.submitted(row(4)) is True


class FakeEvents:
    def __init__(self):
        self.fired = []
        self.request = SimpleNamespace(fire=lambda **kw: self.fired.append(kw))


def master_pool():
    """A WorkerPool's merge side only (no Locust runner, no processes)."""
    pool = WorkerPool.__new__(WorkerPool)
    pool.env = SimpleNamespace(events=FakeEvents())
    pool.ctx = SimpleNamespace(recorder=Recorder(late_rows=True))
    pool._signed_late = {}
    pool.replies = {"testbed_flushed": {}}
    return pool


def message(kind, data):
    return SimpleNamespace(type=kind, data=data)


def wire(r: TxRecord, status="submitted", error=None):
    r.status, r.error = status, error
    return [getattr(r, f) for f in ROW_FIELDS]


def test_the_master_merges_worker_rows_into_its_recorder():
    pool = master_pool()
    rec = pool.ctx.recorder
    rec.apply_block(block(1, ["0xh0"]), seen_time=1001.0)
    pool._rows(None, message("testbed_rows", {
        "index": 1, "signed_late": 7,
        "rows": [wire(row(0)), wire(row(1)), wire(row(2), "rejected", "nonce too low")],
        "resources": [{"time": 1001.0, "process": "generator-w1", "pid": 42, "cpu_percent": 12.5, "rss_mb": 80.0}]}))
    statuses = {r.hash: r.status for r in rec.rows}
    assert statuses == {"0xh0": "included", "0xh1": "submitted", "0xh2": "rejected"}
    assert [r.hash for r in rec.rows if r.status == "rejected"][0] == "0xh2" and rec.rows[2].error == "nonce too low"
    assert set(rec.pending) == {"0xh1"}
    # the late row's inclusion event fires once, at merge time, with its latency
    assert [(e["request_type"], e["context"]["block"]) for e in pool.env.events.fired] == [("inclusion", 1)]
    assert pool.env.events.fired[0]["response_time"] == pytest.approx(1500.0)
    assert rec.resources == [{"time": 1001.0, "process": "generator-w1", "pid": 42, "cpu_percent": 12.5, "rss_mb": 80.0}]
    pool._rows(None, message("testbed_rows", {"index": 0, "signed_late": 3, "rows": [], "resources": []}))
    assert pool.signed_late() == 10
    pool._reply(None, message("testbed_flushed", {"index": 0}))
    assert pool.replies["testbed_flushed"] == {0: {"index": 0}}


def worker_setup(**changes):
    setup = {"index": 2, "orgs": {"acme": ["acme-v1", "http://127.0.0.1:1"], "globex": ["globex-v1", "http://127.0.0.1:2"]},
             "chain_id": 1337, "fees": {"london": False, "gas_price": 0}, "recipient": {"acme": "0x" + "11" * 20, "globex": "0x" + "22" * 20},
             "accounts_per_org": 3, "batch_size": 10, "per_user_rate": 25.0}
    return {**setup, **changes}


def test_a_worker_makes_its_own_accounts_and_paces_to_its_share():
    runner = SimpleNamespace(user_count=3)
    ctx = WorkerContext(SimpleNamespace(runner=runner), worker_setup())
    assert {org: len(group) for org, group in ctx.free.items()} == {"acme": 3, "globex": 3}
    assert len({a.address for a in ctx.accounts()}) == 6 and all(a.signer.chain_id == 1337 and not a.signer.fees.london for a in ctx.accounts())
    assert ctx.index == 2 and ctx.max_users == 6
    assert ctx.current_rate() == 3 * 25.0  # no target yet: users x per-user rate
    ctx.target_rate, ctx.target_users = 600.0, 12
    assert ctx.current_rate() == pytest.approx(150.0)  # 3 of the run's 12 users: a quarter of 600 tx/s
    sent = []
    ctx.settled([row(0), row(1)])
    ctx.samples.append({"t": 1.0, "process": "generator-w2", "pid": 1, "cpu_percent": 1.0, "rss_mb": 1.0})
    ctx.forward(SimpleNamespace(send_message=lambda kind, data: sent.append((kind, data))))
    kind, data = sent[0]
    assert kind == "testbed_rows" and data["index"] == 2 and len(data["rows"]) == 2 and len(data["resources"]) == 1
    assert dict(zip(ROW_FIELDS, data["rows"][1]))["nonce"] == 1 and not ctx.outbox and not ctx.samples


def test_the_master_asks_again_a_worker_that_missed_its_setup(monkeypatch):
    """Locust drops a message that arrives before the worker's locustfile registered its type:
    the master repeats the set-up to a worker that has not answered, and only to that one."""
    monkeypatch.setattr(distributed, "RESEND_INTERVAL", 0.02)
    index = {"a": 0, "b": 1}
    pool = WorkerPool.__new__(WorkerPool)
    pool.expect, pool.launcher, pool._workers = 2, None, ["a", "b"]
    pool.replies = {"testbed_accounts": {}}
    pool.runner = SimpleNamespace(get_worker_index=index.get)
    sent = []

    def send_setup(client_id):
        sent.append(client_id)
        if client_id == "a" or sent.count("b") == 3:  # b's first two set-ups came before it listened
            pool._reply(None, message("testbed_accounts", {"index": index[client_id], "accounts": []}))

    answers = pool._wait("testbed_accounts", 5, resend=send_setup)
    assert sorted(answers) == [0, 1] and sent == ["a", "b", "b", "b"]
    assert pool.replies["testbed_accounts"] == {}


def test_the_master_gives_up_on_a_worker_that_never_answers(monkeypatch):
    monkeypatch.setattr(distributed, "RESEND_INTERVAL", 0.02)
    pool = WorkerPool.__new__(WorkerPool)
    pool.expect, pool.launcher, pool._workers = 1, None, ["a"]
    pool.replies = {"testbed_accounts": {}}
    pool.runner = SimpleNamespace(get_worker_index=lambda _: 0)
    sent = []
    with pytest.raises(TestbedError, match="0 of 1 Locust workers answered testbed_accounts within 0s"):
        pool._wait("testbed_accounts", 0.2, resend=sent.append)
    assert len(sent) >= 3


def test_a_worker_given_its_setup_twice_keeps_one_set_of_accounts():
    sent, handlers = [], {}
    runner = SimpleNamespace(register_message=lambda kind, handler, concurrent: handlers.setdefault(kind, handler),
                             send_message=lambda kind, data: sent.append((kind, data)), user_count=0)
    env = SimpleNamespace(runner=runner)
    worker = Worker(env, runner)
    try:
        handlers["testbed_setup"](env, message("testbed_setup", worker_setup()))
        first = worker.ctx
        handlers["testbed_setup"](env, message("testbed_setup", worker_setup()))
        assert worker.ctx is first and env.testbed is first and len(worker._greenlets) == 2
        assert [kind for kind, _ in sent] == ["testbed_accounts", "testbed_accounts"]
        assert sent[0][1] == sent[1][1] and len(sent[0][1]["accounts"]) == 6 and sent[0][1]["index"] == 2
    finally:
        worker.stop()


def test_the_worker_command_names_its_master_only():
    command = worker_command("127.0.0.1:5557")
    assert command[1:3] == ["-m", "testbed.load"] and json.loads(command[3]) == {"command": "worker",
                                                                                 "master": "127.0.0.1:5557"}


@pytest.mark.parametrize("address", ["127.0.0.1", "host:port", ":5557", "127.0.0.1:70000", "127.0.0.1:0"])
def test_a_worker_with_a_bad_master_address_is_refused(address):
    with pytest.raises(TestbedError, match="HOST:PORT"):
        run_worker(address, print)


def test_workers_belong_to_the_locust_engine():
    assert Load(rate=100, duration=10, engine="locust", workers=2).workers == 2
    with pytest.raises(ValueError, match="engine: locust"):
        Load(rate=100, duration=10, workers=2)
    with pytest.raises(ValueError):
        Load(rate=100, duration=10, engine="locust", workers=-1)
