"""The consumer checks the delivered plaintext against the listing's contentHash; a mismatch is a
dispute on-chain (Feedback.dispute), counted for both organizations, instead of a rating."""

from __future__ import annotations

import json
import random

import pytest
from eth_account import Account
from eth_utils import keccak

from solver.consumer import DISPUTED, Consumer
from solver.errors import ContentMismatch
from solver.intel import DirectoryStore
from solver.seed import publish_events, sample_event
from testbed.cti import ContractRevert
from tests.unit.helpers_cti import key_for, world, world_once  # noqa: F401 (fixtures)
from tests.unit.test_solver_journal import GAS, make_solver


@pytest.fixture
def listed(world, tmp_path):  # noqa: F811
    store = DirectoryStore(tmp_path / "intel")
    event = sample_event(random.Random(7), "acme", 0)
    token = publish_events(world.client("acme.pub"), store, [event],
                           solvers=[Account.from_key(key_for("acme.sol")).address])[0].token_id
    consumer = Consumer(world.w3, world.deployment, key_for("bravo.con"), tmp_path / "consumer", gas_limit=GAS)
    yield store, event, token, consumer
    consumer.close()


def deliver(world, tmp_path, store, consumer, token, *, consume=None) -> int:
    task_id = consumer.request(token)
    solver = make_solver(world, tmp_path, store)
    try:
        for _ in range(4):
            solver.tick()
        (consume or (lambda _: consumer.poll()))(task_id)
    finally:
        solver.close()
    return task_id


def test_what_was_listed_is_rated_not_disputed(world, tmp_path, listed):  # noqa: F811
    store, _, token, consumer = listed
    task_id = deliver(world, tmp_path, store, consumer, token)
    assert consumer.status() == {"consumed": 1}
    assert consumer.cti.dispute_of(task_id) is None
    assert consumer.cti.c["Feedback"].functions.ratingOf(task_id).call() == 5


def test_data_other_than_listed_is_disputed_on_chain_with_the_hash_received(world, tmp_path, listed):  # noqa: F811
    store, event, token, consumer = listed
    orgs = {o.name: o.org_id for o in consumer.cti.orgs()}
    before = {org: consumer.cti.activity(orgs[org]) for org in ("acme", "bravo")}
    # the publisher's store now holds another version of the event than the one it listed
    path = store.path(str(event.uuid))
    data = json.loads(path.read_bytes())
    body = data.get("Event", data)
    body["info"] = body["info"] + " (edited after listing)"
    path.write_text(json.dumps(data))
    served = path.read_bytes()

    def consume(task_id: int) -> None:
        with pytest.raises(ContentMismatch, match="the listing promised"):
            consumer.consume(task_id)

    task_id = deliver(world, tmp_path, store, consumer, token, consume=consume)

    assert consumer.poll() == 0 and consumer.status() == {DISPUTED: 1}  # final: not retried
    assert consumer.cti.dispute_of(task_id) == keccak(served)
    assert consumer.cti.c["Feedback"].functions.ratingOf(task_id).call() == 0
    after = {org: consumer.cti.activity(orgs[org]) for org in ("acme", "bravo")}
    assert after["bravo"]["dispute_raised"] == before["bravo"]["dispute_raised"] + 1
    assert after["acme"]["dispute_received"] == before["acme"]["dispute_received"] + 1
    assert not (tmp_path / "consumer" / "received").exists() or not any((tmp_path / "consumer" / "received").iterdir())
    with pytest.raises(ContractRevert, match="already disputed"):
        consumer.cti.rate(task_id, 5, "changed my mind")


def test_a_dispute_must_name_a_real_mismatch_by_the_tasks_consumer(world, tmp_path, listed):  # noqa: F811
    store, _, token, consumer = listed
    rated = deliver(world, tmp_path, store, consumer, token)  # delivered as listed and rated
    with pytest.raises(ContractRevert, match="already rated"):
        consumer.cti.dispute(rated, keccak(b"x"), "too late: rated")
    consumer.cti.buy(token)
    pending = consumer.cti.request(token, consumer.public_key).result
    with pytest.raises(ContractRevert, match="not finished"):
        consumer.cti.dispute(pending, keccak(b"x"), "early")
    solver = make_solver(world, tmp_path, store)
    try:
        for _ in range(4):
            solver.tick()  # finished, and the consumer has not looked yet
    finally:
        solver.close()
    listed_hash = consumer.cti.listing(token).content_hash
    for claimed in (listed_hash, bytes(32)):
        with pytest.raises(ContractRevert, match="nothing to dispute"):
            consumer.cti.dispute(pending, claimed, "the listed hash is no mismatch")
    with pytest.raises(ContractRevert, match="requested by|not the consumer|NotTaskConsumer|may not"):
        world.client("cyber.con").dispute(pending, keccak(b"x"), "not my task")
    assert consumer.cti.dispute_of(pending) is None
    consumer.cti.dispute(pending, keccak(b"x"), "a real claim is accepted")
    assert consumer.cti.dispute_of(pending) == keccak(b"x")
