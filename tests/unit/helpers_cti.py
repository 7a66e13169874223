"""Shared set-up for the CTI contract tests: an in-process py-evm chain (eth-tester), funded
accounts, and a deployed consortium of three orgs with single-role accounts.

Tests import the fixtures from here (`from tests.unit.helpers_cti import world, ...`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from eth_account import Account
from eth_tester import EthereumTester, PyEVMBackend
from eth_utils import keccak
from web3 import EthereumTesterProvider, Web3

from testbed.cti import CtiClient, Deployment, Role, deploy_with

ETHER = 10**18
ORGS = ("acme", "bravo", "cyber")
ROLES = {"pub": Role.PUBLISHER, "sol": Role.SOLVER, "con": Role.CONSUMER}
TIMEOUT = 3600


def key_for(label: str) -> str:
    return "0x" + keccak(text=f"cti-test:{label}").hex()


def address_for(label: str) -> str:
    return Account.from_key(key_for(label)).address


@dataclass
class Chain:
    tester: EthereumTester
    w3: Web3

    def fund(self, addresses, amount: int = 100 * ETHER) -> None:
        rich = self.tester.get_accounts()[0]
        for addr in addresses:
            self.w3.eth.send_transaction({"from": rich, "to": addr, "value": amount})

    def advance(self, seconds: int) -> None:
        now = self.w3.eth.get_block("latest")["timestamp"]
        self.tester.time_travel(now + seconds)
        self.tester.mine_blocks(1)  # so calls at "latest" see the new time too


def new_chain() -> Chain:
    tester = EthereumTester(PyEVMBackend())
    return Chain(tester, Web3(EthereumTesterProvider(tester)))


@dataclass
class World:
    """Three orgs (ids 1..3) with accounts <org>.pub/.sol/.con, plus an outsider."""

    chain: Chain
    deployment: Deployment
    snapshot: int
    labels: list[str] = field(default_factory=list)

    @property
    def w3(self) -> Web3:
        return self.chain.w3

    def client(self, label: str, *, estimate: bool = False) -> CtiClient:
        """A client for one account; a fixed gas limit (with an eth_call pre-check) unless
        `estimate`, because eth-tester's gas estimate is a slow binary search."""
        return CtiClient(self.w3, self.deployment, key_for(label), gas_limit=None if estimate else 1_000_000)

    def org_id(self, name: str) -> int:
        return ORGS.index(name) + 1

    def reset(self) -> None:
        self.chain.tester.revert_to_snapshot(self.snapshot)


def build_world(orgs=ORGS) -> World:
    chain = new_chain()
    labels = [f"{o}.{r}" for o in orgs for r in ROLES] + ["outsider", "newcomer", "operator"]
    chain.fund([address_for(label) for label in labels])
    founding = {o: [address_for(f"{o}.{r}") for r in ROLES] for o in orgs}
    roles = {address_for(f"{o}.{r}"): int(bits) for o in orgs for r, bits in ROLES.items()}
    deployment = deploy_with(chain.w3, chain.w3.eth.chain_id, key_for("operator"), founding, roles=roles,
                             task_timeout=TIMEOUT)
    return World(chain, deployment, chain.tester.take_snapshot(), labels)


@pytest.fixture(scope="module")
def world_once() -> World:
    return build_world()


@pytest.fixture
def world(world_once: World) -> World:
    """A fresh deployed consortium for each test (eth-tester snapshot revert)."""
    world_once.reset()
    return world_once


def content_hash(text: str) -> bytes:
    return keccak(text=text)


class JsonRpcBatches:
    """What a geth node has and eth-tester lacks: JSON-RPC batches, answered the way geth answers
    (hex results, an error object with the revert data per failed call), one call after another.
    `with JsonRpcBatches(w3):` lets the Solver take its batched paths against py-evm."""

    def __init__(self, w3: Web3) -> None:
        self.w3, self.batches = w3, []

    def __enter__(self) -> "JsonRpcBatches":
        self.w3.provider.make_batch_request = self.answer
        return self

    def __exit__(self, *exc) -> None:
        del self.w3.provider.make_batch_request

    def answer(self, requests: list[tuple[str, list]]) -> list[dict]:
        self.batches.append([method for method, _ in requests])
        return [self._one(method, params) for method, params in requests]

    def _one(self, method: str, params: list) -> dict:
        from web3.exceptions import TransactionNotFound

        from testbed.cti.errors import revert_data

        try:
            result = self.w3.manager.request_blocking(method, params)
        except TransactionNotFound:
            return {"result": None}
        except Exception as exc:
            data = revert_data(exc)
            return {"error": {"code": 3 if data is not None else -32000, "message": str(exc),
                              **({"data": "0x" + data.hex()} if data else {})}}
        if method == "eth_getTransactionReceipt":
            return {"result": result and {"status": hex(result["status"]), "blockNumber": hex(result["blockNumber"])}}
        return {"result": result if isinstance(result, str) else "0x" + bytes(result).hex()}
