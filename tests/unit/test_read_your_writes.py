"""A step that goes through one node must see what an earlier step wrote through another (fakes,
no chain): a buyer's node that is still a block behind the listing, a newcomer's node that is still
a block behind the vote that admitted it. Both were real failures (the newcomer's buy reverted
'not an account of a member organization' on a node one block behind)."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

from testbed import membership
from testbed.cti.model import Sent
from testbed.scenario.cti import CtiActions


class LaggingNode:
    """A node `lag` blocks behind `head`, catching up one block per read of its height."""

    def __init__(self, head: int, lag: int) -> None:
        self.height, self.reads = head - lag, []
        self.eth = self

    @property
    def block_number(self) -> int:
        self.reads.append(self.height)
        height = self.height
        self.height += 1
        return height


class Buyer:
    def __init__(self, node: LaggingNode) -> None:
        self.w3, self.calls = node, []

    def buy(self, token: int, amount: int) -> Sent:
        self.calls.append(("buy", token, self.w3.height))
        return Sent("0x01", self.w3.height, 21000, 0)


def test_buy_waits_until_the_buyers_node_has_the_listing():
    node = LaggingNode(head=12, lag=3)
    actions = CtiActions(net=None, deployment=None, emit=lambda *a, **k: None)
    actions._clients["globex"] = buyer = Buyer(node)
    actions.ctis["iocs"], actions.published_block["iocs"] = 7, 12
    actions.buy(SimpleNamespace(org="globex", cti="iocs", amount=1))
    assert node.reads[-1] == 12 and max(node.reads[:-1]) < 12  # it read until the listing block, then stopped
    assert buyer.calls == [("buy", 7, 13)]


class Voter:
    def __init__(self, node, decided_after: int) -> None:
        self.w3, self.decided_after = node, decided_after
        self.votes = 0

    def proposal(self, proposal_id: int) -> dict:
        return {"status": 1}

    def vote(self, proposal_id: int, support: bool) -> Sent:
        self.votes += 1
        return Sent("0x02", self.decided_after, 50000, 0)


def test_admission_waits_until_the_newcomers_node_has_the_deciding_vote(monkeypatch):
    waited = []
    monkeypatch.setattr(membership, "wait_for_block", lambda w3, block, timeout=30: waited.append((w3, block)))
    newcomer_node = object()
    monkeypatch.setattr(importlib.import_module("testbed.cti.deploy"), "connect",
                        lambda url: newcomer_node if url == "http://hooli" else None)
    net = SimpleNamespace(
        nodes=[SimpleNamespace(org="acme", name="acme-v1", rpc_url="http://acme"),
               SimpleNamespace(org="hooli", name="hooli-v1", rpc_url="http://hooli"),
               SimpleNamespace(org="hooli", name="hooli-m1", rpc_url="http://hooli-stopped")],
        process=lambda name: name != "hooli-m1")  # a stopped node is not waited for
    clients = {"acme": Voter(object(), 20), "globex": Voter(object(), 21)}
    proposed = Sent("0x03", 19, 90000, 0, result=4)
    assert membership._vote_through(net, "hooli", clients, proposed, progress=lambda m: None) == 4
    assert clients["globex"].votes == 1
    assert (newcomer_node, 21) in waited  # the newcomer's own node, at the block of the deciding vote
    assert all(block == 21 for w3, block in waited[-3:]) and len(waited) == 4  # + both voters' nodes
