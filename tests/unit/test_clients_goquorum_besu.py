"""GoQuorum and Besu node files and command lines (pure functions), and the GoQuorum build recipe."""

import json
import tomllib
from pathlib import Path

import pytest

from testbed import toolchain
from testbed.clients import get_client
from testbed.clients.base import NodePlan, NodePorts, ipc_socket_in
from testbed.keys import KeyPair
from testbed.spec.network import NetworkSpec


def spec_for(client: str, engine: str) -> NetworkSpec:
    return NetworkSpec.model_validate({
        "name": "t", "chain_id": 777, "client": client,
        "consensus": {"engine": engine, "block_period": 1, "gas_limit": 50_000_000},
        "organizations": [{"name": "a", "validators": 2, "members": 1}, {"name": "b"}],
    })


def network(n: int = 4) -> list[NodePlan]:
    roles = ["validator"] * (n - 1) + ["member"]
    return [NodePlan(name=f"o{i}-{'v' if r == 'validator' else 'm'}1", org=f"o{i}", role=r, index=i,
                     host="127.0.0.1", ports=NodePorts.for_index(26100, i), key=KeyPair.generate())
            for i, r in enumerate(roles)]


def flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


# ---- GoQuorum ----------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["qbft", "ibft"])
def test_goquorum_node_files(engine):
    nodes = network()
    me, peers = nodes[1], [n for n in nodes if n is not nodes[1]]
    files = {f.path: f for f in get_client("goquorum").node_files(spec_for("goquorum", engine), me, peers)}
    assert files["data/geth/nodekey"].secret and files["data/geth/nodekey"].content == me.key.private_key
    static = json.loads(files["data/static-nodes.json"].content)
    assert static == [f"{p.enode}?discport=0" for p in peers]
    permissioned = json.loads(files["data/permissioned-nodes.json"].content)
    assert permissioned == [f"{n.enode}?discport=0" for n in nodes]  # every member node, in order
    assert not any(f.secret for p, f in files.items() if p != "data/geth/nodekey")


def test_goquorum_validator_and_member_commands(tmp_path):
    client = get_client("goquorum")
    spec = spec_for("goquorum", "qbft")
    nodes = network()
    validator, member = nodes[0], nodes[-1]
    cmd = client.command(Path("/cache/geth"), spec, validator, tmp_path, nodes[1:])
    assert cmd[0] == "/cache/geth"
    assert flag(cmd, "--datadir") == str(tmp_path / "data")
    assert flag(cmd, "--port") == str(validator.ports.p2p)
    assert flag(cmd, "--http.port") == str(validator.ports.http)
    assert flag(cmd, "--ws.port") == str(validator.ports.ws)
    assert flag(cmd, "--metrics.port") == str(validator.ports.metrics)
    for bind in ("--http.addr", "--ws.addr", "--metrics.addr"):
        assert flag(cmd, bind) == "127.0.0.1"
    assert flag(cmd, "--networkid") == "777" and flag(cmd, "--syncmode") == "full"
    assert flag(cmd, "--miner.gasprice") == "0" and flag(cmd, "--miner.gaslimit") == "50000000"
    assert int(flag(cmd, "--txpool.globalslots")) > 5120
    assert "--nodiscover" in cmd and "--permissioned" in cmd and "--mine" in cmd
    assert flag(cmd, "--http.api") == flag(cmd, "--ws.api") == "eth,net,web3,txpool"  # istanbul: IPC only
    assert not any(a in cmd for a in ("--unlock", "--password", "--allow-insecure-unlock"))
    assert "personal" not in flag(cmd, "--http.api")
    member_cmd = client.command(Path("/cache/geth"), spec, member, tmp_path, nodes[:-1])
    assert "--mine" in member_cmd  # only follows until voted in; then proposes with no restart
    assert client.environment(spec, validator) == {"PRIVATE_CONFIG": "ignore"}
    init = client.init_command(Path("/cache/geth"), spec, validator, tmp_path, tmp_path / "genesis.json")
    assert init == ["/cache/geth", "--datadir", str(tmp_path / "data"), "init", str(tmp_path / "genesis.json")]


# ---- Besu --------------------------------------------------------------------------------------

@pytest.mark.parametrize("engine,namespace", [("qbft", "QBFT"), ("ibft2", "IBFT"), ("clique", "CLIQUE")])
def test_besu_node_files(engine, namespace):
    nodes = network()
    me, peers = nodes[2], [n for n in nodes if n is not nodes[2]]
    files = {f.path: f for f in get_client("besu").node_files(spec_for("besu", engine), me, peers)}
    config = tomllib.loads(files["config.toml"].content)
    assert config["p2p-port"] == me.ports.p2p and config["rpc-http-port"] == me.ports.http
    assert config["rpc-ws-port"] == me.ports.ws and config["metrics-port"] == me.ports.metrics
    for key in ("p2p-host", "p2p-interface", "rpc-http-host", "rpc-ws-host", "metrics-host"):
        assert config[key] == "127.0.0.1"
    assert config["network-id"] == 777 and config["min-gas-price"] == 0
    assert config["discovery-enabled"] is False and config["sync-mode"] == "FULL"
    assert config["rpc-http-api"] == config["rpc-ws-api"] == ["ETH", "NET", "WEB3", "TXPOOL"]  # no votes, no admin
    cmd = get_client("besu").command(Path("/b"), spec_for("besu", engine), me, Path("/n"), peers, ipc=Path("/run/x/me.ipc"))
    assert {"--Xrpc-ipc-enabled=true", "--Xrpc-ipc-path=/run/x/me.ipc", f"--Xrpc-ipc-apis={namespace}"} <= set(cmd)
    assert ipc_socket_in(cmd) == Path("/run/x/me.ipc")  # what the docker backend mounts
    assert config["permissions-nodes-config-file-enabled"] is True
    for key in ("node-private-key-file", "static-nodes-file", "permissions-nodes-config-file"):
        assert config[key] in files  # relative to the node directory
    assert config["genesis-file"] == "genesis.json"  # copied in by init_command
    assert files["key"].secret and files["key"].content == "0x" + me.key.private_key
    assert json.loads(files["static-nodes.json"].content) == [p.enode for p in peers]
    allow = tomllib.loads(files["permissions_config.toml"].content)["nodes-allowlist"]
    assert allow == [n.enode for n in nodes]


