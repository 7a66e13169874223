"""CTI load transactions, built and signed without a network: ABI data, kinds, nonces, batch shape.

cti_calls has no Locust import (cti_users.py has the users), so this runs inside pytest.
"""

from __future__ import annotations

from collections import deque

import pytest
import rlp
from eth_account import Account
from web3 import Web3

from testbed.chain.txs import TxSigner
from testbed.cti.artifacts import load
from testbed.load.cti_calls import (CallBook, CtiAccount, consumer_batch, encode, publisher_batch, sign_call)

KEY = "0x" + "11" * 32
CHAIN_ID = 1337
MARKET = "0x" + "aa" * 20
TASKS = "0x" + "bb" * 20
SOLVER = Web3.to_checksum_address("0x" + "cc" * 20)
GAS = {"buy": 120_000, "request": 260_000, "mint": 80_000, "publish": 390_000}
PUBKEY = b"\x04" + b"\x22" * 64


@pytest.fixture
def book():
    w3 = Web3()
    contracts = {"CtiMarket": w3.eth.contract(address=Web3.to_checksum_address(MARKET), abi=load("CtiMarket").abi),
                 "Tasks": w3.eth.contract(address=Web3.to_checksum_address(TASKS), abi=load("Tasks").abi)}
    return CallBook(contracts, GAS, price_wei=3)


def decode(raw: str) -> list:
    data = bytes.fromhex(raw.removeprefix("0x"))
    assert data[0] == 2  # EIP-1559
    return rlp.decode(data[1:])


def test_calls_are_web3_abi_encoded_with_fixed_gas_and_value(book):
    buy = book.buy(7, 49)
    assert buy.kind == "cti_buy" and buy.gas == GAS["buy"] and buy.value == 3 * 49
    assert buy.to.lower() == MARKET
    assert buy.data == bytes.fromhex(book.c["CtiMarket"].encode_abi("buy", args=[7, 49])[2:])
    assert buy.data[:4] == Web3.keccak(text="buy(uint256,uint256)")[:4]
    req = book.request(7, PUBKEY)
    assert req.kind == "cti_request" and req.to.lower() == TASKS and req.value == 0 and req.gas == GAS["request"]
    assert req.data[:4] == Web3.keccak(text="request(uint256,bytes)")[:4]
    assert PUBKEY in req.data
    assert book.request(7, PUBKEY) is req  # encoded once, then reused
    mint = book.mint(9)
    assert mint.data == encode(book.c["CtiMarket"], "mint", [9, 1]) and mint.gas == GAS["mint"]


def test_consumer_batch_is_one_buy_then_requests(book):
    calls = consumer_batch(book, 5, PUBKEY, 10)
    assert [c.kind for c in calls] == ["cti_buy"] + ["cti_request"] * 9
    assert calls[0].value == 3 * 9  # buys exactly the tokens the requests spend
    with pytest.raises(ValueError):
        consumer_batch(book, 5, PUBKEY, 1)


def test_publisher_batch_lists_a_new_uuid_each_time(book):
    a = publisher_batch(book, 4, SOLVER, 5, "x-00000001-load")
    b = publisher_batch(book, 4, SOLVER, 5, "x-00000002-load")
    assert [c.kind for c in a] == ["cti_publish"] + ["cti_mint"] * 4
    assert a[0].data != b[0].data and a[1] == b[1]
    assert a[0].data[:4] == bytes.fromhex(book.c["CtiMarket"].encode_abi(
        "publish", args=["u", "t", b"\x01" * 32, 1, 1, [SOLVER]])[2:10])
    assert b"x-00000001-load" in a[0].data and a[0].gas == GAS["publish"] and a[0].value == 0


def test_signed_call_matches_eth_account(book):
    signer = TxSigner(KEY, chain_id=CHAIN_ID)
    call = book.request(3, PUBKEY)
    nonce, tx_hash, raw, kind = sign_call(signer, 12, call)
    assert (nonce, kind) == (12, "cti_request")
    fields = decode(raw)
    assert int.from_bytes(fields[1], "big") == 12 and int.from_bytes(fields[4], "big") == GAS["request"]
    assert fields[7] == call.data
    expected = Account.from_key(KEY).sign_transaction({
        "chainId": CHAIN_ID, "nonce": 12, "maxPriorityFeePerGas": signer.tip, "maxFeePerGas": signer.max_fee,
        "gas": call.gas, "to": Web3.to_checksum_address(call.to), "value": 0, "data": call.data, "type": 2})
    assert raw == "0x" + bytes(expected.raw_transaction).hex()
    assert tx_hash == "0x" + bytes(expected.hash).hex()


def test_account_presigns_whole_batches_with_consecutive_nonces(book):
    signer = TxSigner(KEY, chain_id=CHAIN_ID)
    account = CtiAccount(org="a", node="a-0", rpc_url="http://x", signer=signer, nonce=40, presigned=deque(),
                         plan=lambda size, serial: consumer_batch(book, 2, PUBKEY, size))
    account.presign_batches(3, 4)
    assert [r[0] for r in account.presigned] == list(range(40, 52))
    first = account.take(4)
    assert [r[0] for r in first] == [40, 41, 42, 43] and [r[3] for r in first][0] == "cti_buy"
    assert account.nonce == 44
    account.take(4), account.take(4)
    late = account.take(4)  # stock ran out: signs a whole batch while sending
    assert [r[0] for r in late] == [52, 53, 54, 55] and late[0][3] == "cti_buy"
    assert account.signed_late == 4 and account.batches == 4
