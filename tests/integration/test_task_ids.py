"""Issue 19, live on both clients: parallel CTI requests under Locust load each get their own task.

On geth Clique a receipt read at the tip can come from a block a reorg replaces (there the same
request may have another id); on GoQuorum QBFT blocks are final. The scenario's CTI steps must
record the chain's id on both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from testbed.chain.rpc import RpcClient
from testbed.pytest_plugin import consortium_network
from testbed.report.data import RunData

from .conftest import CLIENT_SPECS, NETWORKS, spec_with, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=list(CLIENT_SPECS.values()), ids=list(CLIENT_SPECS))
def cti_net(testbed_home, request):
    """A deployed four-org network with its Solvers, once per live client (one at a time)."""
    with consortium_network(spec_with(NETWORKS / request.param, name="it-task-ids", port_base=26800), deploy=True,
                            progress=print) as network:
        yield network


def test_parallel_requests_under_load_each_get_their_own_task(cti_net):
    """Issue 19: under load, two parallel requests were both recorded as task 1 (each org read its
    receipt from its own node while a Clique tip race held the requests in different orders).
    50 requests per organization at once, through the scenario's CTI steps, while a Locust run
    sends transfers funded from the same organizations: every recorded id is distinct and is, on
    the chain, the task of the account, token and publisher the step asked for."""
    from types import SimpleNamespace as Step

    from testbed.contracts import deployment_of
    from testbed.scenario.cti import CtiActions

    per_org = 50
    orgs = [o.name for o in cti_net.spec.organizations]
    actions = CtiActions(cti_net, deployment_of(cti_net), emit=lambda *a, **k: None)
    for org in orgs:
        actions.publish(Step(org=org, alias=f"{org}-listing", title=f"{org} surge listing", price_wei=1, supply=1000))
    target = {org: orgs[(i + 1) % len(orgs)] for i, org in enumerate(orgs)}
    for org in orgs:
        actions.buy(Step(org=org, cti=f"{target[org]}-listing", amount=per_org))
    request = {"command": "load", "network": cti_net.name, "profile": "constant:150:40",
               "options": {"batch_size": 10, "per_user_rate": 25.0, "drain_timeout": 20.0}}
    load = subprocess.Popen([sys.executable, "-m", "testbed.load", json.dumps(request)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # the load accounts (funded from the organizations' funder accounts) are sending
        known = {pair.address.lower() for pairs in cti_net.keys.accounts.values() for pair in pairs}
        with RpcClient(cti_net.nodes[0].rpc_url, timeout=10) as rpc:
            def load_sending() -> bool:
                block = rpc.call("eth_getBlockByNumber", "latest", True)
                return load.poll() is not None or any(tx["from"].lower() not in known for tx in block["transactions"])

            assert wait_for(load_sending, timeout=90), "no transaction from a load account within 90 s"
        assert load.poll() is None, load.stderr.read()[-2000:]
        steps = [Step(org=org, cti=f"{target[org]}-listing", alias=f"{org}-{i}") for org in orgs for i in range(per_org)]
        with ThreadPoolExecutor(max_workers=len(steps)) as pool:
            list(pool.map(actions.request, steps))
    finally:
        out, err = load.communicate(timeout=180)
    assert load.returncode == 0, err[-3000:]
    ids = [actions.tasks[s.alias]["id"] for s in steps]
    assert len(set(ids)) == len(ids), Counter(ids).most_common(3)
    blocks = Counter(actions.tasks[s.alias]["requested_block"] for s in steps)
    assert max(blocks.values()) >= 2 * len(orgs), f"requests never shared a block: {blocks}"
    org_ids = actions.org_ids()
    reader = actions.client(orgs[0])
    for s in steps:
        task = reader.task(actions.tasks[s.alias]["id"])
        asked = (cti_net.keys.of(s.org).steps.address, actions.ctis[s.cti], org_ids[target[s.org]])
        assert (task.consumer, task.token_id, task.publisher_org) == asked, (s.alias, task)
    # and the exchange completes on this client: every org's Solver delivers each task (FINISHED
    # on the chain) and the consumer rates one
    actions.await_delivery(Step(tasks=[s.alias for s in steps], timeout=240))
    for org in orgs:
        actions.feedback(Step(task=f"{org}-0", rating=5, comment="delivered"))
    for org in orgs:
        assert reader.rating(actions.ctis[f"{org}-listing"]) == (5, 1), org
    load_txs = RunData.load(Path(json.loads(out.strip().splitlines()[-1])["run_dir"])).txs
    included = sum(t["status"] == "included" for t in load_txs)
    # the load really ran beside the requests, and every transaction of it is accounted for; how much
    # of it a busy 2-core machine includes within the drain is a benchmark figure, not this test's
    statuses = Counter(t["status"] for t in load_txs)
    print(f"load beside the requests: {dict(statuses)}")
    # (CI once saw 243 of 5,290 included on GoQuorum while the Solvers delivered beside it: a machine figure)
    assert included > 100 and set(statuses) <= {"included", "rejected", "dropped"}, statuses
