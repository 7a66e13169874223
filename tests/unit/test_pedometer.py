"""The pedometer read from a chain (eth-tester): counters at a block, their change since another,
the same recomputed from the Step events, and every task's timeline; then the report built
from a run directory holding it."""

from __future__ import annotations

import json

from testbed.cti.pedometer import read_pedometer
from testbed.report import render
from tests.unit.helpers_cti import address_for, content_hash, world, world_once  # noqa: F401 (fixtures)

PRICE = 10**15


def exchange(world) -> tuple[int, int, int]:  # noqa: F811
    """acme lists; bravo buys 2 and requests twice; acme's Solver finishes one (rated 4) and
    rejects the other; cyber likes the listing. Returns (token, finished task, rejected task)."""
    pub, sol, con = world.client("acme.pub"), world.client("acme.sol"), world.client("bravo.con")
    token = pub.publish("5f1c0000-0000-4000-8000-000000000001", "C2 domains", content_hash("x"), PRICE, 10,
                        [address_for("acme.sol")]).result
    con.buy(token, 2)
    done = con.request(token, b"\x02" * 33).result
    refused = con.request(token, b"\x02" * 33).result
    sol.accept(done)
    sol.finish(done, content_hash("result"), "https://acme.example/1")
    sol.reject(refused, "no such event")
    con.rate(done, 4, "useful")
    world.client("cyber.con").like(token)
    return token, done, refused


def test_counters_their_change_their_events_and_the_task_timeline(world):  # noqa: F811
    since = world.w3.eth.block_number
    token, done, refused = exchange(world)
    head = world.w3.eth.block_number
    names = {address_for("acme.sol"): "acme solver", address_for("bravo.con"): "bravo consumer"}
    reading = read_pedometer(world.w3, world.deployment, block=head, since=since, names=names)
    orgs = {o["name"]: o for o in reading["organizations"]}
    assert set(orgs) == {"acme", "bravo", "cyber"} and reading["mismatches"] == []
    for name, org in orgs.items():
        assert org["counts"] == world.client("acme.pub").activity(org["org_id"]) == org["from_events"]
    acme, bravo = orgs["acme"]["counts"], orgs["bravo"]["counts"]
    assert (acme["published"], acme["minted"], acme["sold"], acme["solved"], acme["rejected"]) == (1, 10, 2, 1, 1)
    assert (bravo["bought"], bravo["requested"], bravo["consumed"], bravo["feedback_given"]) == (2, 2, 1, 1)
    assert orgs["acme"]["change"] == acme  # everything happened after `since`
    assert orgs["cyber"]["counts"]["like_given"] == 1 and acme["like_received"] == 1

    tasks = {t["task"]: t for t in reading["tasks"]}
    assert set(tasks) == {done, refused}
    finished = tasks[done]
    assert finished["token"] == token and finished["outcome"] == "finished" and finished["verdict"] == "rated"
    assert finished["solver"] == "acme solver" and finished["consumer"] == "bravo consumer"
    assert finished["consumer_org"] == "bravo" and finished["publisher_org"] == "acme"
    assert finished["requested"] <= finished["accepted"] <= finished["closed"] <= finished["verdict_at"]
    assert tasks[refused]["outcome"] == "rejected" and "verdict" not in tasks[refused]

    later = read_pedometer(world.w3, world.deployment, block=head, since=head)  # counted from the end: no change
    assert all(v == 0 for o in later["organizations"] for v in o["change"].values()) and later["tasks"] == []


def test_the_report_shows_the_pedometer_the_tasks_and_the_verdict(world, tmp_path):  # noqa: F811
    since = world.w3.eth.block_number
    exchange(world)
    reading = read_pedometer(world.w3, world.deployment, block=world.w3.eth.block_number, since=since)
    reading["mismatches"] = [{"org": "acme", "kind": "sold", "counter": 2, "events": 3}]  # as a broken contract would
    (tmp_path / "activity.json").write_text(json.dumps(reading))
    (tmp_path / "status.json").write_text(json.dumps({"status": "failed"}))
    (tmp_path / "results.json").write_text(json.dumps({"status": "failed", "assertions": [
        {"name": "no lost tasks", "kind": "no_lost_tasks", "passed": False, "detail": "1 of 2 tasks lost",
         "evidence": [{"task": "t2", "state": "REJECTED"}]}]}))
    html_path, json_path = render(tmp_path)
    page = html_path.read_text()
    summary = json.loads(json_path.read_text())
    assert summary["kind"] == "scenario" and summary["tasks"]["count"] == 2 and summary["tasks"]["rated"] == 1
    assert summary["pedometer"]["totals"]["published"] == 1 and summary["pedometer"]["mismatches"]
    for text in ("1 of 2 tasks lost", "REJECTED", "Activity per organization", "do not match the Step events",
                 "acme", "bravo", "feedback given", "request -&gt; accept", "rejected"):
        assert text in page, text
