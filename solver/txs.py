"""Signing with an explicit nonce, so the journal owns every nonce the Solver uses.

`sign` pre-checks the call (a revert raises ContractRevert before anything is signed),
fixes gas and fees and signs; the caller journals the raw bytes and only then sends them.
`send` is idempotent: re-sending bytes the node already has, or has mined, is not an error.
A busy Solver uses the batch forms: `precheck_batch` (one eth_call per call, one round trip)
and `send_batch`, with the same outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from web3.exceptions import TransactionNotFound

from testbed.chain.rpc import ProviderBatch, RpcError
from testbed.chain.txs import TxSigner, refusal_kind
from testbed.cti.errors import as_revert
from testbed.cti.tx import contract_tx, fees_now
from testbed.errors import ChainError

GWEI = 10**9


@dataclass(frozen=True)
class SignedTx:
    raw: bytes
    tx_hash: str
    nonce: int


# calls whose gas does not grow with their arguments (reject's reason does; a URI is the Solver's own, short)
CACHED_GAS = ("deliver", "accept", "finish")


class TxSender:
    """Gas: `gas_limit` for every call if given; else estimated (x1.25) on the first deliver,
    accept and finish and reused for the next ones, each still pre-checked with one eth_call (an estimate
    is a search of a dozen executions); `forget_gas` after a revert estimates again. Fees:
    read once per block (`new_block`)."""

    def __init__(self, w3, account: LocalAccount, *, gas_limit: int | None = None, tip_wei: int = GWEI) -> None:
        self.w3 = w3
        self.rpc = ProviderBatch(w3)  # the batch forms (and the Solver's batched reads)
        self.account = account
        self.gas_limit = gas_limit
        self.tip_wei = tip_wei
        self._chain_id: int | None = None
        self._gas: dict[str, int] = {}
        self._fees: dict[str, int] | None = None
        self._signer: TxSigner | None = None

    def new_block(self) -> None:
        self._fees = None

    def forget_gas(self, function: str) -> None:
        self._gas.pop(function, None)

    def _fees_now(self) -> dict[str, int]:
        if self._fees is None:  # read once per block
            self._fees = fees_now(self.w3, self.tip_wei)
        return self._fees

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self.w3.eth.chain_id
        return self._chain_id

    def pending_nonce(self) -> int:
        return self.w3.eth.get_transaction_count(self.account.address, "pending")

    def mined_nonce(self) -> int:
        """The account's next nonce as the latest block sees it: every lower nonce is in a block."""
        return self.w3.eth.get_transaction_count(self.account.address, "latest")

    def build(self, contract, function: str, args: list[Any]) -> dict[str, Any]:
        """The unsigned call (no gas, nonce or fees yet)."""
        return {**contract_tx(contract, function, args), "from": self.account.address, "chainId": self.chain_id}

    def known_gas(self, function: str) -> int | None:
        return self.gas_limit if self.gas_limit is not None else self._gas.get(function)

    def sign(self, contract, function: str, args: list[Any], nonce: int) -> SignedTx:
        """Pre-check (estimate, or one eth_call when the gas is known), then sign."""
        operation = f"{contract.address[:10]}.{function}"
        tx = self.build(contract, function, args)
        known = self.known_gas(function)
        try:
            if known is None:
                gas = int(self.w3.eth.estimate_gas(tx) * 1.25)
                if function in CACHED_GAS:
                    self._gas[function] = gas
            else:
                self.w3.eth.call(tx)
                gas = known
        except Exception as exc:  # noqa: BLE001 - web3 and eth-tester raise different types for a revert
            revert = as_revert(operation, exc)
            if revert is not None:
                raise revert from exc
            raise ChainError(f"{function}: pre-check failed: {exc}") from exc
        return self.sign_tx(tx, gas, nonce)

    def sign_tx(self, tx: dict[str, Any], gas: int, nonce: int) -> SignedTx:
        if self._signer is None:  # the one signer of the harness (testbed.chain.txs)
            self._signer = TxSigner(self.account.key.hex(), chain_id=self.chain_id)
        raw, tx_hash = self._signer.sign_fields({**tx, "gas": gas, "nonce": nonce, **self._fees_now()})
        return SignedTx(raw, tx_hash, nonce)

    def precheck_batch(self, calls: list[tuple[str, dict[str, Any], int]]) -> list[ChainError | None]:
        """One JSON-RPC batch of eth_call for (function, tx, gas) calls whose gas is known, each run
        with that gas: None (passes), a ContractRevert, or a ChainError (e.g. out of gas: `forget_gas`).
        Raises when the provider has no batches (the caller then checks one by one)."""
        requests = [("eth_call", [{"from": tx["from"], "to": tx["to"], "data": tx["data"], "value": hex(tx.get("value", 0)),
                                   "gas": hex(gas)}, "latest"]) for _, tx, gas in calls]
        answers = self.rpc.batch(requests, allow_errors=True)
        verdicts: list[ChainError | None] = []
        for (function, tx, _), answer in zip(calls, answers):
            if not isinstance(answer, RpcError):
                verdicts.append(None)
                continue
            verdicts.append(as_revert(f"{tx['to'][:10]}.{function}", answer)
                            or ChainError(f"{function}: pre-check failed: {answer}"))
        return verdicts

    def send_batch(self, raws: list[bytes]) -> list[str | Exception]:
        """Send (or re-send) signed bytes in one JSON-RPC batch; per transaction what `send` returns
        or the failure. Raises when the provider has no batches."""
        answers = self.rpc.batch([("eth_sendRawTransaction", ["0x" + raw.hex()]) for raw in raws], allow_errors=True)
        return [_send_outcome(a) if isinstance(a, RpcError) else "sent" for a in answers]

    def send(self, raw: bytes) -> str:
        """Send (or re-send) signed bytes: "sent", "known" (the node has them) or "used" (the
        nonce is taken: mined, normally by these very bytes). Other failures raise."""
        try:
            self.w3.eth.send_raw_transaction(raw)
            return "sent"
        except Exception as exc:  # noqa: BLE001 - web3 and eth-tester raise different types for a refused send; others re-raised
            outcome = _send_outcome(exc)
            if isinstance(outcome, Exception):
                raise
            return outcome

    def receipt(self, tx_hash: str):
        try:
            return self.w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None


def _send_outcome(exc: Exception) -> str | Exception:
    kind = refusal_kind(exc)
    return {"known": "known", "nonce_used": "used"}.get(kind, exc)

