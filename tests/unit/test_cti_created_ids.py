"""Ids a call creates (tokens, tasks) are taken from a confirmed, canonical receipt and checked
against the chain's state; a mismatch names both values (issue 19: two requests recorded as task 1)."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from testbed.cti.client import IdMismatch
from tests.unit.helpers_cti import address_for, content_hash, world, world_once  # noqa: F401 (fixtures)

KEY = b"\x02" * 64  # any 64-byte public key


def _listing(world, price=10**15):  # noqa: F811
    pub = world.client("acme.pub")
    token = pub.publish("5f1c0000-0000-4000-8000-000000000001", "C2 domains", content_hash("x"), price, 10,
                        solvers=[address_for("acme.sol")]).result
    return pub, token


def test_request_and_publish_ids_are_the_chains(world):  # noqa: F811
    pub, token = _listing(world)
    assert pub.listing(token).misp_uuid == "5f1c0000-0000-4000-8000-000000000001"
    bravo, cyber = world.client("bravo.con"), world.client("cyber.con")
    for client in (bravo, cyber):
        client.buy(token)
    ids = [client.request(token, KEY).result for client in (bravo, cyber)]
    assert len(set(ids)) == 2
    for client, task_id in zip((bravo, cyber), ids):
        task = client.task(task_id)
        assert (task.consumer, task.token_id) == (client.address, token)


def test_a_task_id_whose_chain_record_differs_is_an_error_with_both_values(world):  # noqa: F811
    _, token = _listing(world)
    bravo = world.client("bravo.con")
    bravo.buy(token)
    bravo.signer.timeout = 1.0
    real = bravo.task
    other = address_for("cyber.con")
    bravo.task = lambda task_id, **kw: dataclasses.replace(real(task_id, **kw), consumer=other)  # what another branch had
    with pytest.raises(IdMismatch) as info:
        bravo.request(token, KEY)
    message = str(info.value)
    assert other in message and bravo.address in message and f"token {token}" in message


def test_an_id_waits_for_its_confirmations(world):  # noqa: F811
    """With confirmations=2 the id is returned only once two blocks are on top of the receipt's."""
    _, token = _listing(world)
    bravo = world.client("bravo.con")
    bravo.buy(token)
    bravo.confirmations = 2
    mined = []

    def mine_later():
        for _ in range(2):
            threading.Event().wait(0.6)
            world.chain.tester.mine_blocks(1)
            mined.append(world.w3.eth.block_number)

    miner = threading.Thread(target=mine_later)
    miner.start()
    sent = bravo.request(token, KEY)
    head_at_return = world.w3.eth.block_number
    miner.join()
    assert head_at_return >= sent.block + 2, "the request returned before two blocks were on top of it"
    assert bravo.task(sent.result).consumer == bravo.address
