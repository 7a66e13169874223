"""A real four-organization geth Clique network: peering, agreement, crash and recovery, clean down.

The tests in this module share one network and run in file order.
"""

from __future__ import annotations


import pytest

from testbed.chain.sample import heads

from .conftest import assert_no_process, node_pids, wait_for

pytestmark = pytest.mark.integration



def test_every_node_has_all_peers(four_orgs):
    status = four_orgs.status()
    assert len(status.nodes) == 4
    for node in status.nodes:
        assert node.process_alive, node.plan.name
        assert node.snapshot.peers == 3, (node.plan.name, node.snapshot.peers)
        assert sorted(v.lower() for v in node.snapshot.validators) == sorted(n.address.lower() for n in four_orgs.nodes)


def test_all_nodes_agree_on_every_height(four_orgs):
    result = four_orgs.agreement(full=True, settle=15)
    assert result.agreed, result.summary()
    assert result.common_height >= 3
    assert result.heights_checked == result.common_height + 1


def test_killed_validator_chain_continues_and_restart_catches_up(four_orgs):
    victim = four_orgs.nodes[0].name
    others = [n.name for n in four_orgs.nodes[1:]]
    four_orgs.kill_node(victim)
    assert four_orgs.process(victim) is None

    before = max(h for h in heads(four_orgs.endpoints(others)).values() if h is not None)
    grown = wait_for(lambda: min(heads(four_orgs.endpoints(others)).values() or [0]) >= before + 3, timeout=30)
    assert grown, "the three remaining validators stopped producing blocks"
    live = four_orgs.agreement(full=True, only=others, settle=15)
    assert live.agreed, live.summary()

    four_orgs.start_node(victim)
    four_orgs.wait_ready(new_blocks=2, timeout=60)
    after = four_orgs.agreement(full=True, settle=15)
    assert after.agreed, after.summary()
    assert after.common_height > live.common_height


def test_down_leaves_no_node_process(four_orgs):
    pids = node_pids(four_orgs)
    assert len(pids) == 4
    stopped = four_orgs.down()
    assert sorted(stopped) == sorted(n.name for n in four_orgs.nodes)
    assert_no_process(pids)
    assert four_orgs.running_nodes() == []
