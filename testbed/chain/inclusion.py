"""Which sent transactions are in which block, read from the blocks themselves: one
eth_getBlockByNumber per new block (hashes only) tells which watched transactions it holds, when
the harness saw it, and the block's time. Reorg-aware: a block that does not extend the recorded
chain sends its transactions back to pending, and they are recorded again from the canonical
block that holds them (Clique forks between out-of-turn signers; QBFT has none).

The one tracker of the harness: the Locust load (testbed.load.records.Recorder adds its samples),
the scenario's plain transfer load and the funding of load accounts use it.
"""

from __future__ import annotations

import time
from typing import Callable

from testbed.chain.rpc import RpcClient
from testbed.chain.txs import TxRecord
from testbed.poll import poll_until


class InclusionTracker:
    LATE_WINDOW = 120  # blocks: how far back a late row (see `late_rows`) may still find its block

    def __init__(self, next_block: int | None = None, *, late_rows: bool = False) -> None:
        # late_rows: rows may arrive after the block that holds them (the workers of a distributed
        # run forward their rows a moment after sending), so the hashes of recent blocks are kept
        self.next_block = next_block  # the first block to read (None: the head's successor, at the first poll)
        self.late_rows = late_rows
        self._unclaimed: dict[str, int] = {}  # tx hash -> number of the recorded block holding it
        self._unclaimed_in: dict[int, list[str]] = {}
        self.rows: list[TxRecord] = []
        self.pending: dict[str, TxRecord] = {}
        self.blocks: list[dict] = []  # number, hash, timestamp, tx_count, gas_used, seen_time, load_txs
        self.reorgs: list[dict] = []  # {time, from_number, depth}: blocks we had read that left the chain
        self._rows_in: dict[int, list[TxRecord]] = {}  # block number -> watched txs it held (for rollback)

    @classmethod
    def from_head(cls, rpc: RpcClient, **options) -> "InclusionTracker":
        """A tracker that reads from the block after `rpc`'s node's head."""
        return cls(int(rpc.call("eth_blockNumber"), 16) + 1, **options)

    # ---- transactions ---------------------------------------------------------------------
    def submitted(self, row: TxRecord) -> bool:
        """Record a sent row; True if a block already recorded holds it (a late row: now included)."""
        self.rows.append(row)
        number = self._unclaimed.pop(row.hash, None) if self.late_rows else None
        if number is None:
            self.pending[row.hash] = row
            return False
        block = self.blocks[number - self.blocks[0]["number"]]
        row.status, row.included_block, row.block_timestamp = "included", number, block["timestamp"]
        row.included_time = max(block["seen_time"], row.submit_time)
        block["load_txs"] += 1
        self._rows_in[number].append(row)
        return True

    def reject(self, row: TxRecord, error: str) -> None:
        """The node refused the transaction; it will never be included."""
        if self.pending.pop(row.hash, None) is not None:
            row.status, row.error = "rejected", error

    def hash_at(self, number: int) -> str | None:
        if self.blocks and self.blocks[0]["number"] <= number <= self.blocks[-1]["number"]:
            return self.blocks[number - self.blocks[0]["number"]]["hash"]
        return None

    def rollback(self, from_number: int, t: float) -> int:
        """A reorg replaced blocks from `from_number` on: forget them; their load txs are pending again."""
        dropped = [b for b in self.blocks if b["number"] >= from_number]
        if not dropped:
            return 0
        self.blocks = [b for b in self.blocks if b["number"] < from_number]
        for block in dropped:
            for tx_hash in self._unclaimed_in.pop(block["number"], []):
                self._unclaimed.pop(tx_hash, None)
            for row in self._rows_in.pop(block["number"], []):
                row.status, row.included_block, row.included_time, row.block_timestamp = "submitted", None, None, None
                row.reorged += 1
                self.pending[row.hash] = row
        self.reorgs.append({"time": t, "from_number": from_number, "depth": len(dropped)})
        return len(dropped)

    def apply_block(self, block: dict, seen_time: float) -> list[TxRecord]:
        """Record one canonical block (eth_getBlockByNumber with hashes only) following the last recorded
        one; return the load txs it includes. A block that does not extend the recorded chain raises
        ValueError: the caller rolls back (see `rollback`) and re-reads."""
        number, timestamp = int(block["number"], 16), int(block["timestamp"], 16)
        if self.blocks and (number != self.blocks[-1]["number"] + 1 or block["parentHash"] != self.blocks[-1]["hash"]):
            raise ValueError(f"block {number} does not extend the recorded chain at {self.blocks[-1]['number']}")
        included: list[TxRecord] = []
        unclaimed: list[str] = []
        for tx_hash in block["transactions"]:
            row = self.pending.pop(tx_hash, None)
            if row is not None:
                row.status, row.included_block, row.included_time, row.block_timestamp = "included", number, seen_time, timestamp
                included.append(row)
            elif self.late_rows:
                unclaimed.append(tx_hash)
        self._rows_in[number] = included
        if self.late_rows:
            self._keep_unclaimed(number, unclaimed)
        self.blocks.append({"number": number, "hash": block["hash"], "timestamp": timestamp,
                            "tx_count": len(block["transactions"]), "gas_used": int(block["gasUsed"], 16),
                            "seen_time": seen_time, "load_txs": len(included)})
        return included

    def _keep_unclaimed(self, number: int, hashes: list[str]) -> None:
        self._unclaimed_in[number] = hashes
        self._unclaimed.update((h, number) for h in hashes)
        for old in [n for n in self._unclaimed_in if n <= number - self.LATE_WINDOW]:
            for tx_hash in self._unclaimed_in.pop(old):
                self._unclaimed.pop(tx_hash, None)

    def drop_pending(self, reason: str) -> int:
        for row in self.pending.values():
            row.status, row.error = "dropped", f"{reason}; submission: {row.error}" if row.error else reason
        count = len(self.pending)
        self.pending.clear()
        return count

    # ---- reading blocks ----------------------------------------------------------------------
    def poll(self, rpc: RpcClient) -> list[TxRecord]:
        """Read every block from `next_block` to `rpc`'s head; the watched transactions they include.
        A reorg below is followed: the replaced blocks are forgotten and the canonical ones read."""
        head = int(rpc.call("eth_blockNumber"), 16)
        if self.next_block is None:
            self.next_block = head + 1
        if head < self.next_block:
            return []
        blocks = rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in range(self.next_block, head + 1)])
        known = self.hash_at(self.next_block - 1)
        if blocks and known is not None and blocks[0]["parentHash"] != known:
            # reorg: walk back to the last block we read that is still canonical, forget the rest
            number = self.next_block - 1
            while number > self.blocks[0]["number"]:
                canonical = rpc.call("eth_getBlockByNumber", hex(number), False)
                if canonical and canonical["hash"] == self.hash_at(number):
                    break
                number -= 1
            self.rollback(number + 1, time.time())
            self.next_block = number + 1
            return self.poll(rpc)
        seen = time.time()  # every transaction of these blocks was included by now
        found: list[TxRecord] = []
        for block in blocks:
            try:
                found += self.apply_block(block, seen)
            except ValueError:  # the chain moved between reads: read again on the next poll
                break
            self.next_block = int(block["number"], 16) + 1
        return found

    def wait_all(self, rpc: RpcClient, timeout: float, interval: float = 0.2,
                 sleep: Callable[[float], None] = time.sleep) -> bool:
        """Poll until no watched transaction is pending (True) or `timeout` passes (False)."""
        def settled() -> bool:
            self.poll(rpc)
            return not self.pending

        return poll_until(settled, timeout=timeout, interval=interval, sleep=sleep)
