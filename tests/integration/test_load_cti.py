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

from solver.manage import solver_orgs
from testbed.pytest_plugin import consortium_network
from testbed.report.data import RunData

from .conftest import NETWORKS, assert_no_process, node_pids, spec_with, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cti_net(testbed_home):
    spec = spec_with(NETWORKS / "four-orgs.yaml", name="it-load-cti", port_base=26500)
    with consortium_network(spec, deploy=True, progress=print) as network:  # deploying starts the org Solvers
        started = node_pids(network)
        # the monitor's directory: the Solvers write their figures there (solver/metrics.py), as
        # they do while 'testbed monitor up' runs (node-exporter serves them to Prometheus)
        (network.state.root / "monitor").mkdir(exist_ok=True)
        yield network
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


def test_every_cti_transaction_is_accounted_for(cti_net, cti_run):
    run_dir, result, cti = cti_run
    txs = RunData.load(run_dir).txs
    kinds = Counter(t["kind"] for t in txs)
    assert set(kinds) <= {"cti_buy", "cti_request"} and kinds["cti_request"] > 0, kinds
    statuses = Counter(t["status"] for t in txs)
    assert set(statuses) <= {"included", "rejected", "dropped", "reverted"}, statuses
    assert all(t["error"] for t in txs if t["status"] != "included"), "a failed tx without a reason"
    # correctness, not speed: nothing a node accepted was lost (the rates are benchmarks/load_cti.py's)
    assert statuses["included"] > 0 and not statuses["dropped"], statuses
    assert result["agreement"]["agreed"], result["agreement"]
    # the org Solvers are sampled beside the nodes and the generator, and counted apart from the nodes
    sampled = {r["process"] for r in RunData.load(run_dir).resources}
    assert {f"solver-{org}" for org in solver_orgs(cti_net)} <= sampled, sampled
    assert len(solver_orgs(cti_net)) == 4


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


def test_every_solver_publishes_its_queue_and_deliveries(cti_net, cti_run):
    """Each org's Solver process writes its metrics file: once the tasks are done, the tasks it saw
    finished equal its org's Solved counter on the chain (a fresh deployment: both from zero), its
    delivery-time histogram counts each of them, and its queue is empty."""
    from prometheus_client.parser import text_string_to_metric_families

    from testbed.contracts import deployment_of
    from testbed.cti import CtiClient
    from testbed.cti.deploy import connect

    client = CtiClient(connect(cti_net.nodes[0].rpc_url), deployment_of(cti_net),
                       cti_net.keys.of(cti_net.spec.organizations[0].name).steps.private_key)
    org_ids = cti_run[2]["org_ids"]

    def figures(org: str) -> dict[str, float]:
        path = cti_net.state.root / "monitor" / f"solver-{org}.prom"
        text = path.read_text() if path.is_file() else ""
        return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name in ("testbed_solver_finished_total", "testbed_solver_delivery_seconds_count",
                              "testbed_solver_queue")}

    def settled() -> bool:
        return all(figures(org).get("testbed_solver_finished_total") == client.activity(org_id)["solved"]
                   and figures(org).get("testbed_solver_queue") == 0 for org, org_id in org_ids.items())

    assert wait_for(settled, timeout=90), {org: (figures(org), client.activity(i)["solved"]) for org, i in org_ids.items()}
    assert sum(figures(org)["testbed_solver_finished_total"] for org in org_ids) > 0
    for org in org_ids:
        assert figures(org)["testbed_solver_delivery_seconds_count"] == figures(org)["testbed_solver_finished_total"]



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


LOCUST = str(Path(sys.executable).with_name("locust"))
LOCUSTFILE = str(Path(__file__).resolve().parents[2] / "testbed" / "load" / "locustfile.py")


def _run_dir(output: str) -> Path:
    found = [line.split(": ", 1)[1].strip() for line in output.splitlines() if line.startswith("testbed run directory: ")]
    assert len(found) == 1, output[-3000:]
    return Path(found[0])


def test_plain_locust_runs_every_user_class_headless(cti_net):
    """`locust -f testbed/load/locustfile.py --headless` with no class named: transfers, CTI
    consumers and publishers all run, their transactions are included, and the run directory
    holds the records, the pedometer and the report."""
    proc = subprocess.run([LOCUST, "-f", LOCUSTFILE, "--headless", "-u", "6", "-r", "6", "-t", "12s", "--network",
                           cti_net.name, "--per-user-rate", "10", "--batch", "5", "--max-rate", "60", "--only-summary"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = _run_dir(proc.stdout + proc.stderr)
    included = Counter(t["kind"] for t in RunData.load(run_dir).txs if t["status"] == "included")
    assert included["transfer"] > 0 and included["cti_request"] > 0 and included["cti_publish"] > 0, included
    assert (run_dir / "cti.json").is_file() and (run_dir / "report.html").is_file()
    assert json.loads((run_dir / "activity.json").read_text()), "no pedometer in the run directory"


def test_plain_locust_master_and_two_workers_fund_once_and_merge_their_rows(cti_net, tmp_path):
    """`locust --master --expect-workers 2` and two `locust --worker` processes: each worker makes
    its accounts, the master funds them in one pass, and the master's record holds both workers' rows."""
    port = str(cti_net.spec.ports.base + 90)  # in this module's port block, which no node uses
    common = ["-f", LOCUSTFILE, "--network", cti_net.name, "--per-user-rate", "20", "--batch", "5",
              "--max-rate", "80", "TransferUser"]
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    master = subprocess.Popen([LOCUST, *common, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
                               "--expect-workers", "2", "--headless", "-u", "4", "-r", "4", "-t", "10s", "--only-summary"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workers = [subprocess.Popen([LOCUST, *common, "--worker", "--master-host", "127.0.0.1", "--master-port", port],
                                stdout=log.open("w"), stderr=subprocess.STDOUT) for log in logs]
    try:
        out, _ = master.communicate(timeout=300)
        for w in workers:
            w.wait(timeout=60)
    finally:
        for p in (master, *workers):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert master.returncode == 0, out[-3000:]
    assert_no_process([master.pid, *(w.pid for w in workers)])
    assert out.count("funding ") == 1, out[-3000:]  # one funding pass, by the master
    assert not any("funding " in log.read_text() for log in logs)
    data = RunData.load(_run_dir(out))
    included = [t for t in data.txs if t["status"] == "included"]
    assert included and {t["kind"] for t in data.txs} == {"transfer"}
    assert {"generator-w0", "generator-w1"} <= {r["process"] for r in data.resources}
    senders = {t["sender"] for t in included}
    assert len(senders) >= 2, senders
