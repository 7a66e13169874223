"""Solvers on a live four-org geth Clique network: every org requests every other org's CTI,
one Solver is SIGKILLed at every step while tasks are in flight, and one goes on through its
org's second node when its first one crashes.

SOLVER_CRASH_TASKS sets how many tasks the crash test runs (default 100).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter

import pytest
from web3.logs import DISCARD

from solver import manage, sandbox
from solver.consumer import Consumer
from solver.crash import DELIVER_POINTS
from solver.records import load_tasks
from solver.seed import seed_network
from solver.watch import TASK_CHANGED, org_topic
from testbed.contracts import deployment_of
from testbed.cti import TaskState
from testbed.cti.deploy import connect
from testbed.cti.misp import attribute_rows, parse_event
from testbed.cti.tx import contract_tx
from testbed.pytest_plugin import consortium_network
from testbed.watchdog import StallWatchdog
from tests.integration.conftest import NETWORKS, assert_no_process, node_pids, spec_with

pytestmark = pytest.mark.integration
CRASH_TASKS = int(os.environ.get("SOLVER_CRASH_TASKS", "100"))
FAILOVER_ORG = "globex-soc"  # runs a validator and a member node here


@pytest.fixture(scope="module")
def net(testbed_home):
    base = spec_with(NETWORKS / "four-orgs.yaml", name="it-solver", port_base=28200)
    orgs = [o.model_dump() | ({"members": 1} if o.name == FAILOVER_ORG else {}) for o in base.organizations]
    spec = spec_with(NETWORKS / "four-orgs.yaml", name="it-solver", port_base=28200, organizations=orgs)
    with consortium_network(spec, deploy=True, progress=print) as network:  # deploying starts every org's Solver
        pids = node_pids(network) + [manage.running(network, org.name).pid for org in network.spec.organizations]
        yield network
    assert_no_process(pids)


def consumer_for(net, org: str) -> Consumer:
    return Consumer(connect(manage.node_of(net, org).rpc_url, timeout=60), deployment_of(net),
                    manage.role_accounts(net, org).consumer.private_key, manage.consumer_dir(net, org))


def request_many(consumer: Consumer, token: int, count: int) -> list[int]:
    """`count` requests sent back to back (client-side signed, not awaited one by one)."""
    cti = consumer.cti
    cti.buy(token, count)
    started = time.time()
    sent = [cti.signer.send("Tasks.request", contract_tx(cti.c["Tasks"], "request", [token, consumer.public_key]))
            for _ in range(count)]
    ids = []
    for tx_hash in sent:
        receipt = cti.signer.wait("Tasks.request", tx_hash)
        task_id = int(cti.c["Tasks"].events.TaskChanged().process_receipt(receipt, errors=DISCARD)[0]["args"]["taskId"])
        consumer.track(task_id, token, requested_at=started)
        ids.append(task_id)
    return ids


def finished_counts(net, org: str) -> Counter:
    w3 = consumer_for(net, org).w3
    dep = deployment_of(net)
    org_id = consumer_for(net, org).cti.org_of(manage.role_accounts(net, org).solver.address)[0]
    logs = w3.eth.get_logs({"address": dep.address("Tasks"), "fromBlock": dep.contracts["Tasks"].block,
                            "toBlock": "latest", "topics": [TASK_CHANGED, None, None, org_topic(org_id)]})
    return Counter(int(bytes(e["topics"][1]).hex(), 16) for e in logs if int(bytes(e["data"]).hex(), 16) == TaskState.FINISHED)


def test_every_org_requests_every_other_orgs_cti_and_every_delivery_verifies(net):
    orgs = [o.name for o in net.spec.organizations]
    tokens = {org: seed_network(net, org, 1, progress=print)[0].token_id for org in orgs}
    consumers = {org: consumer_for(net, org) for org in orgs}
    tasks = {org: [consumers[org].request(tokens[other]) for other in orgs if other != org] for org in orgs}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(c.poll() for c in consumers.values()):
        time.sleep(0.5)
    publisher_of = {tokens[o]: o for o in orgs}
    for org, consumer in consumers.items():
        assert consumer.status() == {"consumed": len(orgs) - 1}, (org, consumer.rows())
        for row in consumer.rows():
            assert row["rated"] == 5
            assert consumer.cti.task(row["task_id"]).state == TaskState.FINISHED
            # the event received is the one its publisher stored, attribute by attribute (objects' too)
            received = parse_event(next((manage.consumer_dir(net, org) / "received").glob(f"{row['task_id']}-*.json"))
                                   .read_bytes())
            published = parse_event((manage.intel_dir(net, publisher_of[row["token_id"]]) / f"{str(received.uuid).lower()}.json")
                                    .read_bytes())
            assert published.objects and attribute_rows(received) == attribute_rows(published), (org, row["task_id"])
    records = [manage.solver_dir(net, o) / "tasks.jsonl" for o in orgs]
    records += [manage.consumer_dir(net, o) / "tasks.jsonl" for o in orgs]
    merged = load_tasks(records)
    all_tasks = [t for ids in tasks.values() for t in ids]
    latencies = sorted(merged[t]["request_to_finished"] for t in all_tasks)
    print(f"request->finished (block time) over {len(latencies)} tasks: min {latencies[0]} s, "
          f"median {latencies[len(latencies) // 2]} s, max {latencies[-1]} s")
    assert all(merged[t]["solver"]["outcome"] == "finished" for t in all_tasks)
    for org in orgs:
        assert set(finished_counts(net, org).values()) == {1}


def test_solver_killed_at_every_step_finishes_every_task_exactly_once(net):
    orgs = [o.name for o in net.spec.organizations]
    publisher, consumers = orgs[0], [consumer_for(net, o) for o in orgs[1:]]
    token = seed_network(net, publisher, 1, supply=CRASH_TASKS + 10, progress=print)[0].token_id
    solver_address = manage.role_accounts(net, publisher).solver.address
    w3 = consumers[0].w3
    before = set(finished_counts(net, publisher))
    nonce_before = w3.eth.get_transaction_count(solver_address)
    manage.stop_solvers(net, orgs=[publisher])

    shares = [CRASH_TASKS // len(consumers) + (1 if i < CRASH_TASKS % len(consumers) else 0) for i in range(len(consumers))]
    tasks = [t for c, n in zip(consumers, shares) for t in request_many(c, token, n)]
    assert len(tasks) == CRASH_TASKS
    started = time.monotonic()
    kills = Counter()
    chain = consumers[0].cti

    def crash_lines(point: str) -> int:
        log = manage.log_file(net, publisher)
        return log.read_text(errors="replace").count(f"fault injection: SIGKILL after {point}\n") if log.exists() else 0

    def all_finished() -> bool:
        return all(chain.task(t).state == TaskState.FINISHED for t in tasks)

    # every step, first at its first occurrence, then deeper into the batch; stop once all are done
    plan = [(point, k) for k in (1, 10, 40) for point in DELIVER_POINTS]
    for point, k in plan:
        if kills and chain.task(tasks[-1]).state == TaskState.FINISHED and all_finished():
            break
        said_before = crash_lines(point)
        manage.start_one(net, publisher, extra=["--crash-after", f"{point}:{k}"])
        deadline = time.monotonic() + 15
        while manage.running(net, publisher) and time.monotonic() < deadline:
            time.sleep(0.1)
        if manage.running(net, publisher):  # this step did not come up k times: stop it and go on
            manage.stop_solvers(net, orgs=[publisher])
        else:  # it ended, and by that kill: its log's last words name this crash point
            assert crash_lines(point) == said_before + 1, \
                f"the Solver ended without its SIGKILL after {point}: {manage.log_file(net, publisher).read_text()[-1500:]}"
            kills[point] += 1
    manage.start_one(net, publisher)  # and now let it finish
    manage.wait_ready(net, [publisher])  # its endpoint serves again (consumers fetch from it below)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all_finished():
        time.sleep(1)
    elapsed = time.monotonic() - started
    counts = finished_counts(net, publisher)
    mine = {t: counts.get(t, 0) for t in tasks}
    print(f"crash test: {len(tasks)} tasks, SIGKILLs by step {dict(kills)}, all finished after {elapsed:.0f} s; "
          f"Finished events per task: {Counter(mine.values())}")
    assert set(counts) - before == set(tasks)
    assert all(n == 1 for n in mine.values()), {t: n for t, n in mine.items() if n != 1}
    assert sum(kills.values()) >= len(DELIVER_POINTS)
    # one deliver per task, nothing else signed by the Solver's account
    assert w3.eth.get_transaction_count(solver_address) == nonce_before + len(tasks)
    # and every delivery still fetches, verifies against the chain, decrypts and validates
    # for its consumer (no rating here: one rating tx per task would dominate the runtime)
    for c in consumers:
        for row in c.rows():
            if row["task_id"] in set(tasks):
                delivery = c.fetch(row["task_id"])
                assert delivery.event.attributes


def test_a_solver_whose_node_crashes_goes_on_through_its_orgs_other_node(net):
    """The Solver's provider lists its org's nodes (validator first, then the member node); with
    the validator SIGKILLed, a request for the org's CTI is still accepted and finished by the
    same Solver process, through the member node, never through another org's node."""
    org = FAILOVER_ORG
    first, *others = net.org_rpc_urls(org)
    assert others and first == manage.node_of(net, org).rpc_url
    token = seed_network(net, org, 1, progress=print)[0].token_id
    consumer = consumer_for(net, "initech-isac")
    solver_pid = manage.running(net, org).pid
    crashed = manage.node_of(net, org).name
    # Three signers of four is Clique's minimum: equal-difficulty branches can deadlock it (go-ethereum
    # #18402; CI once saw the buy below wait 120 s). The watchdog an operator runs rewinds such a stall.
    watchdog = StallWatchdog(net, progress=print).start()
    net.kill_node(crashed)
    try:
        task = consumer.request(token)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and consumer.cti.task(task).state != TaskState.FINISHED:
            time.sleep(0.5)
        assert consumer.cti.task(task).state == TaskState.FINISHED, manage.log_file(net, org).read_text()[-2000:]
        assert manage.running(net, org).pid == solver_pid  # the same process went on
        log = manage.log_file(net, org).read_text()
        assert f"node {first} unreachable" in log and f"using {others[0]}" in log
    finally:
        print("watchdog interventions:", watchdog.stop())
        net.start_node(crashed)
        net.wait_ready(new_blocks=1, only=net.running_nodes())


