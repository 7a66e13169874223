"""Hyperledger Besu with QBFT, IBFT 2.0 or Clique: genesis, node files and command line.

Besu does not run on this machine (no binary in any registry reached here); what is built
here is everything an operator needs to run it elsewhere (infra/): the genesis, one
config.toml per node, the node key, static-nodes.json and a permissions file listing every
member node. See docs/besu.md.

The node directory is self-contained: config.toml names its files relative to it (run Besu
from there), and the command line repeats them as absolute paths so the working directory
does not matter. Validators seal with the node key; no account is unlocked.
"""

from __future__ import annotations

import json
from pathlib import Path

from testbed.chain.txs import LONDON
from testbed.clients.base import PUBLIC_APIS, NodePlan, RenderedFile, ValidatorRpc, own_hosts
from testbed.clients.geth import clique_extra_data
from testbed.clients.istanbul import (
    BFT_MIX_HASH,
    FORKS_TO_ISTANBUL,
    genesis_document,
    enode_list_json,
    everyone,
    ibft2_extra_data,
    others,
    qbft_extra_data,
    require_block_period,
)
from testbed.spec.network import CLIENT_ENGINES, NetworkSpec

# Files of a Besu node directory (relative to it).
CONFIG = "config.toml"
KEY = "key"
GENESIS = "genesis.json"
STATIC_NODES = "static-nodes.json"
PERMISSIONS = "permissions_config.toml"
DATA = "data"

RPC_NAMESPACE = {"qbft": "qbft", "ibft2": "ibft", "clique": "clique"}
TX_POOL_MAX_FUTURE_BY_SENDER = 1024


def besu_genesis(spec: NetworkSpec, validators: list[str], alloc: dict[str, int]) -> dict:
    engine = spec.consensus.engine
    config: dict = {"chainId": spec.chain_id}
    config.update({fork: 0 for fork in FORKS_TO_ISTANBUL})
    config["berlinBlock"] = 0
    if "goquorum" not in spec.clients:
        config.update({"londonBlock": 0, "zeroBaseFee": True})
    # else: a network shared with GoQuorum nodes has GoQuorum's genesis block, which stops before
    # London (no base fee; gas price 0, which `min-gas-price 0` accepts): the same header, the same hash
    if engine in ("qbft", "ibft2"):
        config[engine] = {
            "blockperiodseconds": require_block_period(spec),
            "epochlength": spec.consensus.epoch,
            "requesttimeoutseconds": spec.consensus.request_timeout,
        }
        extra = qbft_extra_data(validators) if engine == "qbft" else ibft2_extra_data(validators)
        mix_hash = BFT_MIX_HASH
    elif engine == "clique":
        period = spec.consensus.block_period
        # Besu has no period 0: it seals on a timer and skips empty blocks instead.
        config["clique"] = {"blockperiodseconds": max(period, 1), "epochlength": spec.consensus.epoch,
                            "createemptyblocks": period > 0}
        extra = clique_extra_data(validators)
        mix_hash = "0x" + "00" * 32
    else:
        raise ValueError(f"besu does not run engine {engine!r}")
    return genesis_document(spec, config, extra, mix_hash, alloc)


def toml_document(values: dict[str, object]) -> str:
    """Flat TOML of strings, ints, bools and lists of strings (all Besu's config needs)."""
    lines = []
    for key, value in values.items():
        if isinstance(value, bool):
            rendered = "true" if value else "false"
        elif isinstance(value, int):
            rendered = str(value)
        elif isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            rendered = json.dumps(value, ensure_ascii=True)  # a JSON string/array of ASCII strings is valid TOML
        else:
            raise TypeError(f"cannot render {key} = {value!r} as TOML")
        lines.append(f"{key}={rendered}")
    return "\n".join(lines) + "\n"


