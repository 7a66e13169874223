"""A real four-organization geth Clique network: peering, agreement, crash and recovery, clean down.

The tests in this module share one network and run in file order.
"""

from __future__ import annotations

import pytest

from . import conformance

pytestmark = pytest.mark.integration


def test_every_node_has_all_peers(four_orgs):
    conformance.check_every_node_has_all_peers(four_orgs)


def test_all_nodes_agree_on_every_height(four_orgs):
    conformance.check_all_nodes_agree_on_every_height(four_orgs)


def test_killed_validator_chain_continues_and_restart_catches_up(four_orgs):
    conformance.check_killed_validator_chain_continues_and_restart_catches_up(four_orgs, grow_timeout=60, ready_timeout=60)


def test_down_leaves_no_node_process(four_orgs):
    conformance.check_down_stops_every_node(four_orgs)
    assert four_orgs.running_nodes() == []
