"""Typed wrappers for every CTI operation, for one organization account.

    client = CtiClient(w3, deployment, private_key)
    token = client.publish("5f1c...", "APT-X C2 domains", content_hash, price_wei=10**15, supply=100).result
    other.buy(token)                       # pays price; change refunded
    task = other.request(token, pubkey).result
    client.accept(task); client.finish(task, result_hash, "https://...")
    other.rate(task, 5)

State-changing calls sign locally, wait for the receipt and return `Sent`; a revert
raises ContractRevert (a ChainError) whose `error` is the Solidity error name and whose
message gives the reason in words.

An id a call creates (a token, a task, a proposal) is taken from the receipt only once the
receipt's block is `confirmations` deep and still canonical, and is then checked against the
chain's state (a task's consumer and token, a listing's MISP event): on Clique a receipt read
at the tip can come from a block a reorg replaces, where the same transaction created another
id. A mismatch that does not settle within the timeout is an IdMismatch naming both values.
"""

from __future__ import annotations

import time
from dataclasses import replace
from collections.abc import Callable, Sequence
from typing import Any

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_utils import event_abi_to_log_topic, to_checksum_address
from eth_utils.abi import get_abi_output_types
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import TransactionNotFound
from web3.logs import DISCARD

from testbed.cti.artifacts import CONTRACT_NAMES, load
from testbed.cti.deploy import Deployment
from testbed.cti.errors import as_revert
from testbed.cti.model import Kind, Listing, Org, Role, Sent, Task, TaskState
from testbed.cti.tx import Signer, contract_tx
from testbed.errors import ChainError

ZERO = "0x" + "00" * 20


def bind(w3: Web3, deployment: Deployment) -> dict[str, Contract]:
    """name -> web3 Contract at the deployed address."""
    return {n: w3.eth.contract(address=deployment.address(n), abi=load(n).abi) for n in CONTRACT_NAMES}


class IdMismatch(ChainError):
    """The id a transaction created is not, on the chain, what the transaction asked for."""


