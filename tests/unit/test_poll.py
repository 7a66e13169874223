"""poll_until: the one way to wait for a condition; RpcClient as a context manager."""

from __future__ import annotations

import pytest

from testbed.chain.rpc import RpcClient
from testbed.errors import ChainError, StateError
from testbed.poll import PollTimeout, poll_until


def counting(answers):
    """A predicate that returns `answers` one by one (the last one from then on), and its call log."""
    calls = []

    def predicate():
        calls.append(len(calls))
        return answers[min(len(calls) - 1, len(answers) - 1)]

    return predicate, calls


def test_returns_the_first_truthy_value_and_stops_calling():
    predicate, calls = counting([None, 0, "", {"head": 7}, "later"])
    naps = []
    assert poll_until(predicate, timeout=60, interval=0.5, sleep=naps.append) == {"head": 7}
    assert len(calls) == 4
    assert naps == [0.5, 0.5, 0.5]


def test_a_condition_true_at_once_never_sleeps():
    naps = []
    assert poll_until(lambda: 3, timeout=0, sleep=naps.append) == 3
    assert naps == []


def test_without_what_or_error_a_timeout_returns_the_last_falsy_value():
    predicate, calls = counting([None, None, 0])
    assert poll_until(predicate, timeout=0.05, interval=0.01) == 0
    assert len(calls) >= 3


def test_the_predicate_is_asked_at_least_once_even_with_no_time():
    predicate, calls = counting([[]])
    assert poll_until(predicate, timeout=0, interval=10) == []
    assert calls == [0]


def test_with_what_a_timeout_raises_poll_timeout_naming_it():
    with pytest.raises(PollTimeout, match=r"^node a-v1 at block 5 not within 0s$") as raised:
        poll_until(lambda: False, timeout=0.05, interval=0.01, what="node a-v1 at block 5")
    assert isinstance(raised.value, ChainError)


def test_with_error_a_timeout_raises_that_exception_built_at_the_end():
    state = {"seen": 0}

    def predicate():
        state["seen"] += 1
        return False

    with pytest.raises(StateError, match=r"^gave up after \d+ looks \(h\)$") as raised:
        poll_until(predicate, timeout=0.05, interval=0.01, what="ignored",
                   error=lambda: StateError(f"gave up after {state['seen']} looks", hint="h"))
    assert raised.value.message == f"gave up after {state['seen']} looks"
    assert state["seen"] >= 2


def test_an_exception_of_the_predicate_propagates_at_once():
    predicate, calls = counting([None])

    def failing():
        predicate()
        if len(calls) == 2:
            raise ValueError("node died")
        return None

    with pytest.raises(ValueError, match="node died"):
        poll_until(failing, timeout=60, interval=0)
    assert len(calls) == 2


def test_rpc_client_closes_its_session_on_leaving_the_with_block(monkeypatch):
    closed = []
    with RpcClient("http://127.0.0.1:1", timeout=1) as rpc:
        monkeypatch.setattr(rpc._session, "close", lambda: closed.append(True))
        assert isinstance(rpc, RpcClient)
        assert closed == []
    assert closed == [True]


def test_rpc_client_closes_its_session_when_the_block_raises(monkeypatch):
    closed = []
    with pytest.raises(RuntimeError):
        with RpcClient("http://127.0.0.1:1", timeout=1) as rpc:
            monkeypatch.setattr(rpc._session, "close", lambda: closed.append(True))
            raise RuntimeError("boom")
    assert closed == [True]
