"""Deploy the five CTI contracts and record where they are.

The contracts refer to each other through immutables, so their addresses are predicted
from the operator's nonce (CREATE addresses) and all five deployments are sent at once,
then awaited: one or two blocks on a Clique chain. The founding organizations are
seeded in Membership's constructor; the operator keeps no privilege afterwards.

Founding roles: by default every founding account gets all three roles (publisher,
solver and consumer), so any account of an org can publish, run the org's Solver or buy.
Pass `roles={address: Role bits}` to narrow some accounts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from eth_account import Account
import rlp
from eth_utils import keccak, to_canonical_address, to_checksum_address
from pydantic import BaseModel, ConfigDict, ValidationError
from web3 import Web3
from web3.middleware import ExtraDataToPOAMiddleware

from testbed.chain.failover import FailoverHTTPProvider
from testbed.cti.artifacts import CONTRACT_NAMES, load_all
from testbed.cti.model import Role
from testbed.cti.tx import Signer
from testbed.errors import ChainError, StateError
from testbed.state import write_text_atomic

DEFAULT_TASK_TIMEOUT = 3600  # seconds an accepted task has to be finished
MAX_TASK_TIMEOUT = 2**32 - 1  # what Tasks takes (its deadlines are uint40); it reverts BadTimeout above


class ContractRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    address: str
    block: int
    tx_hash: str
    gas_used: int


class FoundingAccount(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    address: str
    roles: int


class Deployment(BaseModel):
    """Where the CTI contracts live on one chain, and how they got there."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    chain_id: int
    operator: str
    compiler_version: str
    source_hash: str
    task_timeout: int
    deployed_at: str
    contracts: dict[str, ContractRecord]
    founding: dict[str, list[FoundingAccount]]

    def address(self, name: str) -> str:
        return self.contracts[name].address

    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file + rename) as sorted, indented JSON."""
        path = Path(path)
        write_text_atomic(path, json.dumps(self.model_dump(), sort_keys=True, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Deployment:
        path = Path(path)
        try:
            return cls.model_validate_json(path.read_text())
        except FileNotFoundError as exc:
            raise StateError(f"no CTI deployment record at {path}", hint="run 'testbed deploy' first") from exc
        except (OSError, ValidationError) as exc:
            raise StateError(f"the CTI deployment record {path} is unreadable: {exc}") from exc


def create_address(sender: str, nonce: int) -> str:
    """The address a CREATE from `sender` with `nonce` deploys to."""
    return to_checksum_address(keccak(rlp.encode([to_canonical_address(sender), nonce]))[12:])


def connect(rpc_url: str | Sequence[str], *, timeout: float = 30.0) -> Web3:
    """An HTTP Web3 with the POA extraData middleware (Clique headers carry signatures). Given
    several URLs (one organization's nodes), a node that cannot be reached is replaced by the next."""
    if isinstance(rpc_url, str):
        provider = Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout})
    else:
        provider = FailoverHTTPProvider(list(rpc_url), request_kwargs={"timeout": timeout})
    w3 = Web3(provider)
    w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    return w3


def deploy(rpc_url: str, chain_id: int, operator_private_key: str, founding: dict[str, list[str]], *,
           roles: Mapping[str, int] | None = None, task_timeout: int = DEFAULT_TASK_TIMEOUT,
           timeout: float = 120.0, log: Callable[[str], None] | None = None) -> Deployment:
    """Deploy to the node at `rpc_url`; see deploy_with."""
    return deploy_with(connect(rpc_url), chain_id, operator_private_key, founding, roles=roles,
                       task_timeout=task_timeout, timeout=timeout, log=log)


def founding_roles(founding: Mapping[str, list[str]], roles: Mapping[str, int] | None = None
                   ) -> dict[str, list[FoundingAccount]]:
    """org name -> accounts with their role bits (all roles unless `roles` says otherwise)."""
    if not founding:
        raise ChainError("no founding organizations given")
    overrides = {to_checksum_address(a): int(r) for a, r in (roles or {}).items()}
    out: dict[str, list[FoundingAccount]] = {}
    for org, accounts in founding.items():
        if not accounts:
            raise ChainError(f"founding organization {org!r} has no accounts")
        out[org] = [FoundingAccount(address=to_checksum_address(a),
                                    roles=overrides.get(to_checksum_address(a), int(Role.ALL)))
                    for a in accounts]
    return out


