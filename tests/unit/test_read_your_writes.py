"""A step that goes through one node must see what an earlier step wrote through another (fakes,
no chain): a buyer's node that is still a block behind the listing, a newcomer's node that is still
a block behind the vote that admitted it. Both were real failures (the newcomer's buy reverted
'not an account of a member organization' on a node one block behind)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

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
    waited, on_nodes = [], []
    monkeypatch.setattr(membership, "wait_for_block", lambda w3, block, timeout=30: waited.append((w3, block)))
    monkeypatch.setattr(membership, "wait_for_block_on_nodes",
                        lambda net, block, orgs=None, timeout=60: on_nodes.append((block, orgs)))
    clients = {"acme": Voter(object(), 20), "globex": Voter(object(), 21)}
    proposed = Sent("0x03", 19, 90000, 0, result=4)
    assert membership._vote_through(object(), "hooli", clients, proposed, progress=lambda m: None) == 4
    assert clients["globex"].votes == 1
    assert on_nodes == [(21, {"hooli"})]  # the newcomer's own running nodes, at the block of the deciding vote
    assert [block for _, block in waited[-2:]] == [21, 21] and len(waited) == 3  # + both voters' nodes


def test_waiting_for_a_block_on_the_running_nodes_of_some_orgs(monkeypatch):
    """Each running node (of the orgs asked for) is polled until it has the block; a stopped node
    or another org's node is never asked; a node that stays behind is named in the error."""
    from testbed.chain import rpc as rpc_module
    from testbed.chain.wait import wait_for_block_on_nodes
    from testbed.errors import ChainError

    heads = {"a-v1": iter([3, 4, 5]), "b-v1": iter([9]), "b-m1": iter([]), "c-v1": iter([])}
    asked: list[str] = []

    class ScriptedRpc:
        def __init__(self, url, timeout):
            self.node = url.rsplit("/", 1)[1]

        def call(self, method):
            assert method == "eth_blockNumber"
            asked.append(self.node)
            return hex(next(heads[self.node], 4))

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            pass

    monkeypatch.setattr(rpc_module, "RpcClient", ScriptedRpc)
    nodes = [SimpleNamespace(name=n, org=n.split("-")[0], rpc_url=f"http://127.0.0.1/{n}") for n in heads]
    net = SimpleNamespace(nodes=nodes, process=lambda name: name != "b-m1")
    wait_for_block_on_nodes(net, 5, orgs={"a", "b"}, interval=0)
    assert asked == ["a-v1", "a-v1", "a-v1", "b-v1"]  # b-m1 stopped, c not asked for
    with pytest.raises(ChainError, match="node c-v1 did not reach block 5 within 0s"):
        wait_for_block_on_nodes(net, 5, orgs={"c"}, timeout=0.05, interval=0.01)
