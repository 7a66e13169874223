"""One table of the nodes' refusal words (testbed/chain/txs.py), used by the load generator, the
scenario load, the CTI signer and the Solver alike."""

from __future__ import annotations

import pytest

from solver.txs import _send_outcome
from testbed.chain.rpc import RpcError
from testbed.chain.txs import is_already_known, is_nonce_conflict, refusal_kind


@pytest.mark.parametrize("answer, kind", [
    ("already known", "known"),  # geth, GoQuorum
    ("ALREADY_KNOWN", "known"),  # Besu
    ("Known transaction", "known"),
    ("nonce too low: next nonce 7, tx nonce 5", "nonce_used"),
    ("NONCE_TOO_LOW", "nonce_used"),
    ("replacement transaction underpriced", "nonce_in_pool"),
    ("insufficient funds for gas * price + value", None),
    ("intrinsic gas too low", None),
])
def test_each_refusal_has_one_kind(answer, kind):
    error = RpcError(f"http://127.0.0.1:8545: eth_sendRawTransaction: {answer}")
    assert refusal_kind(error) == kind
    assert is_already_known(error) == (kind == "known")
    assert is_nonce_conflict(error) == (kind in ("nonce_used", "nonce_in_pool"))


def test_the_solver_reads_the_same_table():
    assert _send_outcome(RpcError("x: already known")) == "known"
    assert _send_outcome(RpcError("x: NONCE_TOO_LOW")) == "used"
    other = RpcError("x: replacement transaction underpriced")
    assert _send_outcome(other) is other  # its own transaction holds the nonce: the pipeline decides
