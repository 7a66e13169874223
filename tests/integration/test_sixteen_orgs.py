"""Sixteen organizations on GoQuorum QBFT (the shipped sixteen-orgs.yaml): every node peers with
every other, all agree on every height with sixteen validators, and `down` leaves nothing."""

from __future__ import annotations

import pytest

from testbed.pytest_plugin import consortium_network

from . import conformance
from .conftest import NETWORKS, assert_no_process, node_pids, spec_with

pytestmark = pytest.mark.integration


def test_sixteen_organizations_up_agree_and_down(testbed_home):
    with consortium_network(spec_with(NETWORKS / "sixteen-orgs.yaml", name="it-sixteen", port_base=31000),
                            progress=print) as network:
        pids = node_pids(network)
        assert len(network.nodes) == 16 and len(network.organizations) == 16
        assert all(n.is_validator for n in network.nodes)
        conformance.check_fully_peered_same_validators_and_agreeing(network)
        running = sorted(network.running_nodes())
        assert sorted(network.down(purge=True)) == running
    assert_no_process(pids)
