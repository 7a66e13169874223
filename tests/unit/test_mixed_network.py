"""A mixed GoQuorum + Besu QBFT network on the docker backend, rendered end to end by Network.create
through a recording fake of the Docker engine (no engine here): one genesis block in both clients'
formats, each organization's nodes in its client's image, allowlists naming every node of both
clients, per-node vote methods, the fee rules of the shared (pre-London) genesis."""

from __future__ import annotations

import json

import pytest
import rlp

from testbed.backends.docker import DockerBackend
from testbed.backends.images import PINNED_IMAGES
from testbed.clients import fee_rules
from testbed.errors import SpecError
from testbed.network import Network
from testbed.spec.network import NetworkSpec

from .test_backend_docker import FakeEngine

HEADER_FIELDS = ("nonce", "timestamp", "extraData", "gasLimit", "difficulty", "mixHash", "coinbase", "alloc")


def mixed(**changes) -> NetworkSpec:
    data = {"name": "mix", "client": "goquorum", "backend": "docker", "ports": {"base": 30400},
            "consensus": {"engine": "qbft"},
            "organizations": [{"name": "acme"}, {"name": "globex", "client": "besu"},
                              {"name": "initech", "client": "besu"}, {"name": "umbrella", "client": "goquorum"}]}
    data.update(changes)
    return NetworkSpec.model_validate(data)


@pytest.fixture
def network(tmp_path, monkeypatch):
    monkeypatch.setenv("TESTBED_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TESTBED_RUN_DIR", str(tmp_path / "run"))
    engine = FakeEngine()
    monkeypatch.setattr("testbed.network.get_backend", lambda name, network, state_dir: DockerBackend(
        network=network, state_dir=state_dir, engine=engine, user="1000:1000"))
    monkeypatch.setattr(Network, "wait_ready", lambda self, **kwargs: None)  # nothing answers RPC here
    net = Network.create(mixed())
    yield net, engine
    net.down(purge=True)


def test_one_genesis_block_in_both_formats(network):
    net, _ = network
    quorum = json.loads(net.state.genesis_file.read_text())
    besu = json.loads((net.state.root / "genesis-besu.json").read_text())
    assert {k: quorum[k] for k in HEADER_FIELDS} == {k: besu[k] for k in HEADER_FIELDS}
    for doc in (quorum, besu):  # pre-London in both: no base fee in the header, so the same block hash
        assert "londonBlock" not in doc["config"] and "baseFeePerGas" not in doc
        assert doc["config"]["chainId"] == net.spec.chain_id and doc["config"]["berlinBlock"] == 0
        assert doc["config"]["qbft"]["blockperiodseconds"] == net.spec.consensus.block_period
    assert quorum["config"]["isQuorum"] is True and "isQuorum" not in besu["config"]
    validators = rlp.decode(bytes.fromhex(quorum["extraData"][2:]))[1]
    assert sorted("0x" + v.hex() for v in validators) == sorted(n.address.lower() for n in net.nodes)


def test_each_organization_runs_its_clients_image_with_its_genesis(network):
    net, engine = network
    started = {c["spec"]["name"]: c["spec"] for c in engine.containers_.values()}
    for node in net.nodes:
        spec = started[f"tb-mix-{node.name}"]
        client = net.spec.client_of(node.org)
        assert spec["image"] == PINNED_IMAGES[client], (node.name, spec["image"])
        assert spec["entrypoint"] == (["besu"] if client == "besu" else ["geth"])
        init = next(c for c in engine.calls if c[0] == "run_once" and c[1] == f"tb-mix-{node.name}-init")
        genesis = net.state.genesis_file_of(client, net.spec.client)
        assert str(genesis) in engine.oneoffs[init[1]]["volumes"]  # the init container sees its client's genesis
        if client == "besu":  # its init puts the Besu-format genesis into the node directory
            assert init[2] == ("cp", str(genesis), str(net.state.node_dir(node.name) / "genesis.json"))
            assert not any(a.startswith("--ipcpath") for a in spec["command"])
        else:
            assert str(net.state.genesis_file) in init[2]
            assert "--permissioned" in spec["command"] and "--ipcpath" in spec["command"]


def test_allowlists_name_every_node_of_both_clients(network):
    net, _ = network
    besu = next(n for n in net.nodes if net.spec.client_of(n.org) == "besu")
    quorum = next(n for n in net.nodes if net.spec.client_of(n.org) == "goquorum")
    allowed_by_quorum = json.loads((net.state.node_dir(quorum.name) / "data" / "permissioned-nodes.json").read_text())
    assert any(besu.key.public_key in e for e in allowed_by_quorum)
    allowed_by_besu = (net.state.node_dir(besu.name) / "permissions_config.toml").read_text()
    assert quorum.key.public_key in allowed_by_besu and besu.key.public_key in allowed_by_besu


def test_votes_fees_and_admin_endpoints_follow_each_nodes_client(network):
    net, _ = network
    besu = next(n for n in net.nodes if net.spec.client_of(n.org) == "besu")
    quorum = next(n for n in net.nodes if net.spec.client_of(n.org) == "goquorum")
    assert net.validator_rpc_of(besu.name).propose_method == "qbft_proposeValidatorVote"
    assert net.validator_rpc_of(quorum.name).propose_method == "istanbul_propose"
    # both vote namespaces are on each node's IPC socket (Besu: --Xrpc-ipc-*), never on its RPC
    assert net.admin_url(besu.name).startswith("ipc://") and net.admin_url(quorum.name).startswith("ipc://")
    rules = fee_rules(net.spec)
    assert not rules.london and rules.gas_price == 0  # the shared genesis is GoQuorum's: legacy, price 0


@pytest.mark.parametrize("changes, words", [
    ({"backend": "local"}, "backend docker"),
    ({"consensus": {"engine": "ibft"}}, "on engine qbft"),
    ({"organizations": [{"name": "acme"}, {"name": "globex", "client": "geth"}]}, "globex: geth"),
])
def test_clients_mix_only_where_they_can(changes, words):
    with pytest.raises(Exception) as info:
        mixed(**changes)
    assert words in str(info.value)
    assert isinstance(info.value, (ValueError, SpecError))


def test_an_organizations_process_sees_the_network_with_its_own_keys_only(network):
    """What `solver run --org X` loads (solver/cli.py): the same nodes (by public key), X's accounts,
    nothing else; the Solver's helpers work on that view."""
    from solver.manage import depth_for, node_of, role_accounts

    net, _ = network
    view = Network.load(net.name, org_keys_only="globex")
    assert [(n.name, n.address, n.enode) for n in view.nodes] == [(n.name, n.address, n.enode) for n in net.nodes]
    assert set(view.keys.accounts) == {"globex"} and view.keys.operator is None
    assert all(k.private_key is None for k in view.keys.nodes.values())
    assert role_accounts(view, "globex").solver.private_key == net.keys.of("globex").solver.private_key
    assert node_of(view, "globex").org == "globex" and depth_for(view) == 0
    with pytest.raises(Exception, match="acme"):
        role_accounts(view, "acme")
