"""A short CTI load run (consumers: buy + request) on a live four-org network with the contracts deployed.

The load runs in its own process (`python -m testbed.load`), like test_load.py. Checks: every
submitted CTI transaction is accounted for (included, or rejected/dropped/reverted with a
reason), and the consumer orgs' Activity counters moved by exactly the included buys
(tokens) and requests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from testbed.contracts import deploy_to_network
from testbed.network import Network
from testbed.report.data import RunData

from .conftest import NETWORKS, assert_no_process, node_pids, spec_with

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cti_net(testbed_home):
    network = Network.create(spec_with(NETWORKS / "four-orgs.yaml", name="it-load-cti", port_base=26500), progress=print)
    started = node_pids(network)
    try:
        deploy_to_network(network, progress=print)  # also starts the org Solvers
        yield network
    finally:
        from solver.manage import stop_solvers
        stop_solvers(network)
        network.down(purge=True)
        assert_no_process(started)


@pytest.fixture(scope="module")
def cti_run(cti_net):
    request = {"command": "load", "network": cti_net.name, "profile": "constant:100:5",
               "options": {"batch_size": 10, "per_user_rate": 25.0, "drain_timeout": 15.0, "users": "cti"}}
    proc = subprocess.run([sys.executable, "-m", "testbed.load", json.dumps(request)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    run_dir = Path(answer["run_dir"])
    return run_dir, answer["result"], json.loads((run_dir / "cti.json").read_text())


def test_every_cti_transaction_is_accounted_for(cti_run):
    run_dir, result, cti = cti_run
    txs = RunData.load(run_dir).txs
    kinds = Counter(t["kind"] for t in txs)
    assert set(kinds) <= {"cti_buy", "cti_request"} and kinds["cti_request"] >= 0.8 * 100 * 5 * 0.9, kinds
    statuses = Counter(t["status"] for t in txs)
    assert set(statuses) <= {"included", "rejected", "dropped", "reverted"}, statuses
    assert all(t["error"] for t in txs if t["status"] != "included"), "a failed tx without a reason"
    assert statuses["included"] >= 0.95 * len(txs), statuses
    assert result["agreement"]["agreed"], result["agreement"]


def test_activity_counters_equal_included_buys_and_requests(cti_net, cti_run):
    run_dir, _, cti = cti_run
    txs = RunData.load(run_dir).txs
    org_of = {a.lower(): org for org, accounts in cti["consumers"].items() for a in accounts}
    bought, requested = Counter(), Counter()
    for t in txs:
        if t["status"] != "included":
            continue
        org = org_of[t["sender"].lower()]
        if t["kind"] == "cti_buy":
            bought[org] += cti["buy_amount"]
        elif t["kind"] == "cti_request":
            requested[org] += 1
    # read the counters from the chain now (the load process read "before" after its set-up)
    from testbed.contracts import deployment_of
    from testbed.cti import CtiClient
    from testbed.cti.deploy import connect

    first = cti_net.keys.of(cti_net.spec.organizations[0].name).steps
    client = CtiClient(connect(cti_net.nodes[0].rpc_url), deployment_of(cti_net), first.private_key)
    for org, org_id in cti["org_ids"].items():
        now, before = client.activity(org_id), cti["activity_before"][org]
        assert now["bought"] - before["bought"] == bought[org], (org, now, before, bought)
        assert now["requested"] - before["requested"] == requested[org], (org, now, before, requested)
        # consumers take the other orgs' listings in turn: every publisher (and its Solver) gets work
        assert now["sold"] > before["sold"], (org, now, before)
    assert sum(requested.values()) > 0



@pytest.fixture(scope="module")
def mix_run(cti_net, cti_run):  # after the consumers' run: one load process at a time
    request = {"command": "load", "network": cti_net.name, "profile": "constant:60:6",
               "options": {"batch_size": 5, "per_user_rate": 10.0, "drain_timeout": 15.0, "users": "mix"}}
    proc = subprocess.run([sys.executable, "-m", "testbed.load", json.dumps(request)], capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = Path(json.loads(proc.stdout.strip().splitlines()[-1])["run_dir"])
    return run_dir, json.loads((run_dir / "cti.json").read_text())


def test_the_mix_runs_every_user_class_and_the_publishers_counters_follow(cti_net, mix_run):
    """transfers, CTI consumers (buy + request) and publishers (new listings + mints) in one Locust
    run: each class's transactions are included, and each publisher org's Published and Minted
    counters moved by exactly its included publishes and mints."""
    run_dir, cti = mix_run
    txs = RunData.load(run_dir).txs
    included = Counter(t["kind"] for t in txs if t["status"] == "included")
    for kind in ("transfer", "cti_buy", "cti_request", "cti_publish", "cti_mint"):
        assert included[kind] > 0, (kind, included)
    org_of = {a.lower(): org for org, accounts in cti["publishers"].items() for a in accounts}
    published, minted = Counter(), Counter()
    for t in txs:
        if t["status"] == "included" and t["kind"] in ("cti_publish", "cti_mint"):
            org = org_of[t["sender"].lower()]
            if t["kind"] == "cti_publish":
                published[org] += 1
            else:
                minted[org] += 1
    after = cti["activity_after"]
    for org, before in cti["activity_before"].items():
        assert after[org]["published"] - before["published"] == published[org], (org, before, after, published)
        # a new listing mints its supply (1,000) at once; every mint one more token
        assert after[org]["minted"] - before["minted"] == 1000 * published[org] + minted[org], (org, before, after)
    activity = json.loads((run_dir / "activity.json").read_text())  # the run's pedometer agrees with its events
    assert activity["mismatches"] == [] and {o["name"] for o in activity["organizations"]} == set(cti["org_ids"])
