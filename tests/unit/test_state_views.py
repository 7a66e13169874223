"""Decoding the state views' raw answers for the monitor's samples: a refused call (a task not
yet created at the compared block, answered 'error') must not take the run down."""

from __future__ import annotations

from types import SimpleNamespace

from web3 import Web3

from testbed.scenario.views import StateViews


def views() -> StateViews:
    addresses = {"Activity": "0x" + "11" * 20, "Tasks": "0x" + "22" * 20}
    deployment = SimpleNamespace(contracts={name: SimpleNamespace(block=5) for name in addresses},
                                 address=lambda name: Web3.to_checksum_address(addresses[name]))
    state = StateViews(deployment, {"acme": 1})
    state.watch_task(1)
    return state


def test_answers_are_decoded_and_a_refused_call_stays_as_answered():
    state = views()
    by_kind = {v.kind: v for v in state.views()}
    assert set(by_kind) == {"activity", "task_count", "task"}
    assert state.decode(by_kind["task_count"], "0x" + "00" * 31 + "07") == 7
    assert state.decode(by_kind["task"], "error") == "error"
    assert state.decode(by_kind["task"], "0x") is None
    assert state.decode(by_kind["task"], "0xzz") == "0xzz"  # not hex: shown raw, never raised
    assert state.decode(by_kind["task"], "0x" + "ab" * 40) == "0x" + "ab" * 32  # undecodable: raw, cut
