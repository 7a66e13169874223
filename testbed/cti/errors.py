"""Revert data -> a typed error carrying the contract's reason in plain words."""

from __future__ import annotations

import ast
import re

from eth_abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from hexbytes import HexBytes

from testbed.cti.artifacts import error_table
from testbed.cti.model import Role, TaskState
from testbed.errors import ChainError

ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string)
PANIC = bytes.fromhex("4e487b71")  # Panic(uint256)

# One line per custom error; {names} are the error's arguments (roles and states rendered).
MESSAGES = {
    "NotMember": "{account} is not an account of a member organization",
    "MissingRole": "{account} lacks the {role} role",
    "WrongOrg": "{account} belongs to org {org}, but only org {requiredOrg} may do this",
    "BadFounding": "bad founding members: {why}",
    "BadProposal": "bad proposal: {why}",
    "AccountTaken": "account {account} already belongs to member org {org}",
    "NoSuchOrg": "no member organization with id {org}",
    "NoSuchProposal": "no proposal with id {proposal}",
    "ProposalNotOpen": "proposal {proposal} is already closed",
    "AlreadyVoted": "org {org} already voted on proposal {proposal}",
    "LastMember": "org {org} is the last member and cannot be removed",
    "NotRecorder": "{caller} may not record activity",
    "NoSuchListing": "no CTI listing with token id {tokenId}",
    "ListingWithdrawn": "CTI listing {tokenId} is withdrawn",
    "BadListing": "bad listing: {why}",
    "NotASolverOfOrg": "{solver} is not a solver of org {org}",
    "OwnListing": "org {org} published CTI {tokenId} itself",
    "PublisherRemoved": "CTI {tokenId} was published by org {org}, which is no longer a member",
    "SoldOut": "CTI {tokenId}: {requested} tokens requested, {available} left",
    "Underpaid": "payment too low: {required} wei required, {sent} wei sent",
    "NothingToWithdraw": "org {org} has no proceeds to withdraw",
    "PaymentFailed": "sending {amount} wei to {to} failed",
    "OnlyTasks": "{caller} is not the Tasks contract",
    "NoSuchTask": "no task with id {taskId}",
    "BadState": "task {taskId} is {state}",
    "NoToken": "{account} holds no token of CTI {tokenId}",
    "BadKey": "bad encryption key: {why}",
    "NotAuthorizedSolver": "{account} is not an authorized solver of CTI {tokenId}",
    "NotTaskSolver": "{account} is not the solver that accepted task {taskId}",
    "NotTaskConsumer": "{account} is not the consumer of task {taskId}",
    "DeadlinePassed": "task {taskId} passed its deadline {deadline}",
    "DeadlineNotPassed": "task {taskId} is still within its deadline {deadline}",
    "EmptyResult": "task {taskId}: the result hash is zero",
    "BadRating": "rating {rating} is not 1..5",
    "NotFinished": "task {taskId} is not finished",
    "AlreadyRated": "task {taskId} is already rated",
    "AlreadyDisputed": "task {taskId} is already disputed",
    "NotAMismatch": "task {taskId}: {receivedHash} is the listed content hash (or zero): nothing to dispute",
    "AlreadyLiked": "org {org} already liked CTI {tokenId}",
}


class ContractRevert(ChainError):
    """A contract call reverted. `error` is the Solidity error name ("Error" for a plain
    reason string, "Panic" for a panic), `error_args` its arguments, `reason` the plain text."""

    def __init__(self, operation: str, error: str, args: dict, reason: str) -> None:
        super().__init__(f"{operation} reverted: {reason}")
        self.operation = operation
        self.error = error
        self.error_args = args
        self.reason = reason


def decode_revert(data: bytes) -> tuple[str, dict, str]:
    """(error name, arguments, plain-text reason) for raw revert data."""
    selector, body = data[:4], data[4:]
    try:
        if selector == ERROR_STRING:
            (text,) = abi_decode(["string"], body)
            return "Error", {"message": text}, text
        if selector == PANIC:
            (code,) = abi_decode(["uint256"], body)
            return "Panic", {"code": code}, f"panic 0x{code:02x} (a bug in the contract)"
        spec = error_table().get(selector)
        if spec is not None:
            values = abi_decode(list(spec.types), body)
            args = dict(zip(spec.names, values))
            return spec.name, args, _render(spec.name, args)
    except DecodingError:
        pass
    if not data:
        return "Revert", {}, "reverted without a reason"
    return "Unknown", {"data": "0x" + data.hex()}, f"unknown revert data 0x{data.hex()}"


def _render(name: str, args: dict) -> str:
    shown = {}
    for key, value in args.items():
        if key == "role":
            shown[key] = Role.describe(value)
        elif key == "state":
            shown[key] = TaskState(value).name.lower()
        elif isinstance(value, bytes):
            shown[key] = "0x" + value.hex()
        else:
            shown[key] = value
    template = MESSAGES.get(name)
    if template is None:
        return f"{name}({', '.join(f'{k}={v}' for k, v in shown.items())})"
    return template.format(**shown)


def revert_data(exc: BaseException) -> bytes | None:
    """The raw revert data inside a web3 / eth-tester exception, or None if it is not a revert."""
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        return bytes(HexBytes(data))
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, dict) and isinstance(data.get("data"), str):
        return bytes(HexBytes(data["data"]))
    # eth-tester (py-evm): TransactionFailed wraps py-evm's Revert, whose first arg is the data.
    ctx = exc.__context__
    if ctx is not None and type(ctx).__name__ == "Revert" and ctx.args and isinstance(ctx.args[0], bytes):
        return ctx.args[0]
    message = str(exc)
    match = re.search(r"execution reverted: (b['\"].*['\"])$", message, re.S)
    if match:
        return ast.literal_eval(match.group(1))
    if "execution reverted" in message or "reverted" in message.lower():
        return b""
    return None


def as_revert(operation: str, exc: BaseException) -> ContractRevert | None:
    data = revert_data(exc)
    if data is None:
        return None
    if not data:
        text = str(exc).split("execution reverted:", 1)[-1].strip() or "reverted without a reason"
        return ContractRevert(operation, "Error", {"message": text}, text)
    error, args, reason = decode_revert(data)
    return ContractRevert(operation, error, args, reason)
