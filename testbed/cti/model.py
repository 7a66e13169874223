"""Python mirrors of the contracts' enums and records (keep in step with contracts/src)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag


class Role(IntFlag):
    """Roles.sol: an account's roles inside its organization (a bit set)."""

    PUBLISHER = 1
    SOLVER = 2
    CONSUMER = 4
    ALL = 7

    @classmethod
    def describe(cls, bits: int) -> str:
        names = [r.name.lower() for r in (cls.PUBLISHER, cls.SOLVER, cls.CONSUMER) if bits & r]
        return "|".join(names) or "member"


class TaskState(IntEnum):
    NONE = 0
    PENDING = 1
    ACCEPTED = 2
    FINISHED = 3
    CANCELLED = 4
    EXPIRED = 5
    REJECTED = 6


class Kind(IntEnum):
    """Activity.Kind: one per-organization counter and one Step event per unit."""

    PUBLISHED = 0
    MINTED = 1
    SOLD = 2
    BOUGHT = 3
    REQUESTED = 4
    ACCEPTED = 5
    SOLVED = 6
    CONSUMED = 7
    CANCELLED = 8
    EXPIRED = 9
    REJECTED = 10
    FEEDBACK_GIVEN = 11
    FEEDBACK_RECEIVED = 12
    LIKE_GIVEN = 13
    LIKE_RECEIVED = 14
    DISPUTE_RAISED = 15
    DISPUTE_RECEIVED = 16


@dataclass(frozen=True)
class Listing:
    token_id: int
    org: int
    withdrawn: bool
    price: int
    content_hash: bytes
    misp_uuid: str
    title: str


@dataclass(frozen=True)
class Task:
    """A task; the last four fields come from its events (`CtiClient.task(details=True)`), and
    are empty (None, "", "", b"") when only its storage was read."""

    task_id: int
    token_id: int
    consumer: str
    consumer_org: int
    publisher_org: int
    state: TaskState
    deadline: int
    solver: str | None
    result_hash: bytes | None
    result_uri: str
    reason: str
    encryption_key: bytes


@dataclass(frozen=True)
class Org:
    org_id: int
    name: str
    active: bool
    accounts: tuple[str, ...]


@dataclass(frozen=True)
class Sent:
    """A mined, successful transaction; `result` is the new id for create operations."""

    tx_hash: str
    block: int
    gas_used: int
    fee_wei: int  # gas used x effective gas price
    result: int | None = None