class CtiClient:
    def __init__(self, w3: Web3, deployment: Deployment, account: LocalAccount | str, *,
                 timeout: float = 120.0, gas_limit: int | None = None, confirmations: int = 0) -> None:
        """`confirmations`: blocks on top of a receipt before the id it created is trusted
        (the engine's, `testbed.engines`; 0 on BFT engines)."""
        self.w3 = w3
        self.deployment = deployment
        self.confirmations = confirmations
        self.account = account if isinstance(account, LocalAccount) else Account.from_key(account)
        self.signer = Signer(w3, self.account, timeout=timeout, gas_limit=gas_limit)
        self.c = bind(w3, deployment)
        self._task_selector: str | None = None

    @property
    def address(self) -> str:
        return self.account.address

    # ---- plumbing ----------------------------------------------------------------------

    def _send(self, contract: str, function: str, *args: Any, value: int = 0,
              created: tuple[str, str, str] | None = None,
              check: Callable[[int], str | None] | None = None) -> Sent:
        """`created`: (contract, event, argument) carrying the id the call creates; `check(id)`
        returns None when the chain's record of that id is what this call asked for, else how
        it differs."""
        operation = f"{contract}.{function}"
        tx = contract_tx(self.c[contract], function, args, value)
        receipt = self.signer.transact(operation, tx)
        result = None
        if created is not None:
            receipt, result = self._created_id(operation, receipt, created, check)
        # pre-London chains (GoQuorum) have no effectiveGasPrice in receipts: the tx's gas price
        price = receipt.get("effectiveGasPrice")
        if price is None:
            price = self.w3.eth.get_transaction(receipt["transactionHash"]).get("gasPrice", 0)
        return Sent(tx_hash=_hex(receipt["transactionHash"]), block=receipt["blockNumber"],
                    gas_used=receipt["gasUsed"], fee_wei=receipt["gasUsed"] * price, result=result)

    def _id_in(self, receipt, created: tuple[str, str, str]) -> int | None:
        source, event, arg = created
        address = self.c[source].address
        logs = [entry for entry in receipt["logs"] if entry["address"].lower() == address.lower()]
        found = self.c[source].events[event]().process_receipt({**receipt, "logs": logs}, errors=DISCARD)
        return int(found[0]["args"][arg]) if found else None

    def _created_id(self, operation: str, receipt, created: tuple[str, str, str],
                    check: Callable[[int], str | None] | None):
        """(receipt, id) once the receipt's block is `confirmations` deep, still canonical, and the
        id passes `check`; re-read until the signer's timeout, then IdMismatch with both values."""
        tx_hash = receipt["transactionHash"]
        deadline = time.monotonic() + self.signer.timeout
        problem = "not confirmed yet"
        while True:
            confirmed = self._confirmed(tx_hash)
            if confirmed is not None:
                receipt, result = confirmed, self._id_in(confirmed, created)
                if result is None:
                    problem = f"no {created[1]} event of {created[0]} in the receipt"
                else:
                    problem = check(result) if check is not None else None
                    if problem is None:
                        return receipt, result
            if time.monotonic() > deadline:
                raise IdMismatch(f"{operation}: transaction {_hex(tx_hash)}: {problem}",
                                 hint="a reorg moved the transaction and the chain did not settle; compare the "
                                      "nodes with 'testbed status'")
            time.sleep(0.25)

    def _confirmed(self, tx_hash):
        """The node's receipt when it sits in its canonical block `confirmations` deep, else None."""
        try:
            receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:  # moved by a reorg, not yet in the new branch
            return None
        if self.w3.eth.block_number < receipt["blockNumber"] + self.confirmations:
            return None
        if bytes(self.w3.eth.get_block(receipt["blockNumber"])["hash"]) != bytes(receipt["blockHash"]):
            return None
        return receipt

    def _call(self, contract: str, function: str, *args: Any) -> Any:
        try:
            return self.c[contract].functions[function](*args).call({"from": self.address})
        except Exception as exc:  # noqa: BLE001 - web3 and eth-tester raise different types for a revert; others re-raised
            revert = as_revert(f"{contract}.{function}", exc)
            if revert is None:
                raise
            raise revert from exc

    # ---- membership --------------------------------------------------------------------

    def propose_admission(self, name: str, accounts: Sequence[str], roles: Sequence[int]) -> Sent:
        """Propose a new org; `result` is the proposal id. Passes at once with one member."""
        return self._send("Membership", "proposeAdmission", name, list(accounts), [int(r) for r in roles],
                          created=("Membership", "ProposalCreated", "proposal"))

    def propose_removal(self, org: int) -> Sent:
        return self._send("Membership", "proposeRemoval", org, created=("Membership", "ProposalCreated", "proposal"))

    def vote(self, proposal: int, support: bool = True) -> Sent:
        return self._send("Membership", "vote", proposal, support)

    # ---- catalog and sales -------------------------------------------------------------

    def publish(self, misp_uuid: str, title: str, content_hash: bytes, price_wei: int, supply: int,
                solvers: Sequence[str] | None = None) -> Sent:
        """List a CTI and mint `supply` tokens; `result` is the token id. Solvers default to
        this account (it must hold the solver role then)."""
        solvers = [self.address] if solvers is None else list(solvers)
        def check(token: int) -> str | None:
            listing = self.listing(token)
            if listing.misp_uuid == misp_uuid and listing.title == title:
                return None
            return (f"listing {token} on the chain is MISP event {listing.misp_uuid} ({listing.title!r}); "
                    f"this transaction listed {misp_uuid} ({title!r})")

        return self._send("CtiMarket", "publish", misp_uuid, title, bytes(content_hash), price_wei, supply,
                          solvers, created=("CtiMarket", "Listed", "tokenId"), check=check)

    def mint(self, token_id: int, amount: int) -> Sent:
        return self._send("CtiMarket", "mint", token_id, amount)

    def modify(self, token_id: int, title: str, price_wei: int) -> Sent:
        return self._send("CtiMarket", "modify", token_id, title, price_wei)

    def set_solver(self, token_id: int, solver: str, allowed: bool = True) -> Sent:
        return self._send("CtiMarket", "setSolver", token_id, solver, allowed)

    def withdraw_listing(self, token_id: int) -> Sent:
        return self._send("CtiMarket", "withdrawListing", token_id)

    def buy(self, token_id: int, amount: int = 1, *, value: int | None = None) -> Sent:
        """Buy tokens paying `value` (default: exactly price x amount)."""
        if value is None:
            value = self.listing(token_id).price * amount
        return self._send("CtiMarket", "buy", token_id, amount, value=value)

    def withdraw_proceeds(self) -> Sent:
        return self._send("CtiMarket", "withdrawProceeds")

    # ---- tasks -------------------------------------------------------------------------

    def request(self, token_id: int, encryption_key: bytes) -> Sent:
        """Spend one token to request the data; `result` is the task id."""
        return self._send("Tasks", "request", token_id, bytes(encryption_key),
                          created=("Tasks", "TaskChanged", "taskId"), check=self._request_check(token_id))

    def _request_check(self, token_id: int):
        """After a request is mined: the task it created is this account's, on this token."""
        def check(task_id: int) -> str | None:
            task = self.task(task_id, details=False)
            if task.consumer.lower() == self.address.lower() and task.token_id == token_id:
                return None
            return (f"task {task_id} on the chain has consumer {task.consumer} and token {task.token_id}; "
                    f"this transaction asked consumer {self.address} and token {token_id}")

        return check

    def buy_and_request(self, token_id: int, encryption_key: bytes, *, value: int | None = None) -> Sent:
        """Buy one token and spend it on a request in one transaction (paying `value`, default the
        price); `result` is the task id."""
        if value is None:
            value = self.listing(token_id).price
        return self._send("Tasks", "buyAndRequest", token_id, bytes(encryption_key), value=value,
                          created=("Tasks", "TaskChanged", "taskId"), check=self._request_check(token_id))

    def accept(self, task_id: int) -> Sent:
        return self._send("Tasks", "accept", task_id)

    def finish(self, task_id: int, result_hash: bytes, result_uri: str) -> Sent:
        return self._send("Tasks", "finish", task_id, bytes(result_hash), result_uri)

    def deliver(self, task_id: int, result_hash: bytes, result_uri: str) -> Sent:
        """Accept and finish a pending task in one transaction."""
        return self._send("Tasks", "deliver", task_id, bytes(result_hash), result_uri)

    def reject(self, task_id: int, reason: str) -> Sent:
        return self._send("Tasks", "reject", task_id, reason)

    def cancel(self, task_id: int) -> Sent:
        return self._send("Tasks", "cancel", task_id)

    def expire(self, task_id: int) -> Sent:
        return self._send("Tasks", "expire", task_id)

    # ---- feedback ----------------------------------------------------------------------

    def rate(self, task_id: int, rating: int, comment: str = "") -> Sent:
        return self._send("Feedback", "rate", task_id, rating, comment)

    def dispute(self, task_id: int, received_hash: bytes, reason: str) -> Sent:
        """Record that the delivery of `task_id` hashed to `received_hash`, not the listed contentHash."""
        return self._send("Feedback", "dispute", task_id, bytes(received_hash), reason)

    def like(self, token_id: int) -> Sent:
        return self._send("Feedback", "like", token_id)

    # ---- views -------------------------------------------------------------------------

    def org_of(self, account: str | None = None) -> tuple[int, Role]:
        """(org id, roles) of an account; (0, 0) if it belongs to no member org."""
        org, roles = self._call("Membership", "orgOf", account or self.address)
        return org, Role(roles)

    def orgs(self) -> list[Org]:
        out = []
        for org_id in range(1, self._call("Membership", "orgCount") + 1):
            name, active, accounts = self._call("Membership", "orgInfo", org_id)
            out.append(Org(org_id, name, active, tuple(accounts)))
        return out

    def proposal(self, proposal_id: int) -> dict[str, Any]:
        p = self._call("Membership", "proposal", proposal_id)
        keys = ("kind", "status", "proposer_org", "target_org", "name", "accounts", "roles", "yes", "no")
        return dict(zip(keys, p))

    def activity(self, org: int | None = None) -> dict[str, int]:
        """All counters of an org (default: this account's), by Kind name in lower case."""
        if org is None:
            org = self.org_of()[0]
        counts = self._call("Activity", "countsOf", org)
        return {kind.name.lower(): int(counts[kind]) for kind in Kind}

    def listing(self, token_id: int) -> Listing:
        org, withdrawn, price, content_hash, uuid, title = self._call("CtiMarket", "listing", token_id)
        return Listing(token_id, org, withdrawn, price, bytes(content_hash), uuid, title)

    def is_solver(self, token_id: int, account: str) -> bool:
        return self._call("CtiMarket", "isSolver", token_id, account)

    def listing_count(self) -> int:
        return self._call("CtiMarket", "listingCount")

    def balance(self, token_id: int, account: str | None = None) -> int:
        return self._call("CtiMarket", "balanceOf", account or self.address, token_id)

    def inventory(self, token_id: int) -> int:
        return self._call("CtiMarket", "inventory", token_id)

    def proceeds(self, org: int | None = None) -> int:
        return self._call("CtiMarket", "proceeds", self.org_of()[0] if org is None else org)

    def task(self, task_id: int, *, details: bool = True, from_block: int = 0) -> Task:
        """A task as stored; with `details` also what only its events carry (the consumer's key,
        the result hash and URI, a rejection's reason), read with one eth_getLogs from `from_block`
        (the request's block when known)."""
        task = _task(task_id, self._call("Tasks", "task", task_id))
        return self.task_details(task, from_block) if details else task

    def task_details(self, task: Task, from_block: int = 0) -> Task:
        """`task` with the fields its Requested, Finished and Rejected events carry."""
        tasks = self.c["Tasks"]
        events = {event_abi_to_log_topic(e.abi): e for e in (tasks.events.Requested, tasks.events.Finished,
                                                               tasks.events.Rejected)}
        logs = self.w3.eth.get_logs({"address": tasks.address, "fromBlock": from_block, "toBlock": "latest",
                                     "topics": [["0x" + t.hex() for t in events], "0x" + task.task_id.to_bytes(32, "big").hex()]})
        fields: dict[str, Any] = {}
        for entry in logs:
            args = events[bytes(entry["topics"][0])]().process_log(entry)["args"]
            if "encryptionKey" in args:
                fields["encryption_key"] = bytes(args["encryptionKey"])
            elif "resultHash" in args:
                fields.update(result_hash=bytes(args["resultHash"]), result_uri=args["resultUri"])
            else:
                fields["reason"] = args["reason"]
        return replace(task, **fields)

    def task_call(self, task_id: int) -> dict[str, str]:
        """The eth_call parameters that read task(task_id): for a JSON-RPC batch of many (`decode_task`)."""
        if self._task_selector is None:  # web3's encode_abi per call was a tenth of a busy Solver's time
            self._task_selector = self.c["Tasks"].encode_abi("task", args=[0])[:10]
        return {"from": self.address, "to": self.c["Tasks"].address,
                "data": self._task_selector + task_id.to_bytes(32, "big").hex()}

    def decode_task(self, task_id: int, data: bytes) -> Task:
        """The Task (as stored: no details) from the return data of `task_call(task_id)`."""
        fn = self.c["Tasks"].get_function_by_name("task")
        (t,) = abi_decode(get_abi_output_types(fn.abi), data)
        consumer, *middle, solver = t
        return _task(task_id, (to_checksum_address(consumer), *middle, to_checksum_address(solver)))

    def task_count(self) -> int:
        return self._call("Tasks", "taskCount")

    def rating(self, token_id: int) -> tuple[int, int]:
        """(sum of ratings, number of ratings) of a CTI."""
        return self._call("Feedback", "ratingSum", token_id), self._call("Feedback", "ratingCount", token_id)

    def dispute_of(self, task_id: int) -> bytes | None:
        """The hash a consumer disputed the delivery of `task_id` with, None when not disputed."""
        value = bytes(self._call("Feedback", "disputeOf", task_id))
        return value if any(value) else None

    def likes(self, token_id: int) -> int:
        return self._call("Feedback", "likes", token_id)


def _hex(value) -> str:
    return value if isinstance(value, str) else "0x" + bytes(value).hex()


def _task(task_id: int, t: Sequence[Any]) -> Task:
    consumer, token, c_org, p_org, state, deadline, solver = t
    return Task(task_id, token, consumer, c_org, p_org, TaskState(state), deadline,
                None if solver == ZERO else solver, None, "", "", b"")