def test_besu_command_and_init(tmp_path):
    client = get_client("besu")
    spec = spec_for("besu", "qbft")
    nodes = network()
    cmd = client.command(Path("/opt/besu/bin/besu"), spec, nodes[0], tmp_path, nodes[1:])
    assert cmd[0] == "/opt/besu/bin/besu"
    assert f"--config-file={tmp_path / 'config.toml'}" in cmd
    assert f"--data-path={tmp_path / 'data'}" in cmd
    assert f"--genesis-file={tmp_path / 'genesis.json'}" in cmd
    init = client.init_command(Path("/opt/besu/bin/besu"), spec, nodes[0], tmp_path, tmp_path.parent / "genesis.json")
    assert init == ["cp", str(tmp_path.parent / "genesis.json"), str(tmp_path / "genesis.json")]
    assert client.environment(spec, nodes[0]) == {}


# ---- GoQuorum build recipe ---------------------------------------------------------------------

def test_goquorum_tool_recipe():
    assert "goquorum" not in toolchain.GO_TOOLS  # built from vendored source, not the module proxy
    tool = toolchain.VENDORED_TOOLS["goquorum"]
    assert tool.version == "v24.4.1" and tool.version_marker == "24.4.1"
    assert tool.binary_path().name == "geth" and tool.binary_path().parent.parent.name == "goquorum-v24.4.1"
    assert tool.package_dir == "./cmd/geth" and tool.top_dir == "quorum-v24.4.1"
    assert tool.ldflags == "-checklinkname=0"
    assert tool.sha256 == "0f342ffe4ec5b12646423a18528e5189635482ab8a61cbc76d251fa2cceee8fa"


@pytest.mark.parametrize("client_name", ["geth", "goquorum"])
def test_http_answers_only_requests_naming_the_nodes_own_host(tmp_path, client_name):
    from testbed.clients import get_client
    from testbed.clients.base import NodePlan, NodePorts
    from testbed.keys import KeyPair

    spec = NetworkSpec.model_validate({"name": "t", "client": client_name, "organizations": [{"name": "a"}]})
    node = NodePlan(name="a-v1", org="a", role="validator", index=0, host="198.18.0.2",
                    ports=NodePorts.for_index(21000, 0), key=KeyPair.generate())
    cmd = get_client(client_name).command(Path("/cache/geth"), spec, node, tmp_path, [])
    vhosts = cmd[cmd.index("--http.vhosts") + 1].split(",")
    assert "*" not in vhosts and "198.18.0.2" in vhosts and set(vhosts) <= {"localhost", "127.0.0.1", "198.18.0.2"}
    origins = cmd[cmd.index("--ws.origins") + 1].split(",")
    assert set(origins) == {"http://localhost", "http://127.0.0.1", "http://198.18.0.2"}


def test_besu_answers_only_requests_naming_the_nodes_own_host():
    nodes = network()
    config = tomllib.loads({f.path: f for f in get_client("besu").node_files(spec_for("besu", "qbft"), nodes[0],
                                                                             nodes[1:])}["config.toml"].content)
    assert config["host-allowlist"] == ["localhost", "127.0.0.1"]  # the node's own address is 127.0.0.1 here


@pytest.mark.parametrize("client_name", ["geth", "goquorum"])
def test_admin_and_vote_namespaces_only_on_the_ipc_socket(tmp_path, client_name):
    """HTTP/WS serve eth, net, web3, txpool only; votes, sealing control and rewinds go through the
    IPC socket the harness names (no IPC at all when it names none)."""
    client = get_client(client_name)
    spec = spec_for(client_name, client.engines[0])
    node = network()[0]
    cmd = client.command(Path("/cache/geth"), spec, node, tmp_path, [], ipc=tmp_path / "run" / "a-v1.ipc")
    for api in ("--http.api", "--ws.api"):
        assert flag(cmd, api) == "eth,net,web3,txpool", (api, flag(cmd, api))
    assert flag(cmd, "--ipcpath") == str(tmp_path / "run" / "a-v1.ipc") and "--ipcdisable" not in cmd
    assert client.admin_over_ipc
    bare = client.command(Path("/cache/geth"), spec, node, tmp_path, [])
    assert "--ipcdisable" in bare and "--ipcpath" not in bare
