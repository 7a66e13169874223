"""GoQuorum v24.4.1 with QBFT or IBFT: genesis, node files and command line (pure functions).

Validators seal with their node key (GoQuorum makes the node key the etherbase of an
Istanbul-family engine), so no account is unlocked and no keystore is written. The process
needs PRIVATE_CONFIG=ignore (no Tessera privacy manager). GoQuorum's gas price is fixed at
zero (`isQuorum`); transactions are legacy transactions with gasPrice 0, and the genesis
stops before London (no base fee). See docs/goquorum.md.
"""

from __future__ import annotations

from pathlib import Path

from testbed.chain.txs import FeeRules
from testbed.clients.base import (
    GETH_TXPOOL_FLAGS,
    PUBLIC_APIS,
    NodePlan,
    RenderedFile,
    ValidatorRpc,
    geth_ipc_flags,
    geth_rpc_flags,
)
from testbed.clients.istanbul import (
    BFT_MIX_HASH,
    FORKS_TO_ISTANBUL,
    genesis_document,
    enode_list_json,
    everyone,
    istanbul_extra_data,
    others,
    qbft_extra_data,
    require_block_period,
)
from testbed.spec.network import CLIENT_ENGINES, NetworkSpec

TXN_SIZE_LIMIT_KB = 64  # GoQuorum's default is 32 KiB; contract deployments can exceed it


def goquorum_enode(node: NodePlan) -> str:
    """GoQuorum wants the discovery port spelled out when discovery is off."""
    return f"{node.enode}?discport=0"


def goquorum_genesis(spec: NetworkSpec, validators: list[str], alloc: dict[str, int]) -> dict:
    engine = spec.consensus.engine
    bft = {
        "epochlength": spec.consensus.epoch,
        "blockperiodseconds": require_block_period(spec),
        "requesttimeoutseconds": spec.consensus.request_timeout,
        "policy": 0,  # round-robin proposer
        "ceil2Nby3Block": 0,  # quorum is ceil(2N/3) from genesis on
    }
    config: dict = {"chainId": spec.chain_id}
    config.update({fork: 0 for fork in FORKS_TO_ISTANBUL})
    config["berlinBlock"] = 0
    config.update({"isQuorum": True, "txnSizeLimit": TXN_SIZE_LIMIT_KB})
    if engine == "qbft":
        config["qbft"] = bft
        extra = qbft_extra_data(validators)
    elif engine == "ibft":
        config["ibft"] = bft
        extra = istanbul_extra_data(validators)
    else:
        raise ValueError(f"goquorum does not run engine {engine!r}")
    return genesis_document(spec, config, extra, BFT_MIX_HASH, alloc)


class GoQuorumClient:
    name = "goquorum"
    binary = "goquorum"
    engines = CLIENT_ENGINES["goquorum"]
    fee_rules = FeeRules(london=False, gas_price=0)  # pre-London genesis, gas price fixed at 0
    sealer_tool = None  # validators seal with the node key
    admin_over_ipc = True

    def genesis(self, spec: NetworkSpec, validators: list[str], alloc: dict[str, int]) -> dict:
        return goquorum_genesis(spec, validators, alloc)

    def node_files(self, spec: NetworkSpec, node: NodePlan, peers: list[NodePlan]) -> list[RenderedFile]:
        # static-nodes.json: whom to dial; permissioned-nodes.json (with --permissioned):
        # who may connect at all, both ways. Both live in the data directory.
        return [
            RenderedFile("data/geth/nodekey", node.key.private_key, secret=True),
            RenderedFile("data/static-nodes.json", enode_list_json([goquorum_enode(p) for p in others(node, peers)])),
            RenderedFile("data/permissioned-nodes.json",
                         enode_list_json([goquorum_enode(p) for p in everyone(node, peers)])),
        ]

    def init_command(self, binary: Path, spec: NetworkSpec, node: NodePlan, node_dir: Path, genesis_path: Path) -> list[str]:
        return [str(binary), "--datadir", str(node_dir / "data"), "init", str(genesis_path)]

    def command(self, binary: Path, spec: NetworkSpec, node: NodePlan, node_dir: Path, peers: list[NodePlan],
                ipc: Path | None = None, sealer: Path | None = None, signer_dir: Path | None = None) -> list[str]:
        cmd = [
            str(binary),
            "--datadir", str(node_dir / "data"),
            "--networkid", str(spec.chain_id),
            "--syncmode", "full", "--gcmode", "archive",
            "--nodiscover", "--nat", "none", *geth_ipc_flags(ipc), "--permissioned",
            # GoQuorum is geth 1.10 underneath: it dials at most maxpeers/3 peers itself (see geth.py)
            "--maxpeers", str(3 * (len(peers) + 1) + 8),
            "--port", str(node.ports.p2p),
            *geth_rpc_flags(node, self.rpc_apis(spec.consensus.engine), authrpc=False),
            "--miner.gasprice", "0", "--miner.gaslimit", str(spec.consensus.gas_limit),
            "--verbosity", "3",
            *GETH_TXPOOL_FLAGS,
        ]
        # Every node runs the QBFT/IBFT engine with --mine: a node outside the validator set only
        # follows, and a member node voted in starts proposing at once, with no restart and no
        # miner_start over RPC (the miner namespace stays off the node's HTTP/WS).
        return cmd + ["--mine", "--miner.threads", "1", "--emitcheckpoints"]

    def environment(self, spec: NetworkSpec, node: NodePlan) -> dict[str, str]:
        return {"PRIVATE_CONFIG": "ignore"}

    def validator_rpc(self, engine: str) -> ValidatorRpc:
        # QBFT writes the proposer into the block's coinbase; IBFT keeps the coinbase for votes
        # (zero, or the candidate), so who proposed an IBFT block is asked of the engine's API.
        signer = "istanbul_getSignersFromBlockByHash" if engine == "ibft" else None
        return ValidatorRpc(list_method="istanbul_getValidators", propose_method="istanbul_propose",
                            signer_method=signer)

    def rpc_apis(self, engine: str) -> list[str]:
        return list(PUBLIC_APIS)  # istanbul (validators, votes, proposers) over the IPC socket only
