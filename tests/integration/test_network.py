"""A real four-organization network, once on GoQuorum QBFT and once on geth Clique: peering,
agreement, a stranger node's access (GoQuorum's node allowlist), crash and recovery, clean down.

The tests in this module share one network and run in file order.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import stat
import subprocess

import pytest

from testbed.chain.rpc import RpcClient, RpcError
from testbed.clients.base import NodePlan, NodePorts
from testbed.keys import KeyPair, write_secret

from . import conformance
from .conftest import assert_no_process, observe, wait_for

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
        seen = observe(peers, seconds=20)  # several of its dial rounds (static peers are redialled every few s)
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


def test_http_serves_no_vote_or_admin_namespace_and_the_ipc_socket_is_private(four_orgs):
    """Over HTTP a node serves eth, net, web3, txpool only: no validator vote, no sealing control,
    no rewind, no admin. The harness reaches those on the node's IPC socket, in a 0700 directory
    that another local user cannot enter."""
    net = four_orgs
    node = net.nodes[0]
    with RpcClient(node.rpc_url) as rpc:
        assert set(rpc.call("rpc_modules")) <= {"eth", "net", "web3", "txpool", "rpc"}, rpc.call("rpc_modules")
        for method, params in ((net.validator_rpc.propose_method, [node.address, False]), ("debug_setHead", ["0x1"]),
                               ("admin_peers", []), ("miner_stop", [])):
            with pytest.raises(RpcError, match="does not exist|not available"):
                rpc.call(method, *params)
        # GoQuorum seals with the node key; geth seals through clef, whose rules sign block seals only
        assert rpc.call("eth_accounts") == []
        # a request naming another host (a page on evil.example.com, DNS-rebound to the node) is refused
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "web3_clientVersion", "params": []})
        conn = http.client.HTTPConnection(node.host, node.ports.http, timeout=10)
        try:
            conn.request("POST", "/", body, {"Content-Type": "application/json", "Host": "evil.example.com"})
            answer = conn.getresponse()
            assert answer.status == 403, (answer.status, answer.read()[:200])
        finally:
            conn.close()
        tx = {"from": node.address, "to": node.address, "value": "0x0", "gas": "0x5208", "gasPrice": "0x3b9aca00", "nonce": "0x0"}
        for method, params in (("eth_sign", [node.address, "0x00"]), ("eth_sendTransaction", [tx]),
                               ("eth_signTransaction", [tx])):
            with pytest.raises(RpcError, match="request denied|unknown account|does not exist|not available"):
                rpc.call(method, *params)
    with RpcClient(net.admin_url(node.name)) as admin:  # the same node answers the vote namespace on its socket
        listed = admin.call(net.validator_rpc.list_method, "latest")
        assert sorted(a.lower() for a in listed) == sorted(n.address.lower() for n in net.nodes if n.is_validator)
    socket_path = net.state.admin_socket(node.name)
    assert socket_path.is_socket()
    assert stat.S_IMODE(socket_path.parent.stat().st_mode) == 0o700
    connect = "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])"
    python = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"  # one user `nobody` can run
    nobody = subprocess.run([python, "-c", connect, str(socket_path)], user=65534, cwd="/", capture_output=True,
                            text=True, timeout=30)
    assert nobody.returncode != 0 and "PermissionError" in nobody.stderr, nobody.stderr[-500:]


def test_killed_validator_chain_continues_and_restart_catches_up(four_orgs):
    conformance.check_killed_validator_chain_continues_and_restart_catches_up(four_orgs, grow_timeout=60, ready_timeout=60)
