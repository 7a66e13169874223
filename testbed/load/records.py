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

from testbed.chain.inclusion import InclusionTracker
from testbed.chain.txs import TX_FIELDS, TxRecord  # noqa: F401 (re-exported: the load's transaction record)
from testbed.runs import read_jsonl  # noqa: F401 (re-exported)


class Recorder(InclusionTracker):
    """The inclusion tracker of a load run (testbed.chain.inclusion) and its samples."""

    def __init__(self, late_rows: bool = False) -> None:
        super().__init__(late_rows=late_rows)
        self.heads: list[dict] = []
        self.rates: list[dict] = []
        self.resources: list[dict] = []

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
