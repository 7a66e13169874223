"""Throughput and latency figures computed from the raw per-transaction and per-block logs (pure)."""

from __future__ import annotations

import math
from typing import Iterable


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100): the smallest value with at least q % of values at or below it."""
    ordered = sorted(values)
    if not ordered:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(latencies: list[float]) -> dict[str, float | None]:
    """count, min, mean, p50, p95, p99, max (seconds; None without latencies): what Caliper reports per round."""
    return {
        "count": len(latencies),
        "min_s": min(latencies) if latencies else None,
        "mean_s": sum(latencies) / len(latencies) if latencies else None,
        "p50_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
        "p99_s": percentile(latencies, 99),
        "max_s": max(latencies) if latencies else None,
    }


def included_tps(block_timestamps_and_counts: list[tuple[int, int]]) -> float | None:
    """Transactions per second over a run of blocks: transactions after the first block / time it spans.

    The first block's transactions are excluded because the interval before it is unknown.
    """
    if len(block_timestamps_and_counts) < 2:
        return None
    ordered = sorted(block_timestamps_and_counts)
    span = ordered[-1][0] - ordered[0][0]
    if span <= 0:
        return None
    return sum(count for _, count in ordered[1:]) / span


def block_intervals(timestamps: list[int]) -> list[int]:
    ordered = sorted(timestamps)
    return [b - a for a, b in zip(ordered, ordered[1:])]
