"""Checks every backend's four-organization network must pass, whatever runs its nodes (local
processes, ansible over SSH, ...): full peering, agreement on every height, a killed validator
that the chain survives and that catches up after a restart, and a `down` that stops every node.

Each backend's test module keeps its own fixture (name, port base, teardown) and calls these
from its tests, in its own order. conftest.py registers this module for pytest's assertion
rewriting, so a failing check reports its values as if it were written in the test.
"""

from __future__ import annotations

from testbed.chain.sample import heads
from testbed.network import Network
from testbed.watchdog import StallWatchdog

from .conftest import wait_for


def check_every_node_has_all_peers(network: Network) -> None:
    """Four live nodes, each peered with the three others and seeing all four signers."""
    status = network.status()
    assert len(status.nodes) == 4
    for node in status.nodes:
        assert node.process_alive, node.plan.name
        assert node.snapshot.peers == 3, (node.plan.name, node.snapshot.peers)
        assert sorted(v.lower() for v in node.snapshot.validators) == sorted(n.address.lower() for n in network.nodes)


def check_fully_peered_same_validators_and_agreeing(network: Network) -> None:
    """Every node runs, peers with every other node, reports the network's validators, and all
    agree on every height (at least 3)."""
    status = network.status()
    validators = sorted(n.address.lower() for n in network.nodes if n.is_validator)
    for node in status.nodes:
        assert node.process_alive and node.snapshot.peers == len(network.nodes) - 1, (node.plan.name, node.snapshot.peers)
        assert sorted(v.lower() for v in node.snapshot.validators) == validators, node.plan.name
    result = network.agreement(full=True, settle=15)
    assert result.agreed and result.common_height >= 3 and result.heights_checked == result.common_height + 1, \
        result.summary()


def check_all_nodes_agree_on_every_height(network: Network):
    """Every node holds the same block at every height (from genesis); returns the agreement."""
    result = network.agreement(full=True, settle=15)
    assert result.agreed, result.summary()
    assert result.common_height >= 3
    assert result.heights_checked == result.common_height + 1
    return result


def check_killed_validator_chain_continues_and_restart_catches_up(network: Network, *, grow_timeout: float,
                                                                   ready_timeout: float) -> None:
    """Kill the first validator: the other three keep sealing (3 blocks within `grow_timeout`) and
    agree; restarted, it catches up (ready within `ready_timeout`) and all four agree beyond that."""
    victim = network.nodes[0].name
    others = [n.name for n in network.nodes[1:]]
    network.kill_node(victim)
    assert network.process(victim) is None

    before = max(h for h in heads(network.endpoints(others)).values() if h is not None)
    # Three Clique signers of four can deadlock on equal-difficulty branches (go-ethereum #18402);
    # the watchdog an operator runs rewinds that, so only a chain that stays stopped fails here.
    with StallWatchdog(network, progress=print) as watchdog:
        grown = wait_for(lambda: min(heads(network.endpoints(others)).values() or [0]) >= before + 3,
                         timeout=grow_timeout)
    assert grown, f"the three remaining validators stopped producing blocks (watchdog: {watchdog.interventions})"
    live = network.agreement(full=True, only=others, settle=15)
    assert live.agreed, live.summary()

    network.start_node(victim)
    network.wait_ready(new_blocks=2, timeout=ready_timeout)
    after = network.agreement(full=True, settle=15)
    assert after.agreed, after.summary()
    assert after.common_height > live.common_height
