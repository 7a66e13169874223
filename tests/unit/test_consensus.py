"""Agreement checks over crafted snapshots: agreement, forks, unreachable nodes, split validator sets."""

from testbed.consensus import NodeSnapshot, check_agreement, common_height, find_divergences

V = ("0xa", "0xb")


def snap(node, head, hashes, validators=V, reachable=True):
    return NodeSnapshot(node=node, reachable=reachable, head_number=head, head_hash=hashes.get(head),
                        validators=validators, hashes=hashes)


def test_all_agree():
    chain = {0: "g", 1: "h1", 2: "h2"}
    result = check_agreement([snap("n1", 2, chain), snap("n2", 2, dict(chain))])
    assert result.agreed and result.common_height == 2 and result.heights_checked == 3
    assert "agreed on 3 heights" in result.summary()


def test_fork_is_reported_with_evidence():
    a = {0: "g", 1: "h1", 2: "x2"}
    b = {0: "g", 1: "h1", 2: "y2"}
    result = check_agreement([snap("n1", 2, a), snap("n2", 2, b)])
    assert not result.agreed
    (div,) = result.divergences
    assert (div.height, div.node_a, div.hash_a, div.node_b, div.hash_b) == (2, "n1", "x2", "n2", "y2")
    assert "DIVERGED at height 2" in result.summary()


def test_lagging_node_is_not_a_fork():
    result = check_agreement([snap("n1", 3, {0: "g", 1: "h1"}), snap("n2", 1, {0: "g", 1: "h1"})])
    assert result.agreed and result.common_height == 1


def test_heads_above_the_common_height_are_not_counted_as_checked_heights():
    # CI saw this: every node asked for 0..3, one node's own head (#4) sampled too -> "5 heights up to #3"
    chain = {0: "g", 1: "h1", 2: "h2", 3: "h3"}
    result = check_agreement([snap("n1", 4, {**chain, 4: "h4"}), snap("n2", 3, dict(chain))])
    assert result.agreed and result.common_height == 3 and result.heights_checked == 4
    clash = check_agreement([snap("n1", 4, {**chain, 4: "x4"}), snap("n2", 5, {**chain, 4: "y4", 5: "y5"})])
    assert not clash.agreed and clash.divergences[0].height == 4  # a conflict above the common height still counts


def test_unreachable_node_breaks_agreement_only_when_required():
    snaps = [snap("n1", 1, {1: "h"}), NodeSnapshot(node="n2", reachable=False, error="refused")]
    assert not check_agreement(snaps).agreed
    relaxed = check_agreement(snaps, require_all=False)
    assert relaxed.agreed and relaxed.unreachable == ("n2",)


def test_validator_sets_must_match():
    result = check_agreement([snap("n1", 1, {1: "h"}), snap("n2", 1, {1: "h"}, validators=("0xa",))])
    assert not result.agreed and not result.validators_agree


def test_common_height_and_divergences_helpers():
    snaps = [snap("n1", 5, {5: "a"}), snap("n2", 7, {5: "b"}), snap("n3", 6, {5: "a"})]
    assert common_height(snaps) == 5
    assert [d.node_b for d in find_divergences(snaps)] == ["n2"]


def test_nothing_reachable_is_not_agreement():
    result = check_agreement([NodeSnapshot(node="n1", reachable=False)])
    assert not result.agreed and result.common_height is None


def test_state_mismatch_found_with_both_values():
    from testbed.consensus import find_state_mismatches

    same = {"n1": {"bal:0xa": 5, "bal:0xb": 7}, "n2": {"bal:0xa": 5, "bal:0xb": 7}}
    assert find_state_mismatches(same) == []
    differ = {"n1": {"bal:0xa": 5}, "n2": {"bal:0xa": 5}, "n3": {"bal:0xa": 6}}
    (mismatch,) = find_state_mismatches(differ)
    assert (mismatch.key, mismatch.node_a, mismatch.value_a, mismatch.node_b, mismatch.value_b) == ("bal:0xa", "n1", 5, "n3", 6)
    missing = {"n1": {"k": 1}, "n2": {}}
    assert find_state_mismatches(missing)[0].value_b is None


def test_choose_branch_prefers_heavier_then_more_holders():
    from testbed.consensus import choose_branch

    snaps = [snap("a", 9, {9: "x9"}), snap("b", 9, {9: "x9"}), snap("c", 9, {9: "y9"}), snap("d", 9, {9: "y9"})]
    assert choose_branch(snaps, {"a": 10, "b": 10, "c": 11, "d": 11}) == "c"
    assert choose_branch(snaps, {n: 10 for n in "abcd"}) == "a"  # tie everywhere: first node
    three = snaps[:3] + [snap("d", 9, {9: "x9"})]
    assert choose_branch(three, {n: 10 for n in "abcd"}) == "a"
    assert choose_branch([snap("c", 9, {9: "y9"})] + three[:2], {n: 10 for n in "abc"}) == "a"  # 2 holders beat 1


def test_rewind_points_are_common_ancestors_of_nodes_off_the_branch():
    from testbed.consensus import rewind_points

    x = {6: "g6", 7: "g7", 8: "x8", 9: "x9"}
    y = {6: "g6", 7: "g7", 8: "y8", 9: "y9"}
    behind = {6: "g6", 7: "g7", 8: "x8"}
    snaps = [snap("a", 9, x), snap("b", 9, y), snap("c", 8, behind)]
    assert rewind_points(snaps, "a") == {"b": 7}
    assert rewind_points(snaps, "b") == {"a": 7, "c": 7}
