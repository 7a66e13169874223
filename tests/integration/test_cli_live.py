"""The `testbed` commands themselves, run as a user runs them (the installed script, a real GoQuorum
QBFT network): ls, status, schema, toolchain, deploy, solvers, validators, join, leave, bench
(a low rate that passes, a limit that must stop it), report, and their exit codes.

One network for the module (brought up and taken down through the CLI). Each test stands on its
own: it needs only that network (and, where it says so, the deployed contracts), so the tests
pass in any order.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from testbed.network import Network

from .conftest import NETWORKS, assert_no_process, node_pids, wait_for

pytestmark = pytest.mark.integration

TESTBED = str(Path(sys.executable).with_name("testbed"))
NAME = "it-cli"


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([TESTBED, *args], capture_output=True, text=True, timeout=timeout)


def ok(*args: str, timeout: float = 600) -> str:
    proc = run_cli(*args, timeout=timeout)
    assert proc.returncode == 0, f"testbed {' '.join(args)} -> {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc.stdout


def validator_table(text: str) -> dict[str, set[str]]:
    """`testbed validators`' table: node -> the validators it reports."""
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in text.splitlines() if line.count("│") == 3]
    assert text.rstrip().endswith("agreed") and "NOT" not in text, text
    return {node: {v.strip() for v in listed.split(",")} for node, listed in rows if node != "node"}


@pytest.fixture(scope="module")
def cli_net(testbed_home, tmp_path_factory):
    """four-orgs (GoQuorum QBFT) plus one member node of the first org, up through `testbed up`."""
    data = yaml.safe_load((NETWORKS / "four-orgs.yaml").read_text())
    data.update(name=NAME, ports={"base": 27400})
    data["organizations"][0]["members"] = 1
    spec = tmp_path_factory.mktemp("cli") / "net.yaml"
    spec.write_text(yaml.safe_dump(data))
    up = run_cli("up", str(spec), timeout=300)
    pids = node_pids(Network.load(NAME)) if up.returncode == 0 else []
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        yield Network.load(NAME)
    finally:
        down = run_cli("down", NAME, "--purge", timeout=300)
        assert down.returncode == 0, down.stderr[-2000:]
        assert_no_process(pids)


@pytest.fixture(scope="module")
def deployed(cli_net):
    out = ok("deploy", "--network", NAME)
    assert "Tasks" in out and "Listings" in out or "CTI contracts" in out, out
    return cli_net


def test_ls_status_schema_and_toolchain(cli_net):
    assert NAME in ok("ls")
    listed = {row["network"]: row for row in json.loads(ok("ls", "--json"))}
    assert listed[NAME]["running"] == listed[NAME]["nodes"] == len(cli_net.nodes)
    assert listed[NAME]["clients"] == ["goquorum"] and listed[NAME]["engine"] == "qbft"
    assert ok("--version").startswith("testbed ")
    status = ok("status", NAME)
    assert all(n.name in status for n in cli_net.nodes), status
    schema = json.loads(ok("schema", "network"))
    assert {"organizations", "consensus", "client"} <= set(schema["properties"])
    assert "goquorum" in ok("toolchain", "--check")


def test_solvers_stop_status_start(deployed):
    ok("solvers", "start", "--network", NAME)
    running = json.loads(ok("solvers", "status", "--network", NAME, "--json"))
    assert {r["org"] for r in running if r["alive"]} == set(deployed.organizations), running
    ok("solvers", "stop", "--network", NAME, "--org", deployed.organizations[0])
    after = {r["org"]: r["alive"] for r in json.loads(ok("solvers", "status", "--network", NAME, "--json"))}
    assert after[deployed.organizations[0]] is False and all(after[o] for o in deployed.organizations[1:]), after
    ok("solvers", "start", "--network", NAME)
    again = json.loads(ok("solvers", "status", "--network", NAME, "--json"))
    assert all(r["alive"] for r in again), again


def test_cti_publish_lists_a_misp_event_that_another_org_receives_attribute_by_attribute(deployed):
    """`testbed cti publish` of the shipped MISP event (attributes and file/url/domain-ip objects):
    listed on-chain under its uuid and the hash of what the publisher's store holds; another org
    requests it and its Solver-delivered copy equals the file, attribute by attribute."""
    from eth_utils import keccak

    from solver import manage
    from solver.consumer import Consumer
    from testbed.contracts import deployment_of
    from testbed.cti.deploy import connect
    from testbed.cti.misp import attribute_rows, parse_event

    event_file = NETWORKS.parent / "events" / "phishing-campaign.json"
    publisher, consumer_org = deployed.organizations[0], deployed.organizations[1]
    ok("solvers", "start", "--network", NAME)  # whatever an earlier test left stopped
    listed = json.loads(ok("cti", "publish", "--network", NAME, "--org", publisher, "--event", str(event_file),
                           "--price-wei", "1", "--json"))
    original = parse_event(event_file.read_bytes())
    stored = (manage.intel_dir(deployed, publisher) / f"{listed['misp_uuid']}.json").read_bytes()
    assert listed["misp_uuid"] == str(original.uuid) and listed["content_hash"] == "0x" + keccak(stored).hex()
    assert listed["objects"] and listed["title"] == original.info
    consumer = Consumer(connect(manage.node_of(deployed, consumer_org).rpc_url, timeout=60), deployment_of(deployed),
                        manage.role_accounts(deployed, consumer_org).consumer.private_key,
                        manage.consumer_dir(deployed, consumer_org))
    listing = consumer.cti.listing(listed["token"])
    assert listing.misp_uuid == listed["misp_uuid"] and "0x" + listing.content_hash.hex() == listed["content_hash"]
    task = consumer.request(listed["token"])
    assert wait_for(lambda: consumer.poll() == 0, timeout=120), consumer.rows()
    delivery = consumer.fetch(task)
    assert attribute_rows(delivery.event) == attribute_rows(original)
    assert {o.name for o in delivery.event.objects} == {"file", "url", "domain-ip"}
    bad = run_cli("cti", "publish", "--network", NAME, "--org", "nobody", "--event", str(event_file))
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1


