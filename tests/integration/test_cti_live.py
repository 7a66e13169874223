"""The CTI contracts on a live four-organization network: every step sent through a different
organization's own node, and every node returns the same contract state at the same block."""

from __future__ import annotations

import hashlib
import time

import pytest

from testbed.contracts import deploy_to_network, deployment_of
from testbed.cti.client import CtiClient
from testbed.cti.deploy import connect
from testbed.chain.wait import wait_for_block
from testbed.cti.model import TaskState
from testbed.errors import ChainError, StateError
from testbed.network import Network

from .conftest import deployed_four_orgs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cti_network(testbed_home):
    with deployed_four_orgs("it-cti", 24400) as network:
        yield network


def client_for(net: Network, org: str, account: int = 0) -> CtiClient:
    node = next(n for n in net.nodes if n.org == org)
    return CtiClient(connect(node.rpc_url), deployment_of(net), net.keys.accounts[org][account].private_key, timeout=60)


def test_redeploy_is_refused(cti_network):
    with pytest.raises(StateError, match="already deployed"):
        deploy_to_network(cti_network)


def test_full_loop_across_nodes_and_same_state_everywhere(cti_network):
    net = cti_network
    orgs = [o.name for o in net.spec.organizations]
    publisher, consumer = client_for(net, orgs[0]), client_for(net, orgs[1])
    content = b'{"Event": {"info": "phishing wave"}}'
    published = publisher.publish("6b0f4c8e-1c55-4b5e-9d2a-2f1e0c9b7a11", "Phishing wave: lure domains",
                                  hashlib.sha256(content).digest(), price_wei=10**15, supply=10)
    token = published.result
    wait_for_block(consumer.w3, published.block)  # the consumer reads through its own node
    with pytest.raises(ChainError) as underpaid:
        consumer.buy(token, value=10**15 - 1)
    assert "panic" not in str(underpaid.value).lower()
    consumer.buy(token)
    requested = consumer.request(token, b"\x04" + bytes(64))
    task = requested.result
    wait_for_block(publisher.w3, requested.block)
    publisher.accept(task)
    finished = publisher.finish(task, hashlib.sha256(b"ciphertext").digest(), "http://127.0.0.1/deliveries/1")
    wait_for_block(consumer.w3, finished.block)
    rating = consumer.rate(task, 5, "useful")
    assert consumer.task(task).state == TaskState.FINISHED

    # every node answers the same at the same block
    block = rating.block
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and net.agreement().common_height < block:
        time.sleep(0.5)
    views = {}
    for node in net.nodes:
        c = CtiClient(connect(node.rpc_url), deployment_of(net), net.keys.accounts[orgs[2]][0].private_key)
        at = {"block_identifier": block}
        views[node.name] = (
            tuple(c.c["Activity"].functions.countsOf(1).call(**at)),
            tuple(c.c["Activity"].functions.countsOf(2).call(**at)),
            tuple(c.c["Tasks"].functions.task(task).call(**at)),
            c.c["CtiMarket"].functions.balanceOf(consumer.address, token).call(**at),
        )
    assert len(set(views.values())) == 1, views
    wait_for_block(publisher.w3, rating.block)
    publisher_counts = publisher.activity()
    consumer_counts = consumer.activity()
    assert publisher_counts["published"] == 1 and publisher_counts["solved"] == 1 and publisher_counts["sold"] == 1
    assert consumer_counts["bought"] == 1 and consumer_counts["requested"] == 1 and consumer_counts["feedback_given"] == 1
    assert net.agreement(full=True, settle=15).agreed
