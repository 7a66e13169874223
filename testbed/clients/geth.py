"""go-ethereum 1.13 with Clique: genesis, config files and command line (pure functions).

Clique seals with an account of geth's account manager. Where the backend runs the node as a
local process (local, netns), that account lives in clef, geth's external signer, whose rules
sign block seals only (testbed/clients/clef.py): nothing is unlocked in geth, `eth_accounts`
answers [] and every signing call is refused. Where it runs geth's image or ships the binary to
hosts (docker, ansible), clef is not there and the key is unlocked inside geth as before (the
node key: it holds no funds). Every transaction this project sends is signed client-side.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from eth_account import Account

from testbed.chain.txs import LONDON
from testbed.clients import clef as clef_signer
from testbed.clients.base import (
    GETH_TXPOOL_FLAGS,
    PUBLIC_APIS,
    NodePlan,
    RenderedFile,
    ValidatorRpc,
    geth_ipc_flags,
    geth_rpc_flags,
)
from testbed.spec.network import CLIENT_ENGINES, NetworkSpec

FORKS_AT_ZERO = (
    "homesteadBlock", "eip150Block", "eip155Block", "eip158Block", "byzantiumBlock",
    "constantinopleBlock", "petersburgBlock", "istanbulBlock", "muirGlacierBlock",
    "berlinBlock", "londonBlock", "arrowGlacierBlock", "grayGlacierBlock",
)

# Keystore scrypt cost: geth's "light" setting. The password is random and stored 0600 beside it.
KEYSTORE_SCRYPT_N = 4096



def clique_extra_data(signers: list[str]) -> str:
    """32 zero bytes of vanity, the signer addresses sorted, 65 zero bytes for the seal."""
    ordered = sorted((bytes.fromhex(a.removeprefix("0x").lower()) for a in signers))
    return "0x" + "00" * 32 + "".join(a.hex() for a in ordered) + "00" * 65


def geth_genesis(spec: NetworkSpec, signers: list[str], alloc: dict[str, int]) -> dict:
    config: dict = {"chainId": spec.chain_id}
    config.update({fork: 0 for fork in FORKS_AT_ZERO})
    config["clique"] = {"period": spec.consensus.block_period, "epoch": spec.consensus.epoch}
    return {
        "config": config,
        "nonce": "0x0",
        "timestamp": "0x0",
        "extraData": clique_extra_data(signers),
        "gasLimit": hex(spec.consensus.gas_limit),
        "difficulty": "0x1",
        "baseFeePerGas": "0x0",  # a permissioned chain: fees start at zero and rise only under full blocks
        "mixHash": "0x" + "00" * 32,
        "coinbase": "0x" + "00" * 20,
        "alloc": {addr.removeprefix("0x").lower(): {"balance": hex(wei)} for addr, wei in alloc.items()},
    }


def static_nodes_toml(peers: list[NodePlan]) -> str:
    enodes = ", ".join(json.dumps(p.enode) for p in peers)
    return f"[Node.P2P]\nStaticNodes = [{enodes}]\nTrustedNodes = [{enodes}]\n"


class GethClient:
    name = "geth"
    binary = "geth"
    engines = CLIENT_ENGINES["geth"]
    fee_rules = LONDON
    admin_over_ipc = True
    sealer_tool = "clef"  # the external signer, where the backend runs local processes

    def genesis(self, spec: NetworkSpec, validators: list[str], alloc: dict[str, int]) -> dict:
        return geth_genesis(spec, validators, alloc)

    def node_files(self, spec: NetworkSpec, node: NodePlan, peers: list[NodePlan]) -> list[RenderedFile]:
        files = [
            RenderedFile("config.toml", static_nodes_toml(peers)),
            RenderedFile("data/geth/nodekey", node.key.private_key, secret=True),
        ]
        # every node can be voted in as a signer later, so every node carries its (fund-less) sealing key
        password = secrets.token_hex(24)
        keystore = Account.encrypt(node.key.private_key, password, kdf="scrypt", iterations=KEYSTORE_SCRYPT_N)
        # eth-keyfile writes the AES IV as a number's hex, dropping leading zero bytes (1 key in
        # 256); geth then panics "bad IV length". Zero-padding gives the same 16-byte counter.
        params = keystore["crypto"]["cipherparams"]
        params["iv"] = params["iv"].zfill(32)
        files += [
            RenderedFile("signer.password", password, secret=True),
            RenderedFile(f"data/keystore/signer-{node.address.lower()[2:]}.json", json.dumps(keystore), secret=True),
            *clef_signer.clef_files(),
        ]
        return files

    def init_command(self, binary: Path, spec: NetworkSpec, node: NodePlan, node_dir: Path, genesis_path: Path) -> list[str]:
        return [str(binary), "--datadir", str(node_dir / "data"), "--state.scheme", "hash", "init", str(genesis_path)]

    def command(self, binary: Path, spec: NetworkSpec, node: NodePlan, node_dir: Path, peers: list[NodePlan],
                ipc: Path | None = None, sealer: Path | None = None, signer_dir: Path | None = None) -> list[str]:
        """`sealer`: clef's binary and `signer_dir` the directory of its socket: seal through clef
        (nothing unlocked); without them, unlock the sealing key inside geth."""
        cmd = [
            str(binary),
            "--config", str(node_dir / "config.toml"),
            "--datadir", str(node_dir / "data"),
            "--networkid", str(spec.chain_id),
            "--syncmode", "full", "--gcmode", "archive", "--state.scheme", "hash",
            "--nodiscover", "--nat", "none", *geth_ipc_flags(ipc),
            # geth dials at most maxpeers/3 peers itself; leave room to dial every static peer
            "--maxpeers", str(3 * (len(peers) + 1) + 8),
            "--port", str(node.ports.p2p),
            *geth_rpc_flags(node, self.rpc_apis(spec.consensus.engine), authrpc=True),
            # 1 wei: geth 1.13 "sanitizes" 0 up to 1 gwei, and peers then refuse to relay
            # transactions whose tip is below it (only the receiving node would mine them)
            "--miner.gasprice", "1", "--miner.gaslimit", str(spec.consensus.gas_limit),
            "--verbosity", "3",
            *GETH_TXPOOL_FLAGS,
        ]
        cmd += ["--miner.etherbase", node.address]
        if node.is_validator:
            cmd.append("--mine")
        if sealer is not None and signer_dir is not None:
            return clef_signer.launch_script(sealer, node_dir, signer_dir, node.address, spec.chain_id, cmd)
        return cmd + [
            "--unlock", node.address, "--password", str(node_dir / "signer.password"),
            "--allow-insecure-unlock",  # geth requires it to unlock the sealing key while HTTP is on
        ]

    def environment(self, spec: NetworkSpec, node: NodePlan) -> dict[str, str]:
        return {}

    def validator_rpc(self, engine: str) -> ValidatorRpc:
        return ValidatorRpc(list_method="clique_getSigners", propose_method="clique_propose",
                            discard_method="clique_discard",
                            start_sealing_method="miner_start", stop_sealing_method="miner_stop",
                            signer_method="clique_getSigner")

    def rpc_apis(self, engine: str) -> list[str]:
        # clique (votes), miner (a member voted in starts sealing) and debug (debug_setHead rewinds a
        # node stuck on a losing Clique branch) are used over the IPC socket only
        return list(PUBLIC_APIS)

