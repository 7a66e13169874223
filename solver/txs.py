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


class TxSender:
    def __init__(self, w3, account: LocalAccount, *, gas_limit: int | None = None, tip_wei: int = GWEI) -> None:
        self.w3 = w3
        self.account = account
        self.gas_limit = gas_limit
        self.tip_wei = tip_wei
        self._chain_id: int | None = None

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
        try:
            if self.gas_limit is None:
                gas = int(self.w3.eth.estimate_gas(tx) * 1.25)
            else:
                self.w3.eth.call(tx)
                gas = self.gas_limit
        except Exception as exc:
            revert = as_revert(operation, exc)
            if revert is not None:
                raise revert from exc
            raise ChainError(f"{function}: pre-check failed: {exc}") from exc
        base = self.w3.eth.get_block("latest").get("baseFeePerGas")
        fees = ({"gasPrice": self.w3.eth.gas_price} if base is None
                else {"maxFeePerGas": 2 * base + self.tip_wei, "maxPriorityFeePerGas": self.tip_wei})
        tx.update(gas=gas, nonce=nonce, **fees)
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