def test_a_solver_can_read_only_its_own_organizations_secrets(net):
    """Inside a Solver's mount namespace: its org's account keys and its own directory; no other
    org's keys or intelligence, no node key, no operator key. Outside, all of them exist."""
    assert sandbox.available(), "these tests run as root with util-linux (mount namespaces)"
    orgs = [o.name for o in net.spec.organizations]
    org, other = orgs[0], orgs[1]
    pid = manage.running(net, org).pid
    root = net.state.root

    def inside(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", "-t", str(pid), "-m", "--", *cmd], capture_output=True, text=True, timeout=30)

    own = root / "keys" / "accounts" / f"{org}.json"
    assert inside("cat", str(own)).stdout == own.read_text()
    secrets = [root / "keys" / "accounts" / f"{other}.json", root / "keys" / "operator.key",
               next((root / "keys" / "nodes").glob("*.key")), manage.intel_dir(net, other),
               next(root.glob("nodes/*/data/geth/nodekey"))]
    for path in secrets:
        assert path.exists(), path  # there for the harness
        seen = inside("ls", "-d", str(path))
        assert seen.returncode != 0 and "No such file" in seen.stderr, (path, seen.stdout)
    assert inside("ls", str(root / "solvers")).stdout.split() == [org]
    assert inside("ls", str(root / "nodes")).stdout.split() == []
    assert inside("test", "-w", str(own)).returncode != 0  # its keys are read-only there
    log = manage.log_file(net, org).read_text()
    assert f"{org}'s account keys only" in log
