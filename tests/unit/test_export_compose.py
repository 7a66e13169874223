"""`testbed export compose`: the docker-compose project an operator carries to a Docker host
(rendering only; no Docker engine here to run it)."""

from __future__ import annotations

import ipaddress
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from testbed.backends.compose import export_compose
from testbed.cli import app
from testbed.errors import StateError
from testbed.spec import load_network_spec

NETWORKS = Path(__file__).resolve().parents[2] / "scenarios" / "networks"


def _export(tmp_path, spec_file: str):
    out = tmp_path / "project"
    summary = export_compose(load_network_spec(NETWORKS / spec_file), out)
    return out, summary, yaml.safe_load((out / "docker-compose.yml").read_text())


def _enodes(path: Path) -> set[str]:
    return {e.split("@")[1].split("?")[0] for e in json.loads(path.read_text())}


def test_goquorum_project_nodes_keys_peers_and_prometheus(tmp_path):
    out, summary, compose = _export(tmp_path, "four-orgs.yaml")
    services = compose["services"]
    nodes = summary["nodes"]
    assert len(nodes) == 4 and set(services) == {*nodes, *(f"{n}-init" for n in nodes), "prometheus"}
    subnet = ipaddress.ip_network(compose["networks"]["consortium"]["ipam"]["config"][0]["subnet"])
    assert subnet.subnet_of(ipaddress.ip_network("198.18.0.0/15"))
    assert compose["networks"]["consortium"]["driver_opts"]["com.docker.network.bridge.enable_ip_masquerade"] == "false"
    addresses = {}
    for name in nodes:
        node = services[name]
        assert node["image"] == "quorumengineering/quorum:24.4.1" and node["entrypoint"] == ["geth"]
        assert "--permissioned" in node["command"] and "--unlock" not in node["command"]
        api = node["command"][node["command"].index("--http.api") + 1]
        assert "admin" not in api and "istanbul" not in api
        address = node["networks"]["consortium"]["ipv4_address"]
        assert ipaddress.ip_address(address) in subnet
        addresses[name] = address
        # RPC, WS and metrics published on the host's loopback only
        assert node["ports"] and all(p.startswith("127.0.0.1:") for p in node["ports"])
        # the node key is a 0600 file, mounted again over itself read-only
        key = out / "nodes" / name / "data" / "geth" / "nodekey"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert any(v.startswith(f"./nodes/{name}/data/geth/nodekey:") and v.endswith(":ro") for v in node["volumes"])
        assert node["depends_on"] == {f"{name}-init": {"condition": "service_completed_successfully"}}
        init = services[f"{name}-init"]
        assert init["network_mode"] == "none" and init["command"][-2] == "init"
        # every path the command line names is inside a mount
        datadir = node["command"][node["command"].index("--datadir") + 1]
        assert any(datadir.startswith(v.split(":")[1]) for v in node["volumes"])
    assert len(set(addresses.values())) == 4
    for name in nodes:  # static peers: the three others at their compose addresses; allowlist: all four
        data = out / "nodes" / name / "data"
        assert _enodes(data / "static-nodes.json") == {f"{a}:{_p2p(services[n])}" for n, a in addresses.items() if n != name}
        assert len(_enodes(data / "permissioned-nodes.json")) == 4
    genesis = json.loads((out / "genesis.json").read_text())
    assert "qbft" in json.dumps(genesis["config"]).lower()
    for f in (out / "keys").rglob("*"):
        if f.is_file():
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    prom = yaml.safe_load((out / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert targets == {f"{addresses[n]}:{_metrics(services[n])}" for n in nodes}
    assert services["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    assert services["prometheus"]["networks"]["consortium"]["ipv4_address"] not in addresses.values()
    assert "CTI_UID=" in (out / ".env").read_text()


def _p2p(service: dict) -> str:
    return service["command"][service["command"].index("--port") + 1]


def _metrics(service: dict) -> str:
    return service["command"][service["command"].index("--metrics.port") + 1]


def test_mixed_goquorum_and_besu_share_one_genesis_block(tmp_path):
    out, summary, compose = _export(tmp_path, "four-orgs-mixed-docker.yaml")
    images = {compose["services"][n]["image"] for n in summary["nodes"]}
    assert images == {"quorumengineering/quorum:24.4.1", "hyperledger/besu:24.12.2"}
    assert (out / "genesis.json").is_file() and (out / "genesis-besu.json").is_file()
    besu = [n for n in summary["nodes"] if compose["services"][n]["image"].startswith("hyperledger/besu")]
    for name in besu:
        command = compose["services"][name]["command"]
        assert any(c.startswith("--Xrpc-ipc-path=") for c in command)  # votes over IPC, not HTTP
        assert any(v.startswith("./genesis-besu.json:") for v in compose["services"][name]["volumes"])


def test_refuses_a_non_empty_directory_and_leaves_nothing_behind(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("an operator's file")
    with pytest.raises(StateError, match="not an empty directory"):
        export_compose(load_network_spec(NETWORKS / "four-orgs.yaml"), out)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no temporary directory left


def test_cli_exports_a_shipped_spec_by_name_and_reports_errors_in_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["export", "compose", "four-orgs-clique", str(tmp_path / "p"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["images"] == ["ethereum/client-go:v1.13.15", "prom/prometheus:v2.53.3"]
    again = subprocess.run([sys.executable, "-m", "testbed.cli", "export", "compose", "four-orgs", str(tmp_path / "p")],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "not an empty directory" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1, again.stderr
