"""`testbed status`'s health figures from a NetworkStatus: the newest block's age and a stalled chain."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from testbed.consensus import NodeSnapshot, check_agreement
from testbed.network import NetworkStatus, NodeStatus


def status(stamps: dict[str, int | None], *, now: float, period: int = 1) -> NetworkStatus:
    nodes = [NodeStatus(plan=SimpleNamespace(name=n, org=n, role="validator", rpc_url="http://127.0.0.1:1"), process_alive=ts is not None, pid=1,
                        snapshot=NodeSnapshot(n, ts is not None, head_number=5, head_hash="0xa", head_timestamp=ts))
             for n, ts in stamps.items()]
    return NetworkStatus("net", "geth", "clique", nodes, check_agreement([n.snapshot for n in nodes]),
                         observed_at=now, block_period=period)


def test_a_growing_chain_is_not_stalled_and_the_freshest_node_counts():
    st = status({"a": 1000, "b": 990, "c": None}, now=1002.4)
    assert st.head_age_s == 2.4 and not st.stalled
    assert st.to_json()["head_age_s"] == 2.4 and st.to_json()["stalled"] is False


def test_no_new_block_for_longer_than_the_limit_is_a_stall():
    assert status({"a": 1000, "b": 1000}, now=1015.0).stalled is False  # exactly 15 s: not yet
    assert status({"a": 1000, "b": 1000}, now=1015.5).stalled is True
    assert status({"a": 1000}, now=1030.0, period=5).stalled is False  # 5 s blocks: 50 s allowed
    assert status({"a": 1000}, now=1051.0, period=5).stalled is True


def test_no_reachable_node_says_nothing_about_age():
    st = status({"a": None, "b": None}, now=2000.0)
    assert st.head_age_s is None and not st.stalled


def test_the_table_shows_each_nodes_head_age_and_says_when_the_chain_stopped(capsys):
    from testbed.cli import render_status

    render_status(status({"a": 1000, "b": 997}, now=1020.0))
    text = capsys.readouterr().out
    assert "20s" in text and "23s" in text
    assert "has not grown for 20s" in text and "testbed watch" in text


def test_agreement_over_every_height_when_a_head_drops_between_the_two_looks():
    """Clique may reorg a node to a shorter, heavier branch between the look at the heads and the
    read of every height: the verdict covers every height up to the new common head, no more."""
    from testbed.network import Network

    def snap(node, head, upto):
        return NodeSnapshot(node, True, head_number=head, head_hash=f"0x{head}",
                            hashes={h: f"0x{h}" for h in range(upto + 1)})

    looks = iter([[snap("a", 6, 6), snap("b", 7, 7)],  # heads: common 6
                  [snap("a", 5, 5), snap("b", 7, 6)]])  # a reorged down to 5; b still holds 0..6
    fake = SimpleNamespace(snapshots=lambda heights=None, only=None: next(looks))
    result = Network._agreement_once(fake, full=True, only=None)
    assert result.agreed and result.common_height == 5 and result.heights_checked == 6


def test_an_orgs_rpc_urls_put_its_running_nodes_first_and_never_name_another_org():
    from testbed.errors import StateError
    from testbed.network import Network

    def node(name, org):
        return SimpleNamespace(name=name, org=org, rpc_url=f"http://127.0.0.1/{name}")

    running = {"globex-v1", "globex-m2", "acme-v1"}
    fake = SimpleNamespace(nodes=[node("acme-v1", "acme"), node("globex-v1", "globex"), node("globex-m1", "globex"),
                                  node("globex-m2", "globex")], name="net", organizations=["acme", "globex"],
                           process=lambda name: object() if name in running else None)
    urls = Network.org_rpc_urls(fake, "globex")
    assert urls == ["http://127.0.0.1/globex-v1", "http://127.0.0.1/globex-m2", "http://127.0.0.1/globex-m1"]
    running.discard("globex-v1")
    assert Network.org_rpc_urls(fake, "globex")[0] == "http://127.0.0.1/globex-m2"
    with pytest.raises(StateError, match="'initech' has no node in 'net'; organizations: acme, globex"):
        Network.org_rpc_urls(fake, "initech")
