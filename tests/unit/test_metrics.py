import pytest

from testbed.metrics import block_intervals, included_tps, latency_summary, percentile


def test_percentile_nearest_rank():
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_latency_summary_unsorted_input():
    summary = latency_summary([0.9, 0.1, 0.5, 0.3])
    assert summary["count"] == 4 and summary["p50_s"] == 0.3 and summary["max_s"] == 0.9


def test_included_tps_excludes_first_block():
    # blocks at t=10 (50 tx), 11 (100 tx), 12 (100 tx): 200 tx over 2 s
    assert included_tps([(11, 100), (10, 50), (12, 100)]) == 100
    assert included_tps([(10, 5)]) is None
    assert block_intervals([12, 10, 11, 14]) == [1, 1, 2]
