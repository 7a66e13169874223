"""Raw records of a load run (pure, no Locust): one row per transaction, per block, per sample.

The recorder is what the block watcher and the users write into; `write` puts it into the
run directory as JSON lines, from which every figure of the report is recomputed:

- txs.jsonl       hash, org, node, sender, nonce, kind, submit_time, included_block,
                  included_time, block_timestamp, status, error, reorged
                  status: included | rejected (the node refused it; error says why)
                          | dropped (accepted, never seen in a block before the drain timeout)
- blocks.jsonl    number, hash, timestamp, tx_count, gas_used, seen_time, load_txs
- heads.jsonl     time, node, head (null when the node did not answer)
- rates.jsonl     time, target (tx/s the profile asked for), users
- resources.jsonl time, process (node name or "generator"), pid, cpu_percent, rss_mb, disk and network I/O (testbed.resources)
- reorgs.jsonl    time, from_number, depth: blocks the watcher had read that a reorg replaced
                  (Clique forks between out-of-turn signers); their txs went back to pending
                  and were recorded again from the canonical block that holds them
"""

from __future__ import annotations

from testbed.runs import read_jsonl  # noqa: F401 (re-exported)

TX_FIELDS = ("hash", "org", "node", "sender", "nonce", "kind", "submit_time", "included_block", "included_time",
             "block_timestamp", "status", "error", "reorged")


class TxRow:
    __slots__ = TX_FIELDS

    def __init__(self, hash: str, org: str, node: str, sender: str, nonce: int, kind: str, submit_time: float) -> None:
        self.hash, self.org, self.node, self.sender, self.nonce, self.kind = hash, org, node, sender, nonce, kind
        self.submit_time = submit_time
        self.included_block = self.included_time = self.block_timestamp = self.error = None
        self.status = "submitted"
        self.reorged = 0  # times a block holding it left the chain (it was then re-read from the canonical block)

    @property
    def latency(self) -> float | None:
        return None if self.included_time is None else self.included_time - self.submit_time

    def to_json(self) -> dict:
        return {f: getattr(self, f) for f in TX_FIELDS}


class Recorder:
    LATE_WINDOW = 120  # blocks: how far back a late row (see `late_rows`) may still find its block

    def __init__(self, late_rows: bool = False) -> None:
        # late_rows: rows may arrive after the block that holds them (the workers of a distributed
        # run forward their rows a moment after sending), so the hashes of recent blocks are kept
        self.late_rows = late_rows
        self._unclaimed: dict[str, int] = {}  # tx hash -> number of the recorded block holding it
        self._unclaimed_in: dict[int, list[str]] = {}
        self.rows: list[TxRow] = []
        self.pending: dict[str, TxRow] = {}
        self.blocks: list[dict] = []
        self.heads: list[dict] = []
        self.rates: list[dict] = []
        self.resources: list[dict] = []
        self.reorgs: list[dict] = []  # {time, from_number, depth}: blocks we had read that left the chain
        self._rows_in: dict[int, list[TxRow]] = {}  # block number -> load txs it held (for rollback)

    # ---- transactions ---------------------------------------------------------------------
    def submitted(self, row: TxRow) -> bool:
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

    def reject(self, row: TxRow, error: str) -> None:
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

    def apply_block(self, block: dict, seen_time: float) -> list[TxRow]:
        """Record one canonical block (eth_getBlockByNumber with hashes only) following the last recorded
        one; return the load txs it includes. A block that does not extend the recorded chain raises
        ValueError: the caller rolls back (see `rollback`) and re-reads."""
        number, timestamp = int(block["number"], 16), int(block["timestamp"], 16)
        if self.blocks and (number != self.blocks[-1]["number"] + 1 or block["parentHash"] != self.blocks[-1]["hash"]):
            raise ValueError(f"block {number} does not extend the recorded chain at {self.blocks[-1]['number']}")
        included: list[TxRow] = []
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

    # ---- samples ---------------------------------------------------------------------------
    def rate(self, t: float, target: float | None, users: int) -> None:
        self.rates.append({"time": t, "target": target, "users": users})

    def head(self, t: float, node: str, head: int | None) -> None:
        self.heads.append({"time": t, "node": node, "head": head})

    # ---- output ----------------------------------------------------------------------------
    def write(self, run) -> None:
        """Every record into the run directory (a testbed.runs.RunDir)."""
        run.write_jsonl("txs.jsonl", (r.to_json() for r in self.rows))
        for name in ("blocks", "heads", "rates", "resources", "reorgs"):
            run.write_jsonl(f"{name}.jsonl", getattr(self, name))
