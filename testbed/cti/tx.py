"""Client-side signing: build, sign with eth-account, send raw, wait for the receipt.

No account is ever unlocked on a node: every transaction is signed here and sent with
eth_sendRawTransaction. Fees follow London (EIP-1559) when the chain has a base fee,
else a legacy gas price. Reverts surface as ContractRevert with the contract's reason.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import TimeExhausted

from testbed.chain.txs import TxSigner, is_already_known, is_nonce_conflict
from testbed.cti.errors import as_revert
from testbed.errors import ChainError

GWEI = 10**9


NONCE_RETRIES = 3



def fees_now(w3, tip_wei: int) -> dict[str, int]:
    """The fee fields of a transaction sent now: London (EIP-1559) when the latest block has a base
    fee (max fee twice the base fee plus the tip), else a legacy gas price (GoQuorum: 0)."""
    base = w3.eth.get_block("latest").get("baseFeePerGas")
    if base is None:
        return {"gasPrice": w3.eth.gas_price}
    return {"maxFeePerGas": 2 * base + tip_wei, "maxPriorityFeePerGas": tip_wei}

class Signer:
    """One account's transactions. Keeps its own nonce so several can be in flight."""

    def __init__(self, w3: Web3, account: LocalAccount | str, *, timeout: float = 120.0,
                 tip_wei: int = 1 * GWEI, gas_margin: float = 1.25, gas_limit: int | None = None) -> None:
        """`gas_limit`: use this gas for every tx instead of estimating it (an eth_call still
        checks for a revert first): one cheap call instead of a gas search per tx."""
        self.w3 = w3
        self.account: LocalAccount = account if isinstance(account, LocalAccount) else Account.from_key(account)
        self.timeout = timeout
        self.tip_wei = tip_wei
        self.gas_margin = gas_margin
        self.gas_limit = gas_limit
        self._nonce: int | None = None
        self._lock = threading.Lock()
        self._chain_id: int | None = None
        self._signer: TxSigner | None = None

    def signer(self) -> TxSigner:
        """The account's signer (testbed.chain.txs: the one signer of the harness)."""
        if self._signer is None:
            self._signer = TxSigner(self.account.key.hex(), chain_id=self.chain_id())
        return self._signer

    @property
    def address(self) -> str:
        return self.account.address

    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self.w3.eth.chain_id
        return self._chain_id

    def next_nonce(self) -> int:
        """The nonce the next signed transaction will use."""
        with self._lock:
            if self._nonce is None:
                self._nonce = self.w3.eth.get_transaction_count(self.address, "pending")
            return self._nonce

    def fees(self) -> dict[str, int]:
        return fees_now(self.w3, self.tip_wei)

    def sign(self, operation: str, tx: dict[str, Any], *, gas: int | None = None) -> tuple[bytes, str]:
        """Fill in chain id, nonce, gas and fees; return (raw signed tx, tx hash).

        Gas is estimated (with a margin) unless given; an estimate that reverts raises
        ContractRevert before anything is sent and before a nonce is used.
        """
        tx = {**tx, "from": self.address, "chainId": self.chain_id()}
        tx.setdefault("value", 0)
        if gas is None:
            try:
                if self.gas_limit is None:
                    gas = int(self.w3.eth.estimate_gas(tx) * self.gas_margin)
                else:
                    self.w3.eth.call(tx)
                    gas = self.gas_limit
            except Exception as exc:  # web3 / eth-tester raise different types for a revert
                raise self._error(operation, exc) from exc
        tx["gas"] = gas
        tx.update(self.fees())
        with self._lock:
            if self._nonce is None:
                self._nonce = self.w3.eth.get_transaction_count(self.address, "pending")
            tx["nonce"] = self._nonce
            signed = self.signer().sign_fields(tx)
            self._nonce += 1
        return signed

    def send(self, operation: str, tx: dict[str, Any], *, gas: int | None = None) -> str:
        """Sign and send; return the tx hash without waiting.

        The harness gives every signing purpose accounts of its own, but an operator's wallet
        may share one: a nonce another sender took first is re-read from the node and the tx
        signed again, up to NONCE_RETRIES times. "already known" means these very bytes are in
        the pool (a resend after a lost answer): the tx is sent. Any other refusal is raised."""
        for attempt in range(NONCE_RETRIES + 1):
            raw, tx_hash = self.sign(operation, tx, gas=gas)
            try:
                self.w3.eth.send_raw_transaction(raw)
                return tx_hash
            except Exception as exc:  # noqa: BLE001 - web3 and eth-tester raise different types for a refused send
                if is_already_known(exc):
                    return tx_hash
                self._nonce = None  # the node may not have taken it: re-read the nonce next time
                if attempt == NONCE_RETRIES or not is_nonce_conflict(exc):
                    raise self._error(operation, exc) from exc
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def wait(self, operation: str, tx_hash: str, call: dict[str, Any] | None = None):
        """The receipt of a sent tx; ContractRevert if it reverted, ChainError on timeout."""
        try:
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.timeout, poll_latency=0.1)
        except TimeExhausted as exc:
            raise ChainError(f"{operation}: transaction {tx_hash} not included within {self.timeout:.0f} s",
                             hint="is the network sealing blocks?") from exc
        if receipt["status"] != 1:
            raise self._replay(operation, receipt, call)
        return receipt

    def transact(self, operation: str, tx: dict[str, Any], *, gas: int | None = None):
        return self.wait(operation, self.send(operation, tx, gas=gas), tx)

    def _replay(self, operation: str, receipt, call: dict[str, Any] | None) -> ChainError:
        """Re-run a reverted tx as a call at its block to learn the reason."""
        if call is not None:
            try:
                self.w3.eth.call({k: v for k, v in call.items() if k in ("to", "data", "value")}
                                 | {"from": self.address}, receipt["blockNumber"])
            except Exception as exc:  # noqa: BLE001 - web3 and eth-tester raise different types for a revert
                revert = as_revert(operation, exc)
                if revert is not None:
                    return revert
        return ChainError(f"{operation}: transaction 0x{bytes(receipt['transactionHash']).hex()} reverted "
                          f"in block {receipt['blockNumber']} (gas used {receipt['gasUsed']})")

    def _error(self, operation: str, exc: Exception) -> ChainError:
        return as_revert(operation, exc) or ChainError(f"{operation} failed: {exc}")


def contract_tx(contract: Contract, function: str, args: Sequence[Any] = (), value: int = 0) -> dict[str, Any]:
    """The unsigned tx fields {to, data, value} calling `function(*args)` on `contract`."""
    return {"to": contract.address, "data": contract.encode_abi(function, args=list(args)), "value": value}
