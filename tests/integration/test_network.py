"""A real four-organization network, once on GoQuorum QBFT and once on geth Clique: peering,
agreement, a stranger node's access (GoQuorum's node allowlist), crash and recovery, clean down.

The tests in this module share one network and run in file order.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from testbed.chain.rpc import RpcClient, RpcError
from testbed.clients.base import NodePlan, NodePorts
from testbed.keys import KeyPair, write_secret

from . import conformance
from .conftest import assert_no_process, wait_for

pytestmark = pytest.mark.integration


def test_every_node_has_all_peers(four_orgs):
    conformance.check_every_node_has_all_peers(four_orgs)


def test_all_nodes_agree_on_every_height(four_orgs):
    conformance.check_all_nodes_agree_on_every_height(four_orgs)


def test_a_node_outside_the_allowlist_cannot_peer(four_orgs, tmp_path):
    """A stranger node (fresh key, the network's genesis, every member in its static peers, dialling
    them) is refused by every GoQuorum member, whose permissioned-nodes.json does not name it. On
    geth, which has no allowlist, the same stranger peers: the control showing that it really dials."""
    net = four_orgs
    client = net.client
    stranger = NodePlan(name="stranger-m1", org="stranger", role="member", index=len(net.nodes) + 2,
                        host="127.0.0.1", ports=NodePorts.for_index(net.spec.ports.base, len(net.nodes) + 2),
                        key=KeyPair.generate())
    node_dir = tmp_path / stranger.name
    for rendered in client.node_files(net.spec, stranger, net.nodes):
        target = node_dir / rendered.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if rendered.secret:
            write_secret(target, rendered.content)
        else:
            target.write_text(rendered.content)
    env = {**os.environ, **client.environment(net.spec, stranger)}
    log = (tmp_path / "stranger.log").open("w")
    init = client.init_command(net.binary, net.spec, stranger, node_dir, net.state.genesis_file)
    subprocess.run(init, check=True, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=60)
    proc = subprocess.Popen(client.command(net.binary, net.spec, stranger, node_dir, net.nodes),
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    rpc = RpcClient(stranger.rpc_url, timeout=5)
    try:
        def peers() -> int | None:
            try:
                return int(rpc.call("net_peerCount"), 16)
            except RpcError:
                return None  # not listening yet

        if client.name != "goquorum":
            assert wait_for(lambda: (peers() or 0) >= 1, timeout=60), "the control stranger never peered"
            return
        assert wait_for(lambda: peers() is not None, timeout=30), "the stranger node never answered"
        seen = []
        deadline = time.monotonic() + 20  # several of its dial rounds (static peers are redialled every few s)
        while time.monotonic() < deadline:
            seen.append(peers())
            time.sleep(1)
        assert set(seen) == {0}, f"a node outside the allowlist peered: net_peerCount {seen}"
        assert all(s.peers == 3 for s in net.snapshots()), [(s.node, s.peers) for s in net.snapshots()]
    finally:
        rpc.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        assert_no_process([proc.pid])


def test_killed_validator_chain_continues_and_restart_catches_up(four_orgs):
    conformance.check_killed_validator_chain_continues_and_restart_catches_up(four_orgs, grow_timeout=60, ready_timeout=60)


def test_down_leaves_no_node_process(four_orgs):
    conformance.check_down_stops_every_node(four_orgs)
    assert four_orgs.running_nodes() == []
