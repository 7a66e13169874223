"""Signing with an explicit nonce, so the journal owns every nonce the Solver uses.

`sign` pre-checks the call (a revert raises ContractRevert before anything is signed),
fixes gas and fees and signs; the caller journals the raw bytes and only then sends them.
`send` is idempotent: re-sending bytes the node already has, or has mined, is not an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from web3.exceptions import TransactionNotFound

from testbed.cti.errors import as_revert
from testbed.cti.tx import contract_tx
from testbed.errors import ChainError

GWEI = 10**9
KNOWN = ("already known", "known transaction", "already imported", "alreadyknown")
USED = ("nonce too low", "nonce is too low", "oldnonce")


@dataclass(frozen=True)
class SignedTx:
    raw: bytes
    tx_hash: str
    nonce: int


CACHED_GAS = ("accept", "finish")  # calls whose gas does not grow with their arguments (reject's reason does)


class TxSender:
    """Gas: `gas_limit` for every call if given; else estimated (x1.25) on the first accept and
    finish and reused for the next ones, each still pre-checked with one eth_call (an estimate
    is a search of a dozen executions); `forget_gas` after a revert estimates again. Fees:
    read once per block (`new_block`)."""

    def __init__(self, w3, account: LocalAccount, *, gas_limit: int | None = None, tip_wei: int = GWEI) -> None:
        self.w3 = w3
        self.account = account
        self.gas_limit = gas_limit
        self.tip_wei = tip_wei
        self._chain_id: int | None = None
        self._gas: dict[str, int] = {}
        self._fees: dict[str, int] | None = None

    def new_block(self) -> None:
        self._fees = None

    def forget_gas(self, function: str) -> None:
        self._gas.pop(function, None)

    def _fees_now(self) -> dict[str, int]:
        if self._fees is None:
            base = self.w3.eth.get_block("latest").get("baseFeePerGas")
            self._fees = ({"gasPrice": self.w3.eth.gas_price} if base is None
                          else {"maxFeePerGas": 2 * base + self.tip_wei, "maxPriorityFeePerGas": self.tip_wei})
        return self._fees

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self.w3.eth.chain_id
        return self._chain_id

    def pending_nonce(self) -> int:
        return self.w3.eth.get_transaction_count(self.account.address, "pending")

    def sign(self, contract, function: str, args: list[Any], nonce: int) -> SignedTx:
        operation = f"{contract.address[:10]}.{function}"
        tx: dict[str, Any] = {**contract_tx(contract, function, args), "from": self.account.address,
                              "chainId": self.chain_id}
        known = self.gas_limit if self.gas_limit is not None else self._gas.get(function)
        try:
            if known is None:
                gas = int(self.w3.eth.estimate_gas(tx) * 1.25)
                if function in CACHED_GAS:
                    self._gas[function] = gas
            else:
                self.w3.eth.call(tx)
                gas = known
        except Exception as exc:
            revert = as_revert(operation, exc)
            if revert is not None:
                raise revert from exc
            raise ChainError(f"{function}: pre-check failed: {exc}") from exc
        tx.update(gas=gas, nonce=nonce, **self._fees_now())
        signed = self.account.sign_transaction(tx)
        return SignedTx(bytes(signed.raw_transaction), "0x" + bytes(signed.hash).hex(), nonce)

    def send(self, raw: bytes) -> str:
        """Send (or re-send) signed bytes: "sent", "known" (the node has them) or "used" (the
        nonce is taken: mined, normally by these very bytes). Other failures raise."""
        try:
            self.w3.eth.send_raw_transaction(raw)
            return "sent"
        except Exception as exc:
            text = str(exc).lower().replace("_", " ")
            if any(k in text for k in KNOWN):
                return "known"
            if any(k in text for k in USED):
                return "used"
            raise

    def receipt(self, tx_hash: str):
        try:
            return self.w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None
