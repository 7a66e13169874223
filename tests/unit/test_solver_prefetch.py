"""The Solver's per-tick batch read: one JSON-RPC batch answers each unfinished task's first
question (its journaled tx's receipt, or its state); errors and providers without batches
leave the task to the per-task reads. (Decoding a task's return data: test_cti_loop.py.)"""

from dataclasses import fields
from types import SimpleNamespace

import pytest

from solver.daemon import Solver
from solver.journal import TaskRow
from testbed.chain import rpc
from testbed.chain.rpc import ProviderBatch


def row(task_id, pending_hash=None):
    values = {f.name: None for f in fields(TaskRow)}
    return TaskRow(**{**values, "task_id": task_id, "token_id": 1, "step": "new", "pending_hash": pending_hash,
                      "updated_at": 0.0, "recorded": 0})


def solver_with(answer_batch):
    s = Solver.__new__(Solver)
    s.w3 = SimpleNamespace(provider=SimpleNamespace(make_batch_request=answer_batch))
    s.sender = SimpleNamespace(rpc=ProviderBatch(s.w3))
    s._said_no_batches = False
    s._batches = False
    s.cti = SimpleNamespace(task_call=lambda task_id: {"to": "0xtasks", "data": f"0x{task_id:08x}"},
                            decode_task=lambda task_id, data: ("decoded", task_id, data))
    return s


def test_one_batch_answers_receipts_and_task_states():
    seen = []

    def batch(requests):
        seen.append(requests)
        return [{"result": {"status": "0x1", "blockNumber": "0x2a"}},  # task 1: mined
                {"result": None},  # task 2: its tx is not mined yet
                {"result": "0xabcd"},  # task 3: its state
                {"error": {"code": 3, "message": "execution reverted", "data": "0x..."}}]  # task 4: read alone

    found = solver_with(batch)._prefetch([row(1, "0xh1"), row(2, "0xh2"), row(3), row(4)])
    assert [method for method, _ in seen[0]] == ["eth_getTransactionReceipt", "eth_getTransactionReceipt",
                                                 "eth_call", "eth_call"]
    assert seen[0][2][1] == [{"to": "0xtasks", "data": "0x00000003"}, "latest"]
    assert found == {1: ("receipt", {"status": 1, "blockNumber": 42}), 2: ("receipt", None),
                     3: ("task", ("decoded", 3, bytes.fromhex("abcd")))}


def test_batches_are_bounded(monkeypatch):
    monkeypatch.setattr(rpc, "BATCH_SIZE", 3)
    sizes = []

    def batch(requests):
        sizes.append(len(requests))
        return [{"result": None} for _ in requests]

    found = solver_with(batch)._prefetch([row(i, f"0xh{i}") for i in range(7)])
    assert sizes == [3, 3, 1] and len(found) == 7


@pytest.mark.parametrize("answer", [NotImplementedError("no batches"), {"error": {"code": -32600}}, [{"result": None}]])
def test_no_usable_batch_leaves_every_task_to_its_own_reads(answer):
    def batch(requests):
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert solver_with(batch)._prefetch([row(1, "0xh1"), row(2)]) == {}


def test_no_task_no_batch():
    def batch(requests):
        raise AssertionError("no batch without tasks")

    solver = solver_with(batch)
    assert solver._prefetch([]) == {} and solver._batches is False
