"""Onboarding and offboarding on a live network: join keeps agreement and makes the newcomer a
validator and a CTI member; leave removes both and keeps agreement on every remaining node."""

from __future__ import annotations

import pytest

from testbed.chain.rpc import RpcClient, RpcError
from testbed import validators
from testbed.chain.sample import heads
from testbed.chain.wait import wait_for_block
from testbed.contracts import deployment_of
from testbed.cti.client import CtiClient
from testbed.cti.deploy import connect
from testbed.errors import StateError
from testbed.membership import join, leave
from testbed.network import Network

from .conftest import deployed_four_orgs, observe, wait_for

pytestmark = pytest.mark.integration


def _answers(rpc: RpcClient) -> bool:
    try:
        rpc.call("net_peerCount")
        return True
    except RpcError:
        return False


@pytest.fixture(scope="module")
def network(testbed_home):
    with deployed_four_orgs("it-join", 24600) as net:
        yield net


def test_join_then_leave(network):
    grown = join(network, "newco-csirt", progress=print)
    newcomer = next(n for n in grown.nodes if n.org == "newco-csirt")
    view = validators.view(grown)
    assert view.agreed and len(view.validators) == 5 and newcomer.address.lower() in view.validators
    assert grown.agreement(full=True, settle=15).agreed
    client = CtiClient(connect(newcomer.rpc_url), deployment_of(grown), grown.keys.of("newco-csirt").steps.private_key)
    wait_for_block(client.w3, max(h for h in heads(grown.endpoints()).values() if h is not None))
    org_id, roles = client.org_of()
    assert org_id == 5 and roles
    assert Network.load("it-join").organizations[-1] == "newco-csirt"

    with pytest.raises(StateError, match="already part"):
        join(grown, "newco-csirt")

    remaining = leave(grown, "newco-csirt", progress=print)
    assert "newco-csirt" not in remaining.organizations and len(remaining.nodes) == 4
    after = validators.view(remaining)
    assert after.agreed and len(after.validators) == 4 and newcomer.address.lower() not in after.validators
    assert remaining.process(newcomer.name) is None
    first = remaining.nodes[0]
    observer = CtiClient(connect(first.rpc_url), deployment_of(remaining), remaining.keys.of(first.org).steps.private_key)
    assert not [o for o in observer.orgs() if o.name == "newco-csirt"][0].active
    reloaded = Network.load("it-join")
    assert [n.name for n in reloaded.nodes] == [n.name for n in remaining.nodes]
    assert reloaded.agreement(full=True, settle=15).agreed
    if grown.spec.client != "goquorum":
        return
    # Permissioned for real (GoQuorum --permissioned): the departed organization's node, started again
    # by hand, is no longer in any member's permissioned-nodes.json and cannot peer with them.
    grown.start_node(newcomer.name)
    try:
        with RpcClient(newcomer.rpc_url) as rpc:
            assert wait_for(lambda: _answers(rpc), timeout=30), "the departed organization's node never answered"
            # several of its dial rounds against each member's allowlist
            seen = observe(lambda: int(rpc.call("net_peerCount"), 16), seconds=15)
            assert set(seen) == {0}, f"a departed organization's node peered: net_peerCount {seen}"
        assert all(s.peers == 3 for s in remaining.snapshots()), [(s.node, s.peers) for s in remaining.snapshots()]
    finally:
        grown.stop_node(newcomer.name)
