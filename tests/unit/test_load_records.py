"""Raw records: inclusion from blocks, reorg rollback, drop accounting; the fast transfer signer."""

import json

import pytest
from eth_account import Account

from testbed.chain.txs import MAX_FEE_PER_GAS, TRANSFER_GAS, TxSigner, TxRecord
from testbed.load.records import Recorder, read_jsonl
from testbed.runs import RunDir


def block(number, txs, parent=None, tag=""):
    return {"number": hex(number), "hash": f"0x{number:04x}{tag}", "parentHash": parent or f"0x{number - 1:04x}",
            "timestamp": hex(1000 + number), "transactions": txs, "gasUsed": hex(21000 * len(txs))}


def rows(rec, n, t=999.5):
    out = [TxRecord(f"0xh{i}", "acme", "acme-v1", "0xs", i, "transfer", t, status="submitted") for i in range(n)]
    for r in out:
        rec.submitted(r)
    return out


def test_inclusion_rejection_and_drop_account_for_every_tx():
    rec = Recorder()
    r = rows(rec, 5)
    rec.reject(r[4], "nonce too low")
    assert rec.apply_block(block(1, ["0xh0", "0xforeign"]), seen_time=1001.2) == [r[0]]
    assert rec.apply_block(block(2, ["0xh1", "0xh2"]), seen_time=1002.1) == [r[1], r[2]]
    assert rec.drop_pending("gone") == 1
    assert [x.status for x in r] == ["included", "included", "included", "dropped", "rejected"]
    assert r[0].latency == 1001.2 - 999.5 and r[0].included_block == 1 and r[0].block_timestamp == 1001
    assert rec.blocks[0]["tx_count"] == 2 and rec.blocks[0]["load_txs"] == 1


def test_reorg_rollback_puts_txs_back_and_counts_it():
    rec = Recorder()
    r = rows(rec, 3)
    rec.apply_block(block(1, []), 1001.0)
    rec.apply_block(block(2, ["0xh0", "0xh1"], tag="a"), 1002.0)
    try:
        rec.apply_block(block(3, ["0xh2"], parent="0x0002b"), 1003.0)
        raise AssertionError("a block that does not extend the chain must be refused")
    except ValueError:
        pass
    assert rec.rollback(2, 1003.1) == 1
    assert r[0].status == "submitted" and r[0].reorged == 1 and "0xh0" in rec.pending
    rec.apply_block(block(2, ["0xh0"], tag="b"), 1003.2)
    rec.apply_block(block(3, ["0xh1", "0xh2"], parent="0x0002b"), 1003.3)
    assert [(x.status, x.included_block) for x in r] == [("included", 2), ("included", 3), ("included", 3)]
    assert [b["hash"] for b in rec.blocks] == ["0x0001", "0x0002b", "0x0003"]
    assert rec.reorgs[0]["depth"] == 1


def test_write_and_read_back(tmp_path):
    rec = Recorder()
    rows(rec, 2)
    rec.apply_block(block(1, ["0xh0"]), 1001.0)
    rec.rate(1000.0, 100.0, 4)
    rec.head(1000.0, "acme-v1", 1)
    rec.write(RunDir(tmp_path))
    txs = read_jsonl(tmp_path / "txs.jsonl")
    assert [t["status"] for t in txs] == ["included", "submitted"]
    assert set(txs[0]) >= {"hash", "org", "node", "submit_time", "included_block", "included_time", "status"}
    assert read_jsonl(tmp_path / "blocks.jsonl")[0]["number"] == 1
    assert json.loads((tmp_path / "rates.jsonl").read_text())["target"] == 100.0


def test_fast_signer_matches_eth_account():
    key = "0x" + "42" * 32
    to = Account.from_key("0x" + "07" * 32).address  # checksummed, as eth-account wants
    signer = TxSigner(key, chain_id=1337)
    for nonce in (0, 1, 300):
        tx_hash, raw = signer.sign(nonce, to, value=7)
        ref = Account.from_key(key).sign_transaction({
            "type": 2, "chainId": 1337, "nonce": nonce, "to": to, "value": 7, "gas": TRANSFER_GAS,
            "maxFeePerGas": MAX_FEE_PER_GAS, "maxPriorityFeePerGas": signer.tip, "data": b""})
        assert raw == "0x" + ref.raw_transaction.hex().removeprefix("0x")
        assert tx_hash == "0x" + ref.hash.hex().removeprefix("0x")
    assert signer.address == Account.from_key(key).address


@pytest.mark.parametrize("chain_id, gas_price", [(1337, 0), (10, 0), (2**31, 7)])
def test_fast_signer_matches_eth_account_for_legacy_transactions(chain_id, gas_price):
    """Pre-London chains (GoQuorum: gas price 0) take legacy EIP-155 transactions."""
    from testbed.chain.txs import FeeRules

    key = "0x" + "42" * 32
    to = Account.from_key("0x" + "07" * 32).address
    signer = TxSigner(key, chain_id=chain_id, fees=FeeRules(london=False, gas_price=gas_price))
    for nonce, data in ((0, b""), (1, b"\x01\x02"), (300, b"")):
        tx_hash, raw = signer.sign(nonce, to, value=7, gas=50_000, data=data)
        ref = Account.from_key(key).sign_transaction({
            "chainId": chain_id, "nonce": nonce, "to": to, "value": 7, "gas": 50_000, "gasPrice": gas_price,
            "data": data})
        assert raw == "0x" + ref.raw_transaction.hex().removeprefix("0x")
        assert tx_hash == "0x" + ref.hash.hex().removeprefix("0x")


@pytest.mark.parametrize("fees", [{"maxFeePerGas": 2 * 7 + 10**9, "maxPriorityFeePerGas": 10**9}, {"gasPrice": 0},
                                  {"gasPrice": 5}])
@pytest.mark.parametrize("to, data", [("call", "0xa9059cbb" + "00" * 64), (None, "0x6080604052" + "00" * 40)])
def test_sign_fields_matches_eth_account_for_contract_calls_and_creation(fees, to, data):
    """The CTI client and the Solver sign their contract calls (and the deployment) with the same
    signer: eth-account's bytes for a call with data and value, and for a contract creation."""
    key = "0x" + "42" * 32
    tx = {"chainId": 1337, "nonce": 9, "gas": 210_000, "value": 3, "data": data, **fees}
    if to is not None:
        tx["to"] = Account.from_key("0x" + "07" * 32).address
    raw, tx_hash = TxSigner(key, chain_id=1337).sign_fields({**tx, "from": Account.from_key(key).address})
    ref = Account.from_key(key).sign_transaction(tx)
    assert raw == bytes(ref.raw_transaction) and tx_hash == "0x" + bytes(ref.hash).hex()
