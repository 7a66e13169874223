"""geth Clique: extraData layout, genesis contents, node files and command line (pure functions)."""

import json
from pathlib import Path

from testbed.clients import get_client
from testbed.clients.base import NodePlan, NodePorts
from testbed.clients.geth import clique_extra_data
from testbed.keys import KeyPair
from testbed.spec.network import NetworkSpec

SPEC = NetworkSpec.model_validate({
    "name": "t", "chain_id": 4242, "client": "geth", "consensus": {"engine": "clique", "block_period": 2, "epoch": 100, "gas_limit": 30_000_000},
    "organizations": [{"name": "a"}, {"name": "b"}],
})


def plan(name: str, index: int, role: str = "validator") -> NodePlan:
    return NodePlan(name=name, org=name.split("-")[0], role=role, index=index, host="127.0.0.1",
                    ports=NodePorts.for_index(21000, index), key=KeyPair.generate())


def test_extra_data_layout_sorts_signers():
    signers = ["0x" + "bb" * 20, "0x" + "AA" * 20]
    extra = clique_extra_data(signers)
    raw = bytes.fromhex(extra[2:])
    assert len(raw) == 32 + 2 * 20 + 65
    assert raw[:32] == bytes(32) and raw[-65:] == bytes(65)
    assert raw[32:52] == bytes.fromhex("aa" * 20) and raw[52:72] == bytes.fromhex("bb" * 20)


def test_genesis_contents():
    nodes = [plan("a-v1", 0), plan("b-v1", 1)]
    alloc = {"0x" + "11" * 20: 5 * 10**18}
    genesis = get_client("geth").genesis(SPEC, [n.address for n in nodes], alloc)
    json.dumps(genesis)  # serialisable
    config = genesis["config"]
    assert config["chainId"] == 4242
    assert config["clique"] == {"period": 2, "epoch": 100}
    assert config["londonBlock"] == 0 and config["berlinBlock"] == 0
    assert "shanghaiTime" not in config and "cancunTime" not in config
    assert "terminalTotalDifficultyPassed" not in config
    assert genesis["difficulty"] == "0x1"
    assert int(genesis["gasLimit"], 16) == 30_000_000
    assert genesis["alloc"] == {"11" * 20: {"balance": hex(5 * 10**18)}}
    for node in nodes:
        assert node.address.lower()[2:] in genesis["extraData"]


def test_validator_files_and_command(tmp_path):
    client = get_client("geth")
    me, peer = plan("a-v1", 0), plan("b-v1", 1)
    files = {f.path: f for f in client.node_files(SPEC, me, [peer])}
    assert peer.enode in files["config.toml"].content and me.enode not in files["config.toml"].content
    assert files["data/geth/nodekey"].secret and files["data/geth/nodekey"].content == me.key.private_key
    keystores = [p for p in files if p.startswith("data/keystore/")]
    assert len(keystores) == 1 and files[keystores[0]].secret
    assert json.loads(files[keystores[0]].content)["address"].lower() == me.address.lower()[2:]
    cmd = client.command(Path("/bin/geth"), SPEC, me, tmp_path, [peer])
    joined = " ".join(cmd)
    for flag in ("--nodiscover", "--syncmode full", "--miner.gasprice 1", "--mine", f"--miner.etherbase {me.address}",
                 f"--http.addr 127.0.0.1", f"--http.port {me.ports.http}", f"--authrpc.port {me.ports.authrpc}",
                 f"--port {me.ports.p2p}", f"--metrics.port {me.ports.metrics}", "--ipcdisable",
                 "--http.api eth,net,web3,txpool", "--ws.api eth,net,web3,txpool"):
        assert flag in joined, flag
    assert "personal" not in joined
    assert cmd.count("--port") == 1


def test_member_node_does_not_seal(tmp_path):
    client = get_client("geth")
    member = plan("a-m1", 2, role="member")
    # a member carries its fund-less sealing key so it can be voted in later, but does not seal now
    assert [f for f in client.node_files(SPEC, member, []) if "keystore" in f.path]
    cmd = client.command(Path("/bin/geth"), SPEC, member, tmp_path, [])
    assert "--mine" not in cmd


def test_ports_do_not_overlap_between_nodes():
    ports = [p for i in range(40) for p in NodePorts.for_index(21000, i).all()]
    assert len(ports) == len(set(ports))


def test_keystore_iv_is_always_16_bytes_and_decrypts(monkeypatch):
    """eth-keyfile drops leading zero bytes of the IV; the adapter pads it back (geth needs 16)."""
    import os as _os

    from eth_account import Account
    from eth_keyfile import keyfile

    def zero_led(n):  # force an IV (and the salt) that starts with a zero byte
        return b"\x00" + _os.urandom(n - 1)

    monkeypatch.setattr(keyfile.Random, "get_random_bytes", zero_led)
    client = get_client("geth")
    me = plan("a-v1", 0)
    files = {f.path: f for f in client.node_files(SPEC, me, [])}
    keystore = json.loads(next(f for p, f in files.items() if p.startswith("data/keystore/")).content)
    assert len(keystore["crypto"]["cipherparams"]["iv"]) == 32
    password = files["signer.password"].content
    assert Account.decrypt(keystore, password).hex().removeprefix("0x") == me.key.private_key