def deploy_with(w3: Web3, chain_id: int, operator_private_key: str, founding: dict[str, list[str]], *,
                roles: Mapping[str, int] | None = None, task_timeout: int = DEFAULT_TASK_TIMEOUT,
                timeout: float = 120.0, log: Callable[[str], None] | None = None) -> Deployment:
    """Deploy Membership, Activity, CtiMarket, Tasks and Feedback with `w3`.

    Raises ChainError (ContractRevert for a reverting constructor) and never leaves the
    caller guessing: on success every address holds code.
    """
    log = log or (lambda _m: None)
    if not 0 < task_timeout <= MAX_TASK_TIMEOUT:
        raise ChainError(f"task_timeout {task_timeout}: the seconds an accepted task has must be 1..{MAX_TASK_TIMEOUT}",
                         hint=f"pass a task_timeout in that range (default {DEFAULT_TASK_TIMEOUT})")
    actual = w3.eth.chain_id
    if actual != chain_id:
        raise ChainError(f"the node reports chain id {actual}, expected {chain_id}",
                         hint="is the RPC URL the right network's?")
    seeded = founding_roles(founding, roles)
    operator = Account.from_key(operator_private_key)
    signer = Signer(w3, operator, timeout=timeout)
    artifacts = load_all()
    nonce = signer.next_nonce()
    addr = {name: create_address(operator.address, nonce + i) for i, name in enumerate(CONTRACT_NAMES)}
    names = list(seeded)
    args = {
        "Membership": [names, [[a.address for a in seeded[n]] for n in names],
                       [[a.roles for a in seeded[n]] for n in names]],
        "Activity": [addr["CtiMarket"], addr["Tasks"], addr["Feedback"]],
        "CtiMarket": [addr["Membership"], addr["Activity"], addr["Tasks"]],
        "Tasks": [addr["Membership"], addr["CtiMarket"], addr["Activity"], task_timeout],
        "Feedback": [addr["Membership"], addr["CtiMarket"], addr["Tasks"], addr["Activity"]],
    }
    sent: dict[str, str] = {}
    for name in CONTRACT_NAMES:
        artifact = artifacts[name]
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        data = factory.constructor(*args[name]).data_in_transaction
        tx = {"data": data, "value": 0}
        # Estimates of later contracts do not depend on earlier ones (constructors make no calls).
        sent[name] = signer.send(f"deploy {name}", tx)
        log(f"sent {name} deployment {sent[name]} (predicted address {addr[name]})")
    records: dict[str, ContractRecord] = {}
    for name in CONTRACT_NAMES:
        receipt = signer.wait(f"deploy {name}", sent[name])
        got = receipt["contractAddress"]
        if got is None or to_checksum_address(got) != addr[name]:
            raise ChainError(f"{name} was deployed at {got}, not at the predicted {addr[name]}",
                             hint="another transaction from the operator account interfered; deploy again")
        if not w3.eth.get_code(addr[name]):
            raise ChainError(f"{name} at {addr[name]} has no code after deployment")
        records[name] = ContractRecord(address=addr[name], block=receipt["blockNumber"], tx_hash=sent[name],
                                       gas_used=receipt["gasUsed"])
        log(f"{name} deployed at {addr[name]} in block {receipt['blockNumber']}")
    first = artifacts["Membership"]
    return Deployment(chain_id=chain_id, operator=operator.address, compiler_version=first.compiler_version,
                      source_hash=first.source_hash, task_timeout=task_timeout,
                      deployed_at=datetime.now(UTC).isoformat(timespec="seconds"), contracts=records,
                      founding=seeded)


def check_deployed(w3: Web3, deployment: Deployment) -> None:
    """Raise StateError unless every recorded contract has code on the chain behind `w3`."""
    if w3.eth.chain_id != deployment.chain_id:
        raise StateError(f"the deployment is for chain {deployment.chain_id}, the node is on {w3.eth.chain_id}")
    for name, record in deployment.contracts.items():
        if not w3.eth.get_code(record.address):
            raise StateError(f"{name} has no code at {record.address}",
                             hint="the chain was reset since the deployment; deploy again")

