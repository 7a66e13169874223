"""Pure agreement checks over time: reorgs, stalls, liveness (crafted snapshots and head samples)."""

from __future__ import annotations

from testbed.consensus import (HeadPoint, NodeSnapshot, apply_hashes, find_divergences, find_reorgs, find_stalls,
                               liveness)


def snap(node: str, hashes: dict[int, str], reachable: bool = True) -> NodeSnapshot:
    head = max(hashes) if hashes else None
    return NodeSnapshot(node=node, reachable=reachable, head_number=head, head_hash=hashes.get(head), hashes=hashes)


def chain(prefix: str, start: int, end: int) -> dict[int, str]:
    return {h: f"0x{prefix}{h:04d}" for h in range(start, end + 1)}


def test_no_reorg_when_hashes_only_grow():
    seen = {"a": chain("aa", 0, 5)}
    assert find_reorgs(seen, [snap("a", chain("aa", 0, 8))]) == []


def test_reorg_depth_counts_dropped_blocks():
    seen = {"a": chain("aa", 0, 10)}
    fresh = {**chain("aa", 0, 7), **chain("bb", 8, 11)}  # heights 8..10 replaced
    reorgs = find_reorgs(seen, [snap("a", fresh)])
    assert len(reorgs) == 1
    r = reorgs[0]
    assert (r.node, r.height, r.depth, r.old_head) == ("a", 8, 3, 10)
    assert r.old_hash == "0xaa0008" and r.new_hash == "0xbb0008"
    assert "3 block(s) from height 8" in str(r)


def test_head_replaced_by_sibling_is_depth_one():
    seen = {"a": chain("aa", 0, 4)}
    fresh = {**chain("aa", 0, 3), 4: "0xsibling"}
    assert find_reorgs(seen, [snap("a", fresh)])[0].depth == 1


def test_reorg_to_shorter_chain_drops_heights_above_new_head():
    seen = {"a": chain("aa", 0, 6)}
    fresh = {**chain("aa", 0, 3), **chain("cc", 4, 5)}
    reorgs = find_reorgs(seen, [snap("a", fresh)])
    apply_hashes(seen, [snap("a", fresh)], reorgs)
    assert max(seen["a"]) == 5 and seen["a"][4] == "0xcc0004"
    assert reorgs[0].depth == 3


def test_unreachable_or_new_nodes_are_not_reorgs():
    seen = {"a": chain("aa", 0, 5)}
    assert find_reorgs(seen, [snap("a", {}, reachable=False), snap("b", chain("zz", 0, 5))]) == []


def test_rewind_after_crash_is_not_a_reorg():
    """A restarted node may come back lower (unpersisted head); same hashes are no reorg."""
    seen = {"a": chain("aa", 0, 20)}
    assert find_reorgs(seen, [snap("a", chain("aa", 8, 12))]) == []


def test_fork_between_nodes_is_a_divergence_with_both_hashes():
    a = snap("a", chain("aa", 0, 5))
    b = snap("b", {**chain("aa", 0, 2), **chain("bb", 3, 5)})
    found = find_divergences([a, b])
    assert [d.height for d in found] == [3, 4, 5]
    assert (found[0].node_a, found[0].hash_a, found[0].node_b, found[0].hash_b) == ("a", "0xaa0003", "b", "0xbb0003")


def points(node: str, series: list[tuple[float, int | None]]) -> list[HeadPoint]:
    return [HeadPoint(t, node, h) for t, h in series]


def test_stall_found_with_its_height_and_length():
    series = points("a", [(0, 1), (1, 2), (2, 3), (3, 3), (9, 3), (10, 4), (11, 5)])
    stalls = find_stalls(series, 5.0)
    assert len(stalls) == 1
    assert (stalls[0].start, stalls[0].end, stalls[0].height, stalls[0].ongoing) == (2, 10, 3, False)


def test_ongoing_stall_at_the_end():
    series = points("a", [(0, 1), (1, 2), (8, 2)])
    stalls = find_stalls(series, 5.0)
    assert stalls and stalls[0].ongoing and stalls[0].height == 2


def test_no_stall_on_a_healthy_chain_even_with_one_node_down():
    series = points("a", [(t, t) for t in range(20)]) + points("b", [(t, 3) for t in range(3, 20)])
    assert find_stalls(series, 5.0) == []


def test_liveness_blocks_per_minute():
    series = points("a", [(t, 10 + t) for t in range(0, 31)])  # one block per second
    live = liveness(series, 0, 30)
    assert live.blocks == 30 and abs(live.blocks_per_min - 60.0) < 1e-9
    assert live.per_node == {"a": 30}


def test_liveness_window_and_per_node_growth_during_a_partition():
    series = points("a", [(t, 10 + min(t, 2)) for t in range(0, 20)]) + points("b", [(t, 10 + min(t, 1)) for t in range(0, 20)])
    live = liveness(series, 5, 19)
    assert live.blocks == 0 and live.per_node == {"a": 0, "b": 0}
    early = liveness(series, 0, 19)
    assert early.per_node == {"a": 2, "b": 1}


def test_liveness_ignores_unanswered_samples():
    series = points("a", [(0, 5), (1, None), (2, 7)])
    assert liveness(series, 0, 2).blocks == 2
