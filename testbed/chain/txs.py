"""Client-side signed transactions and inclusion tracking from block contents.

Transactions are signed here with eth-account and sent raw (eth_sendRawTransaction, in
JSON-RPC batches); no node holds a funded key. Inclusion is read from blocks, not by
polling each transaction: one eth_getBlockByNumber per new block tells which submitted
hashes were included, when, and in which block. Every record keeps its submit time, so
any latency percentile can be recomputed afterwards from the raw log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields

from eth_account import Account

from testbed.chain.rpc import RpcClient, RpcError

TRANSFER_GAS = 21_000
MAX_FEE_PER_GAS = 10 * 10**9  # a cap, not a price: the sender pays base fee (0 when idle) + tip
# The tip every transfer offers: peers relay only transactions whose tip reaches the miner's
# minimum (see clients/geth.py); 1 gwei clears any sane setting and costs 21 µETH per transfer.
TIP_PER_GAS = 10**9


@dataclass(frozen=True)
class FeeRules:
    """How a chain's transactions pay: EIP-1559 (type 2: a tip and a fee cap) on London chains,
    else legacy EIP-155 transactions at a fixed gas price (GoQuorum: pre-London, price 0).
    Each client adapter says which (`ClientAdapter.fee_rules`)."""

    london: bool = True
    gas_price: int = 0  # legacy only

    def fields(self) -> dict:
        """The fee fields of a transaction dict for eth-account."""
        if self.london:
            return {"type": 2, "maxFeePerGas": MAX_FEE_PER_GAS, "maxPriorityFeePerGas": TIP_PER_GAS}
        return {"gasPrice": self.gas_price}


LONDON = FeeRules()


@dataclass(slots=True)
class TxRecord:
    """One sent transaction, the harness's one transaction record (txs.jsonl): where it went,
    when, and where the chain put it (testbed.chain.inclusion reads that from the blocks)."""

    hash: str
    org: str
    node: str
    sender: str
    nonce: int
    kind: str = "transfer"  # transfer, or the contract call (buy, request, ...)
    submit_time: float | None = None
    included_block: int | None = None
    included_time: float | None = None  # when the harness first saw the block holding it
    block_timestamp: int | None = None
    status: str = "signed"  # signed | submitted | rejected (error: the node's reason) | included | dropped
    error: str | None = None
    reorged: int = 0  # times a block holding it left the chain (it was then read again from the canonical one)

    @property
    def latency(self) -> float | None:
        if self.submit_time is None or self.included_time is None:
            return None
        return self.included_time - self.submit_time

    def to_json(self) -> dict:
        return {f: getattr(self, f) for f in TX_FIELDS}


TX_FIELDS = tuple(f.name for f in fields(TxRecord))


@dataclass(frozen=True)
class SignedTx:
    record: TxRecord
    raw: str


def sign_transfers(private_key: str, *, chain_id: int, start_nonce: int, count: int, to: str, org: str, node: str,
                   value: int = 1, fees: FeeRules = LONDON) -> list[SignedTx]:
    account = Account.from_key(bytes.fromhex(private_key.removeprefix("0x")))
    signed: list[SignedTx] = []
    for nonce in range(start_nonce, start_nonce + count):
        tx = {"chainId": chain_id, "nonce": nonce, "to": to, "value": value, "gas": TRANSFER_GAS, "data": b"",
              **fees.fields()}
        result = account.sign_transaction(tx)
        record = TxRecord(hash="0x" + result.hash.hex().removeprefix("0x"), org=org, node=node, sender=account.address, nonce=nonce)
        signed.append(SignedTx(record=record, raw="0x" + result.raw_transaction.hex().removeprefix("0x")))
    return signed


def send_batch(rpc: RpcClient, txs: list[SignedTx], batch_size: int = 100) -> None:
    """Send pre-signed transactions in JSON-RPC batches, stamping submit time and outcome on each record."""
    for start in range(0, len(txs), batch_size):
        chunk = txs[start:start + batch_size]
        now = time.time()
        try:
            results = rpc.batch([("eth_sendRawTransaction", [t.raw]) for t in chunk], allow_errors=True)
        except RpcError as exc:
            results = [exc] * len(chunk)
        for tx, result in zip(chunk, results):
            tx.record.submit_time = now
            if isinstance(result, RpcError):
                tx.record.status, tx.record.error = "rejected", str(result).split(": ", 2)[-1]
            else:
                tx.record.status = "submitted"


# The nodes' words for a refused transaction (geth and GoQuorum; Besu in upper case with
# underscores): the one table every sender here classifies refusals with.
REFUSALS = {
    "known": ("already known", "known transaction", "already imported", "alreadyknown"),  # these very bytes
    "nonce_used": ("nonce too low", "nonce is too low", "oldnonce"),  # a mined transaction took the nonce
    "nonce_in_pool": ("replacement transaction underpriced",),  # a pending one holds it
}


def refusal_kind(error: object) -> str | None:
    """"known", "nonce_used", "nonce_in_pool", or None for any other refusal."""
    text = str(error).lower().replace("_", " ")
    return next((kind for kind, words in REFUSALS.items() if any(w in text for w in words)), None)


def is_nonce_conflict(error: object) -> bool:
    """Another transaction from this account took (or holds) that nonce; not the same bytes again."""
    return refusal_kind(error) in ("nonce_used", "nonce_in_pool")


def is_already_known(error: object) -> bool:
    """The node has these very bytes already: the transaction was sent."""
    return refusal_kind(error) == "known"


def nonce_of(rpc: RpcClient, address: str) -> int:
    return int(rpc.call("eth_getTransactionCount", address, "pending"), 16)


class TxSigner:
    """The harness's one transaction signer: one account's transactions, about 6x faster than
    eth-account. EIP-1559 (type 2) on London chains, legacy EIP-155 at a fixed gas price otherwise.

    Same bytes as `Account.sign_transaction` (unit-tested for transfers, contract calls and
    contract creation, both types): the transaction is RLP-encoded by hand and signed with
    coincurve directly, skipping eth-account's dict validation and object layers. The load signs
    thousands of transfers a second with `sign`; the CTI client (testbed.cti.tx) and the Solver
    (solver/txs.py) sign their contract calls with `sign_fields`, with fees read from the chain.
    """

    def __init__(self, private_key: str, *, chain_id: int, max_fee_per_gas: int = MAX_FEE_PER_GAS,
                 tip: int = TIP_PER_GAS, fees: FeeRules = LONDON) -> None:
        import coincurve
        import rlp
        from eth_hash.auto import keccak

        self._key = coincurve.PrivateKey(bytes.fromhex(private_key.removeprefix("0x")))
        self._rlp, self._keccak = rlp.encode, keccak
        self.address = Account.from_key(self._key.secret).address
        # tip 1 gwei, not 0: peers treat RPC-submitted txs as remote and refuse tips below the
        # miner's gas price, which geth 1.13 "sanitizes" from 0 up to 1 gwei; a tip-0 tx is then
        # only mined by the node it was sent to (one block in four, with 4 signers).
        self.chain_id, self.max_fee, self.tip, self.fees = chain_id, max_fee_per_gas, tip, fees

    def sign(self, nonce: int, to: str, value: int = 1, gas: int = TRANSFER_GAS, data: bytes = b"") -> tuple[str, str]:
        """(tx hash, raw tx), both 0x-hex, at this signer's fixed fees."""
        if not self.fees.london:
            return self._sign_legacy(nonce, to, value, gas, data, self.fees.gas_price)
        return self._sign_1559(nonce, to, value, gas, data, self.tip, self.max_fee)

    def sign_fields(self, tx: dict) -> tuple[bytes, str]:
        """(raw tx, 0x tx hash) of an eth-account style dict: nonce, gas, to (absent or None: a
        contract creation), value, data, and either maxFeePerGas + maxPriorityFeePerGas or gasPrice."""
        to, value, data = tx.get("to") or "", int(tx.get("value", 0)), tx.get("data") or b""
        if isinstance(data, str):
            data = bytes.fromhex(data.removeprefix("0x"))
        if "gasPrice" in tx:
            tx_hash, raw = self._sign_legacy(tx["nonce"], to, value, tx["gas"], data, int(tx["gasPrice"]))
        else:
            tx_hash, raw = self._sign_1559(tx["nonce"], to, value, tx["gas"], data, int(tx["maxPriorityFeePerGas"]),
                                           int(tx["maxFeePerGas"]))
        return bytes.fromhex(raw[2:]), tx_hash

    def _sign_1559(self, nonce: int, to: str, value: int, gas: int, data: bytes, tip: int, max_fee: int) -> tuple[str, str]:
        fields = [self.chain_id, nonce, tip, max_fee, gas, bytes.fromhex(to.removeprefix("0x")), value, data, []]
        signature = self._key.sign_recoverable(self._keccak(b"\x02" + self._rlp(fields)), hasher=None)
        raw = b"\x02" + self._rlp(fields + [signature[64], int.from_bytes(signature[:32], "big"),
                                            int.from_bytes(signature[32:64], "big")])
        return "0x" + self._keccak(raw).hex(), "0x" + raw.hex()

    def _sign_legacy(self, nonce: int, to: str, value: int, gas: int, data: bytes, gas_price: int) -> tuple[str, str]:
        """EIP-155: sign rlp([nonce, gasPrice, gas, to, value, data, chainId, 0, 0]); v = recid + 2*chainId + 35."""
        fields = [nonce, gas_price, gas, bytes.fromhex(to.removeprefix("0x")), value, data]
        signature = self._key.sign_recoverable(self._keccak(self._rlp(fields + [self.chain_id, 0, 0])), hasher=None)
        raw = self._rlp(fields + [signature[64] + 2 * self.chain_id + 35, int.from_bytes(signature[:32], "big"),
                                  int.from_bytes(signature[32:64], "big")])
        return "0x" + self._keccak(raw).hex(), "0x" + raw.hex()
