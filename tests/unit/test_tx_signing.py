"""Client-side signing against a node that answers like geth (fakes, no chain):
- an account with two senders (a scenario's CTI calls and the load's funding): a nonce the other
  sender took first is re-read and the transaction signed again; any other refusal still fails;
- the Solver's sender estimates accept/finish gas once, and reads fees once per block."""

from types import SimpleNamespace

import pytest
import rlp
from eth_account import Account

from testbed.chain.rpc import RpcError
from testbed.chain.txs import is_nonce_conflict
from testbed.cti.tx import NONCE_RETRIES, Signer
from testbed.errors import ChainError
from testbed.chain.txs import TxSigner
from testbed.load.accounts import AccountRef, _fund_group

KEY = "0x" + "42" * 32


def raw_nonce(raw: bytes) -> int:
    """The nonce of a signed EIP-1559 transaction: 0x02 || rlp([chain_id, nonce, ...])."""
    assert raw[0] == 2
    return int.from_bytes(rlp.decode(raw[1:])[1], "big")


@pytest.mark.parametrize("message, conflict", [
    ("{'code': -32000, 'message': 'nonce too low: next nonce 3, tx nonce 1'}", True),
    ("replacement transaction underpriced", True),
    ("Nonce too low", True),
    ("already known", False),  # the very same transaction: not a conflict, never re-signed
    ("insufficient funds for gas * price + value", False),
])
def test_which_refusals_are_nonce_conflicts(message, conflict):
    assert is_nonce_conflict(RuntimeError(message)) is conflict


class FakeEth:
    """The node: its pending nonce moves on when another sender takes one."""

    def __init__(self, refusals):
        self.refusals = list(refusals)
        self.pending = 1
        self.sent = []
        self.chain_id = 1337

    def get_transaction_count(self, address, block):
        return self.pending

    def get_block(self, tag):
        return {"baseFeePerGas": 7}

    def send_raw_transaction(self, raw):
        tx = Account.recover_transaction(raw)
        if self.refusals:
            self.pending += 1  # somebody else's transaction took the nonce
            raise ValueError(self.refusals.pop(0))
        self.sent.append((tx, raw))


def signer(refusals):
    eth = FakeEth(refusals)
    return Signer(SimpleNamespace(eth=eth), KEY), eth


def test_a_taken_nonce_is_reread_and_the_call_signed_again():
    s, eth = signer(["nonce too low: next nonce 2, tx nonce 1"])
    s.send("buy", {"to": "0x" + "11" * 20, "data": "0x"}, gas=50_000)
    assert len(eth.sent) == 1
    assert raw_nonce(eth.sent[0][1]) == 2 and s.next_nonce() == 3


def test_other_refusals_and_endless_conflicts_still_fail():
    s, eth = signer(["insufficient funds for gas * price + value"])
    with pytest.raises(ChainError, match="insufficient funds"):
        s.send("buy", {"to": "0x" + "11" * 20, "data": "0x"}, gas=50_000)
    s, eth = signer(["replacement transaction underpriced"] * (NONCE_RETRIES + 1))
    with pytest.raises(ChainError, match="underpriced"):
        s.send("buy", {"to": "0x" + "11" * 20, "data": "0x"}, gas=50_000)
    assert not eth.sent


def _refusing_rpc(taken: set[int], error: str):
    """eth_getTransactionCount + batched eth_sendRawTransaction; the nonces in `taken` belong to
    another sender (refused with `error`), the node's pending nonce follows every used one."""
    rpc = SimpleNamespace(accepted=[])
    used = set()

    def call(method, *params):
        return hex(max(used) + 1 if used else 5)

    def batch(calls, allow_errors=False):
        results = []
        for _, (raw,) in calls:
            nonce = raw_nonce(bytes.fromhex(raw[2:]))
            used.add(nonce)
            if nonce in taken:
                results.append(RpcError(f"-32000: {error}"))
            else:
                rpc.accepted.append(nonce)
                results.append("0xhash")
        return results

    rpc.call, rpc.batch = call, batch
    return rpc


def targets(n):
    return [AccountRef(org="acme", node="acme-v1", rpc_url="http://127.0.0.1:1", address="0x" + f"{i:040x}")
            for i in range(n)]


def test_funding_signs_again_the_transfers_whose_nonce_was_taken():
    rpc = _refusing_rpc({5}, "nonce too low")  # a CTI call took nonce 5 between our read and our batch
    sent = _fund_group(rpc, TxSigner(KEY, chain_id=1337), "acme", targets(3), 10**18)
    assert len(sent) == 3 and len({r.hash for r in sent}) == 3
    assert sorted(r.nonce for r in sent) == sorted(rpc.accepted) == [6, 7, 8]


