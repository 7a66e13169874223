"""Task events by block range (eth_getLogs) from a cursor persisted in the journal.

No node-side filter is used (they vanish when a node restarts). Each poll reads
TaskChanged and Requested logs (the consumer's key) of one publisher org from cursor + 1 to head - depth, then stores the
hash of the last block read. Before reading on, the stored hash at the cursor is compared
with the chain's: if it changed (a reorg), the cursor rewinds to the newest stored block
whose hash still matches, and those blocks are read again. Handling an event is
idempotent (it only tells the Solver which task to look at), so reading twice is harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from eth_abi import decode as abi_decode
from eth_utils import keccak

from solver.journal import Journal

log = logging.getLogger("solver.watch")

TASK_CHANGED = "0x" + keccak(text="TaskChanged(uint256,uint256,uint32,uint8)").hex()
REQUESTED = "0x" + keccak(text="Requested(uint256,uint256,uint32,bytes)").hex()  # carries the consumer's key
PENDING = 1
MAX_RANGE = 2000  # blocks per eth_getLogs call


def _hex(value) -> str:
    if isinstance(value, str):
        return value if value.startswith("0x") else "0x" + value
    return "0x" + bytes(value).hex()


def _int(value) -> int:
    return int(_hex(value), 16)


@dataclass(frozen=True)
class TaskEvent:
    task_id: int
    token_id: int
    publisher_org: int
    state: int
    block: int
    block_hash: str
    tx_hash: str
    key: bytes | None = None  # the consumer's key, from a Requested log


def decode(entry) -> TaskEvent:
    topics = entry["topics"]
    data = bytes.fromhex(_hex(entry["data"])[2:])
    requested = _hex(topics[0]) == REQUESTED
    return TaskEvent(task_id=_int(topics[1]), token_id=_int(topics[2]), publisher_org=_int(topics[3]),
                     state=PENDING if requested else (int.from_bytes(data, "big") if data else 0),
                     block=int(entry["blockNumber"]), block_hash=_hex(entry["blockHash"]),
                     tx_hash=_hex(entry["transactionHash"]), key=abi_decode(["bytes"], data)[0] if requested else None)


def org_topic(org_id: int) -> str:
    return "0x" + org_id.to_bytes(32, "big").hex()


class TaskWatcher:
    """Reads one org's task events; `publisher_org=None` reads every org's."""

    def __init__(self, w3, tasks_address: str, journal: Journal, *, publisher_org: int | None,
                 depth: int = 1, start_block: int = 0) -> None:
        self.w3 = w3
        self.address = tasks_address
        self.journal = journal
        self.publisher_org = publisher_org
        self.depth = depth
        self.start_block = start_block
        self.rewinds = 0

    def _hash_at(self, number: int) -> str | None:
        try:
            block = self.w3.eth.get_block(number)
        except Exception:  # BlockNotFound: the chain is shorter than it was
            return None
        return _hex(block["hash"]) if block is not None else None

    def check_reorg(self) -> int | None:
        """Rewind the cursor if the block at it changed; return the block rewound to, or None."""
        cursor = self.journal.cursor()
        if cursor is None or self._hash_at(cursor[0]) == cursor[1]:
            return None
        target = self.start_block - 1  # deeper than every stored hash: read again from the start
        for number, stored in self.journal.known_hashes():
            if self._hash_at(number) == stored:
                target = number
                break
        log.warning("reorg: block %d changed hash; rewinding the cursor to %d", cursor[0], target)
        self.journal.rewind(target)
        self.rewinds += 1
        return target

    def poll(self, head: int | None = None) -> list[TaskEvent]:
        """New events up to head - depth (at most MAX_RANGE blocks per call), oldest first."""
        if head is None:
            head = self.w3.eth.block_number
        self.check_reorg()
        cursor = self.journal.cursor()
        first = cursor[0] + 1 if cursor else self.start_block
        last = min(head - self.depth, first + MAX_RANGE - 1)
        if last < first:
            return []
        topics: list = [[TASK_CHANGED, REQUESTED], None, None, org_topic(self.publisher_org) if self.publisher_org else None]
        while topics and topics[-1] is None:
            topics.pop()
        logs = self.w3.eth.get_logs({"address": self.address, "fromBlock": first, "toBlock": last, "topics": topics})
        block_hash = self._hash_at(last)
        if block_hash is None:  # the chain shrank under us: read again next time
            return []
        events = sorted((decode(e) for e in logs), key=lambda e: (e.block, e.task_id))
        self.journal.advance(last, block_hash)
        return events
