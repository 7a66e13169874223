"""A real four-organization GoQuorum QBFT network on the netns backend (needs root).

One namespace per organization on a bridge in 198.18.0.0/15. The tests share one network
and run in file order: peering, nodes inside their namespaces, a 200 ms link, a 2|2
partition and its heal, crash and restart, and a `down` that leaves nothing behind.
Every fault is healed in `finally`; the fixture tears the network down even on failure.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import time
from pathlib import Path

import psutil
import pytest

from testbed.network import Network
from testbed.engines import engine_of
from testbed.watchdog import StallWatchdog

from .conftest import NETWORKS, assert_no_process, node_pids, observe, spec_with, wait_for, wait_until_steady

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="the netns backend needs root"),
]

NAME = "it-netns-four"


@pytest.fixture(scope="module")
def netns_net(testbed_home):
    spec = spec_with(NETWORKS / "four-orgs-netns.yaml", name=NAME, port_base=25000)
    started = time.monotonic()
    network = Network.create(spec, progress=print, timeout=180)
    print(f"netns network ready in {time.monotonic() - started:.1f}s")
    pids = node_pids(network)
    plan = network.backend.plan
    try:
        yield network
    finally:
        # `down` is checked here, after every test of the module whatever their order
        try:
            running = sorted(network.running_nodes())
            assert sorted(network.down(purge=True)) == running
        finally:
            network.backend.teardown()
            assert_no_process(pids)
        namespaces, links, routes = (os.popen(c).read() for c in ("ip netns list", "ip -o link", "ip -4 route"))
        assert plan.namespace_prefix not in namespaces, namespaces
        assert plan.link_prefix not in links, links
        assert str(plan.subnet) not in routes, routes



def rpc_round_trip_ms(host: str, port: int, samples: int = 9) -> float:
    """Median time of one JSON-RPC call over a kept-alive HTTP connection (a ping over RPC)."""
    conn = http.client.HTTPConnection(host, port, timeout=20)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "web3_clientVersion", "params": []})
    times = []
    try:
        for _ in range(samples):
            start = time.perf_counter()
            conn.request("POST", "/", body, {"Content-Type": "application/json"})
            conn.getresponse().read()
            times.append((time.perf_counter() - start) * 1000)
    finally:
        conn.close()
    return statistics.median(times)


def test_every_node_peered_agreeing_and_on_its_own_address(netns_net):
    status = netns_net.status()
    for node in status.nodes:
        assert node.process_alive, node.plan.name
        assert node.snapshot.peers == 3, (node.plan.name, node.snapshot.peers)
        assert node.plan.host.startswith("198.18.") or node.plan.host.startswith("198.19."), node.plan.host
    assert len({n.plan.host for n in status.nodes}) == 4
    result = netns_net.agreement(full=True, settle=15)
    assert result.agreed, result.summary()
    assert result.common_height >= 3


def test_each_node_runs_inside_its_organizations_namespace_with_its_own_pid(netns_net):
    backend = netns_net.backend
    for node in netns_net.nodes:
        proc = netns_net.process(node.name)
        assert proc is not None and backend.is_alive(proc)
        p = psutil.Process(proc.pid)
        assert Path(p.cmdline()[0]).name == "geth"  # `ip netns exec` exec'd: the pid is geth's own
        ns_file = Path("/run/netns") / backend.namespace_of(node.org)
        assert os.stat(f"/proc/{proc.pid}/ns/net").st_ino == ns_file.stat().st_ino
        assert os.stat(f"/proc/{proc.pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino


def test_delay_200ms_on_one_org_is_measured_and_heals(netns_net):
    """The delay is on that org's link only and goes with heal: judged against the injected 200 ms
    (each round trip crosses the delayed link once), not against an absolute speed."""
    slow, fast = netns_net.nodes[1], netns_net.nodes[0]
    base = rpc_round_trip_ms(slow.host, slow.ports.http)
    base_other = rpc_round_trip_ms(fast.host, fast.ports.http)
    try:
        netns_net.backend.delay(slow.org, 200)
        delayed = rpc_round_trip_ms(slow.host, slow.ports.http)
        other = rpc_round_trip_ms(fast.host, fast.ports.http)
    finally:
        netns_net.backend.heal()
    healed = rpc_round_trip_ms(slow.host, slow.ports.http)
    print(f"RPC round trip to {slow.org}: {base:.1f} ms, delayed {delayed:.1f} ms, healed {healed:.1f} ms; "
          f"{fast.org} {base_other:.1f} ms before, {other:.1f} ms meanwhile")
    assert 195 <= delayed - base <= 350, (base, delayed)  # the delay is there, once per round trip
    assert other - base_other < 195, (base_other, other)  # another org's link is not delayed
    assert healed - base < 195, (base, healed)  # and heal takes it away
    assert json.loads(netns_net.backend.state_file.read_text())["rules"] == []


def _heads(network: Network) -> dict[str, int]:
    snaps = network.snapshots()
    assert all(s.reachable and s.head_number is not None for s in snaps), [s.error for s in snaps]
    return {s.node: s.head_number for s in snaps}


def test_partition_two_by_two_stalls_both_halves_then_heal_rejoins_one_chain(netns_net):
    """QBFT (the default): a half holds 2 of 4 validators, less than the 3 a commit needs, so
    neither half adds a block (one already being committed at the cut may land), nothing forks,
    and after the heal the chain resumes with no node rewound.

    Clique lets a signer seal at most one of every floor(N/2)+1 consecutive blocks (N=4:
    one in 3). After the cut, a half with 2 signers can seal at most 2 blocks; then both of
    its signers are among the last 2 signers and neither may seal: each half stalls at most
    2 blocks above the highest block that existed at the cut, and no block sealed after the
    cut is held by both halves. (The two signers of a half may even seal competing blocks
    at the same height and keep one each; that is Clique too, so no test asks a half to agree.)
    After heal, the heavier branch wins (or, on a tie that leaves every signer able to seal
    on the other branch only, the stall watchdog rewinds the losing side), the chain moves
    on, and every node agrees at every height."""
    final = engine_of(netns_net.spec).final
    orgs = [o.name for o in netns_net.spec.organizations]
    groups = [orgs[:2], orgs[2:]]
    halves = [[n.name for n in netns_net.nodes if n.org in g] for g in groups]
    try:
        netns_net.backend.partition(groups)
        at_cut = max(_heads(netns_net).values())
        # each half stops within a few blocks (1 s period); then no head may move for 10 s more
        before = wait_until_steady(lambda: _heads(netns_net), steady_s=5, timeout=60)
        assert before is not None, f"the chain kept growing 60 s into a 2|2 partition: {_heads(netns_net)}"
        window = observe(lambda: _heads(netns_net), seconds=10)
        after = window[-1]
        print(f"partitioned at #{at_cut}: heads {after}")
        assert all(h == before for h in window), f"the chain kept growing during a 2|2 partition: {window}"
        assert max(after.values()) <= at_cut + (1 if final else 2), (at_cut, after)
        held_heights = list(range(1, min(after.values()) + 1))
        held = {s.node: {h: s.hashes.get(h) for h in held_heights} for s in netns_net.snapshots(held_heights)}
        tops = [min(after[n] for n in half) for half in halves]
        if min(tops) > at_cut:
            heights = list(range(at_cut + 1, min(tops) + 1))
            snaps = {s.node: s for s in netns_net.snapshots(heights)}
            for h in heights:
                assert not ({snaps[n].hashes.get(h) for n in halves[0]} & {snaps[n].hashes.get(h) for n in halves[1]}), \
                    f"block #{h} is held by both halves of the partition"
    finally:
        netns_net.backend.heal()
    # equal-weight branches can leave Clique stuck after a 2|2 split; the stall watchdog (what
    # load runs and scenarios use) rewinds the nodes off the chosen branch when no head moves
    target = max(after.values()) + 3
    with StallWatchdog(netns_net, progress=print) as dog:
        rejoined = wait_for(lambda: all((s.head_number or 0) >= target and (s.peers or 0) == 3
                                        for s in netns_net.snapshots()), timeout=180)
    print(f"after heal: watchdog interventions {dog.interventions or 'none (the heavier branch won)'}")
    assert rejoined, f"the network did not rejoin and grow to #{target} after heal: " + \
        ", ".join(f"{s.node} #{s.head_number} ({s.peers} peers)" for s in netns_net.snapshots())
    result = netns_net.agreement(full=True, settle=15)
    assert result.agreed, result.summary()
    assert result.heights_checked == result.common_height + 1
    if final:  # BFT: what each node held at the split is still its chain (no rewind, no reorg)
        assert not dog.interventions
        now = {s.node: {h: s.hashes.get(h) for h in held_heights} for s in netns_net.snapshots(held_heights)}
        assert now == held, "a node's blocks from before the heal changed"


def test_crash_and_restart_inside_the_namespace(netns_net):
    victim = netns_net.nodes[2]
    old = netns_net.process(victim.name)
    netns_net.kill_node(victim.name)
    assert not psutil.pid_exists(old.pid), "kill returned before the node's process had exited"
    assert netns_net.process(victim.name) is None
    netns_net.start_node(victim.name)
    netns_net.wait_ready(new_blocks=2, timeout=120)
    proc = netns_net.process(victim.name)
    ns_file = Path("/run/netns") / netns_net.backend.namespace_of(victim.org)
    assert os.stat(f"/proc/{proc.pid}/ns/net").st_ino == ns_file.stat().st_ino
    assert netns_net.agreement(full=True, settle=15).agreed