def test_validators_list_add_and_remove(cli_net):
    member = next(n.name for n in cli_net.nodes if n.role == "member")
    before = validator_table(ok("validators", "--network", NAME))
    assert set(before) == {n.name for n in cli_net.nodes} and all(member not in v for v in before.values()), before
    ok("validators", "add", member, "--network", NAME, timeout=300)
    assert all(member in v for v in validator_table(ok("validators", "--network", NAME)).values())
    ok("validators", "remove", member, "--network", NAME, timeout=300)
    assert all(member not in v for v in validator_table(ok("validators", "--network", NAME)).values())
    as_json = json.loads(ok("validators", "--network", NAME, "--json"))
    assert as_json["agreed"] and sorted(v["node"] for v in as_json["validators"]) == sorted(
        n.name for n in cli_net.nodes if n.role == "validator")
    assert set(as_json["per_node"]) == {n.name for n in cli_net.nodes}
    refused = run_cli("validators", "remove", member, "--network", NAME)
    assert refused.returncode == 2 and "is not a validator" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_join_then_leave(deployed):
    joined = ok("join", "newco-csirt", "--network", NAME, timeout=600)
    assert "newco-csirt" in joined
    assert "newco-csirt" in Network.load(NAME).organizations
    ok("leave", "newco-csirt", "--network", NAME, timeout=600)
    assert "newco-csirt" not in Network.load(NAME).organizations
    again = run_cli("leave", "newco-csirt", "--network", NAME)
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1, again.stderr


def _bench(*args: str) -> tuple[int, dict, Path]:
    proc = run_cli("bench", "--network", NAME, "--step-seconds", "6", *args, timeout=600)
    match = re.search(r"report: (\S+)/report\.html", proc.stdout)
    assert match, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    run_dir = Path(match.group(1))
    return proc.returncode, json.loads((run_dir / "bench.json").read_text()), run_dir


def test_bench_a_rate_that_holds_and_a_limit_that_must_stop_it(cli_net, tmp_path):
    code, held, run_dir = _bench("--rates", "40", "--csv", str(tmp_path / "locust"), "--html", str(tmp_path / "locust.html"))
    assert code == 0
    # Locust's own files, as `locust --csv --html` writes them
    stats = (tmp_path / "locust_stats.csv").read_text().splitlines()
    assert stats[0].startswith("Type,Name,Request Count") and any(",Aggregated," in row for row in stats), stats[:3]
    assert len((tmp_path / "locust_stats_history.csv").read_text().splitlines()) > 2  # a row a second or so
    assert (tmp_path / "locust_failures.csv").is_file() and "locust" in (tmp_path / "locust.html").read_text().lower()
    step = held["steps"][0]
    assert len(held["steps"]) == 1 and held["stop_reason"].startswith("reached the last step"), held["stop_reason"]
    assert step["included_ratio"] >= 0.95 and held["max_sustainable_target_tps"] == 40
    assert held["max_sustainable_included_tps"] == step["included_tps_steady"] > 0
    # submit -> inclusion takes most of a 1 s block: a 0.2 s p95 limit must stop the very first step
    proc = run_cli("bench", "--network", NAME, "--step-seconds", "6", "--rates", "40,80,120", "--p95-limit", "0.2",
                   "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]  # the nodes agreed; the stop is the bench's finding, not a failure
    answer = json.loads(proc.stdout)  # --json: one document on stdout, progress on stderr
    stopped = json.loads((Path(answer["run_dir"]) / "bench.json").read_text())
    assert answer["result"]["stop_reason"] == stopped["stop_reason"] and Path(answer["report"]).is_file()
    assert len(stopped["steps"]) == 1 and stopped["stop_reason"].endswith("at 40 tx/s"), stopped["stop_reason"]
    assert stopped["steps"][0]["latency"]["p95_s"] > 0.2
    assert stopped["max_sustainable_included_tps"] is None
    # the report comes back from the run directory alone
    (run_dir / "report.html").unlink()
    assert "report:" in ok("report", str(run_dir))
    assert "max sustainable included TPS" in (run_dir / "report.html").read_text()


def test_bad_names_get_one_line_and_exit_2(cli_net):
    for args in (["validators", "add", "nosuch-v9", "--network", NAME], ["status", "no-such-net"],
                 ["down", "../victim", "--purge"], ["report", "/no/such/run"]):
        proc = run_cli(*args)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