def besu_config(spec: NetworkSpec, node: NodePlan, peers: list[NodePlan]) -> dict[str, object]:
    apis = [a.upper() for a in BesuClient().rpc_apis(spec.consensus.engine)]
    p = node.ports
    return {
        "network-id": spec.chain_id,
        "data-path": DATA,
        "genesis-file": GENESIS,
        "node-private-key-file": KEY,
        "sync-mode": "FULL",
        "logging": "INFO",
        "min-gas-price": 0,
        "revert-reason-enabled": True,
        "tx-pool-max-future-by-sender": TX_POOL_MAX_FUTURE_BY_SENDER,
        "discovery-enabled": False,
        "static-nodes-file": STATIC_NODES,
        "permissions-nodes-config-file-enabled": True,
        "permissions-nodes-config-file": PERMISSIONS,
        "max-peers": len(peers) + 8,
        "p2p-host": node.host,
        "p2p-interface": node.host,
        "p2p-port": p.p2p,
        "rpc-http-enabled": True,
        "rpc-http-host": node.host,
        "rpc-http-port": p.http,
        "rpc-http-api": apis,
        "host-allowlist": own_hosts(node),  # a request naming another host (DNS rebinding) is refused
        "rpc-ws-enabled": True,
        "rpc-ws-host": node.host,
        "rpc-ws-port": p.ws,
        "rpc-ws-api": apis,
        "metrics-enabled": True,
        "metrics-host": node.host,
        "metrics-port": p.metrics,
    }


class BesuClient:
    name = "besu"
    binary = "besu"
    engines = CLIENT_ENGINES["besu"]
    fee_rules = LONDON
    sealer_tool = None  # validators seal with the node key
    # the vote namespace on Besu's JSON-RPC over IPC (hidden options --Xrpc-ipc-*, Besu 24.12),
    # never on HTTP/WS; generated and unit-tested here, not run (no Besu binary or engine here)
    admin_over_ipc = True

    def genesis(self, spec: NetworkSpec, validators: list[str], alloc: dict[str, int]) -> dict:
        return besu_genesis(spec, validators, alloc)

    def node_files(self, spec: NetworkSpec, node: NodePlan, peers: list[NodePlan]) -> list[RenderedFile]:
        members = [p.enode for p in everyone(node, peers)]
        return [
            RenderedFile(CONFIG, toml_document(besu_config(spec, node, peers))),
            RenderedFile(KEY, "0x" + node.key.private_key, secret=True),
            RenderedFile(STATIC_NODES, enode_list_json([p.enode for p in others(node, peers)])),
            RenderedFile(PERMISSIONS, toml_document({"nodes-allowlist": members})),
        ]

    def init_command(self, binary: Path, spec: NetworkSpec, node: NodePlan, node_dir: Path, genesis_path: Path) -> list[str]:
        # Besu initialises its database from genesis-file on first start; this step only puts
        # the network's genesis into the node directory so that the directory stands alone.
        return ["cp", str(genesis_path), str(node_dir / GENESIS)]

    def command(self, binary: Path, spec: NetworkSpec, node: NodePlan, node_dir: Path, peers: list[NodePlan],
                ipc: Path | None = None, sealer: Path | None = None, signer_dir: Path | None = None) -> list[str]:
        cmd = [
            str(binary),
            f"--config-file={node_dir / CONFIG}",
            f"--data-path={node_dir / DATA}",
            f"--genesis-file={node_dir / GENESIS}",
            f"--node-private-key-file={node_dir / KEY}",
            f"--static-nodes-file={node_dir / STATIC_NODES}",
            f"--permissions-nodes-config-file={node_dir / PERMISSIONS}",
        ]
        if ipc is not None:
            # the names are case-sensitive and not checked by Besu on IPC: upper case, as RpcApis spells them
            cmd += ["--Xrpc-ipc-enabled=true", f"--Xrpc-ipc-path={ipc}",
                    f"--Xrpc-ipc-apis={RPC_NAMESPACE[spec.consensus.engine].upper()}"]
        return cmd

    def environment(self, spec: NetworkSpec, node: NodePlan) -> dict[str, str]:
        return {}

    def validator_rpc(self, engine: str) -> ValidatorRpc:
        if engine == "clique":
            return ValidatorRpc(list_method="clique_getSigners", propose_method="clique_propose",
                                signer_method="clique_getSigner")
        ns = RPC_NAMESPACE[engine]
        return ValidatorRpc(list_method=f"{ns}_getValidatorsByBlockNumber", propose_method=f"{ns}_proposeValidatorVote")

    def rpc_apis(self, engine: str) -> list[str]:
        return list(PUBLIC_APIS)  # the vote namespace is on IPC only
