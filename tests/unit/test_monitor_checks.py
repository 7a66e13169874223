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


# ---- no_lost_transactions: what counts as lost, refused and included --------------------------

def _lost_verdict(statuses: dict[str, int]):
    from types import SimpleNamespace

    from testbed.chain.txs import TxRecord
    from testbed.scenario.assertions import RunFacts, _lost_txs

    txs = [TxRecord(hash=f"0x{status}{i}", org="a", node="a-v1", sender="0xs", nonce=i, status=status,
                    error=None if status == "included" else "nonce too low")
           for status, n in statuses.items() for i in range(n)]
    facts = RunFacts(t0=0, end=1, verdict=None, heads=[], periods={}, txs=txs, blocks=[], tasks={})
    return _lost_txs(SimpleNamespace(), facts)


def test_all_refused_and_nothing_included_fails():
    result = _lost_verdict({"rejected": 100})
    assert not result.passed and "nothing was included" in result.detail and "100 refused" in result.detail


def test_refusals_are_reported_apart_from_losses():
    result = _lost_verdict({"included": 90, "rejected": 10})
    assert result.passed and "90 of 90 accepted" in result.detail and "10 refused" in result.detail


def test_an_accepted_transaction_missing_at_the_end_fails_with_evidence():
    result = _lost_verdict({"included": 90, "submitted": 3})
    assert not result.passed and result.detail.startswith("3 LOST") and len(result.evidence) == 3


def test_a_submission_no_node_answered_stays_pending_and_keeps_its_nonce():
    """'No answer' (a node down, or a timeout after it took the transaction) is not a refusal: the
    transaction stays pending for the drain to resend and receipts to decide, and its nonce is
    not handed out again."""
    import socket
    from types import SimpleNamespace

    from testbed.chain.txs import TxRecord
    from testbed.scenario.load import TransferLoad, _Sender

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"  # bound, never listening: refuses at once
        net = SimpleNamespace(node=lambda name: SimpleNamespace(rpc_url=url), nodes=[])
        load = TransferLoad(net, SimpleNamespace(), alive=lambda: ["a-v1"], emit=lambda *a, **k: None)
        sender = _Sender("a", "a-v1", url, signer=None, nonce=8, to="0xto")
        records = [TxRecord(hash=f"0x{i}", org="a", node="a-v1", sender="0xs", nonce=6 + i) for i in range(2)]
        load._send([(sender, r, "0xraw") for r in records])
    assert [r.status for r in records] == ["submitted", "submitted"]
    assert all(r.error == "no node answered the submission" for r in records)
    assert sender.nonce == 8