def test_funding_fails_on_any_other_refusal():
    rpc = _refusing_rpc({6}, "insufficient funds for transfer")
    with pytest.raises(ChainError, match="funding load accounts of acme: 1 transfers rejected"):
        _fund_group(rpc, TxSigner(KEY, chain_id=1337), "acme", targets(3), 10**18)


class CountingEth(FakeEth):
    def __init__(self):
        super().__init__([])
        self.calls = {"estimate_gas": 0, "call": 0, "get_block": 0}

    def estimate_gas(self, tx):
        self.calls["estimate_gas"] += 1
        return 100_000

    def call(self, tx):
        self.calls["call"] += 1
        return b""

    def get_block(self, tag):
        self.calls["get_block"] += 1
        return super().get_block(tag)


def test_the_solver_estimates_deliver_accept_and_finish_gas_once_and_reads_fees_once_per_block():
    from solver.txs import TxSender

    eth = CountingEth()
    sender = TxSender(SimpleNamespace(eth=eth), Account.from_key(KEY))
    contract = SimpleNamespace(address="0x" + "22" * 20, encode_abi=lambda fn, args: "0x" + "00" * 4)
    first = sender.sign(contract, "accept", [1], 0)
    second = sender.sign(contract, "accept", [2], 1)
    assert eth.calls == {"estimate_gas": 1, "call": 1, "get_block": 1}  # the second: one eth_call pre-check
    assert first.nonce == 0 and second.nonce == 1 and first.tx_hash != second.tx_hash
    sender.sign(contract, "reject", [3, "no such MISP event"], 2)  # its gas grows with the reason: estimated
    sender.sign(contract, "reject", [4, "no such MISP event"], 3)
    assert eth.calls["estimate_gas"] == 3
    sender.new_block()
    sender.forget_gas("accept")  # a reverted accept: estimate again
    sender.sign(contract, "accept", [5], 4)
    assert eth.calls["estimate_gas"] == 4 and eth.calls["get_block"] == 2
    # the default Solver's one call per task: estimated once, then known (the tick batches it)
    assert sender.known_gas("deliver") is None
    sender.sign(contract, "deliver", [6, b"\x01" * 32, "http://127.0.0.1:1/v1/tasks/6"], 5)
    assert sender.known_gas("deliver") is not None and eth.calls["estimate_gas"] == 5
    sender.sign(contract, "deliver", [7, b"\x01" * 32, "http://127.0.0.1:1/v1/tasks/7"], 6)
    assert eth.calls["estimate_gas"] == 5


def test_the_solver_batch_forms_answer_like_the_single_ones():
    """One JSON-RPC batch per tick: each pre-check passes, is a ContractRevert (decoded from the
    error's data), or another ChainError (out of the reused gas); each send is sent, known, used,
    or the failure."""
    from solver.txs import TxSender
    from testbed.cti import ContractRevert
    from testbed.cti.artifacts import error_table

    selector = next(s for s, spec in error_table().items() if spec.name == "BadState")
    bad_state = "0x" + selector.hex() + (7).to_bytes(32, "big").hex() + (2).to_bytes(32, "big").hex()
    answers = {"eth_call": [{"result": "0x"},
                            {"error": {"code": 3, "message": "execution reverted", "data": bad_state}},
                            {"error": {"code": -32000, "message": "out of gas"}}],
               "eth_sendRawTransaction": [{"result": "0x" + "ab" * 32},
                                          {"error": {"code": -32000, "message": "already known"}},
                                          {"error": {"code": -32000, "message": "nonce too low"}},
                                          {"error": {"code": -32000, "message": "txpool is full"}}]}
    seen = []

    def batch(requests):
        seen.append(requests)
        return answers[requests[0][0]]

    sender = TxSender(SimpleNamespace(eth=CountingEth(), provider=SimpleNamespace(make_batch_request=batch)),
                      Account.from_key(KEY))
    tx = {"from": sender.account.address, "to": "0x" + "22" * 20, "data": "0x00", "value": 0}
    verdicts = sender.precheck_batch([("accept", tx, 90_000), ("accept", tx, 90_000), ("finish", tx, 50_000)])
    assert seen[0][2][1][0]["gas"] == hex(50_000)  # run with the gas it will be sent with
    assert verdicts[0] is None
    assert isinstance(verdicts[1], ContractRevert) and verdicts[1].error == "BadState"
    assert isinstance(verdicts[2], ChainError) and not isinstance(verdicts[2], ContractRevert)
    assert "out of gas" in str(verdicts[2])
    outcomes = sender.send_batch([b"\x02a", b"\x02b", b"\x02c", b"\x02d"])
    assert outcomes[:3] == ["sent", "known", "used"] and "txpool is full" in str(outcomes[3])
    assert seen[1][0] == ("eth_sendRawTransaction", ["0x0261"])
