"""Pieces shared by the Istanbul-family adapters (GoQuorum QBFT/IBFT, Besu QBFT/IBFT 2.0).

extraData layouts (all RLP through the `rlp` package; validators in the order given):

- QBFT (Besu and GoQuorum, the same protocol):
  RLP([32-byte vanity, [validators], vote = empty list, round = 0 (empty bytes), seals = []])
- IBFT 2.0 (Besu only):
  RLP([32-byte vanity, [validators], vote = empty bytes, round = 4 bytes 0, seals = []])
- IBFT 1 (GoQuorum "istanbul"): 32 raw vanity bytes, then
  RLP([[validators], seal = empty bytes, committed seals = []])

Also: the QBFT/IBFT genesis mixHash, fork blocks, JSON renderings of peer lists.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import rlp
from eth_utils import to_checksum_address

from testbed.clients.base import NodePlan
from testbed.errors import SpecError
from testbed.spec.network import NetworkSpec

# "ctical byzantine fault tolerance": the mixHash every Istanbul-family genesis carries.
BFT_MIX_HASH = "0x63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365"
VANITY = bytes(32)
IBFT2_ROUND_BYTES = 4

# Forks every Istanbul-family genesis activates at block 0.
FORKS_TO_ISTANBUL = (
    "homesteadBlock", "eip150Block", "eip155Block", "eip158Block", "byzantiumBlock",
    "constantinopleBlock", "petersburgBlock", "istanbulBlock", "muirGlacierBlock",
)


def _address_bytes(addresses: Iterable[str]) -> list[bytes]:
    out = []
    for address in addresses:
        raw = bytes.fromhex(address.removeprefix("0x"))
        if len(raw) != 20:
            raise ValueError(f"not a 20-byte address: {address!r}")
        out.append(raw)
    if not out:
        raise ValueError("a BFT genesis needs at least one validator")
    return out


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def qbft_extra_data(validators: list[str]) -> str:
    """QBFT genesis extraData (Besu and GoQuorum)."""
    return _hex(rlp.encode([VANITY, _address_bytes(validators), [], 0, []]))


def ibft2_extra_data(validators: list[str]) -> str:
    """Besu IBFT 2.0 genesis extraData: no vote is empty bytes, the round is 4 bytes."""
    round_zero = (0).to_bytes(IBFT2_ROUND_BYTES, "big")
    return _hex(rlp.encode([VANITY, _address_bytes(validators), b"", round_zero, []]))


def istanbul_extra_data(validators: list[str]) -> str:
    """GoQuorum IBFT (istanbul) genesis extraData: raw vanity, then RLP(validators, seal, seals)."""
    return _hex(VANITY + rlp.encode([_address_bytes(validators), b"", []]))


def _checksummed(items) -> list[str]:
    return [to_checksum_address(a) for a in items]


def decode_bft_validators(extra_data: str) -> list[str]:
    """The validators in a QBFT or IBFT 2.0 extraData (whole field RLP), checksummed."""
    fields = rlp.decode(bytes.fromhex(extra_data.removeprefix("0x")))
    if not isinstance(fields, list) or len(fields) != 5 or len(fields[0]) != 32:
        raise ValueError("not a QBFT/IBFT 2.0 extraData: expected RLP list of 5 with a 32-byte vanity")
    return _checksummed(fields[1])


def decode_istanbul_validators(extra_data: str) -> list[str]:
    """The validators in a GoQuorum IBFT (istanbul) extraData, checksummed."""
    raw = bytes.fromhex(extra_data.removeprefix("0x"))
    fields = rlp.decode(raw[len(VANITY):]) if len(raw) > len(VANITY) else None
    if not isinstance(fields, list) or len(fields) != 3:
        raise ValueError("not an istanbul extraData: expected 32 vanity bytes then an RLP list of 3")
    return _checksummed(fields[0])


def require_block_period(spec: NetworkSpec) -> int:
    """QBFT/IBFT always seal on a timer: a block period of 0 has no meaning there."""
    period = spec.consensus.block_period
    if period < 1:
        raise SpecError(
            f"consensus.block_period 0 is only valid for clique; {spec.consensus.engine} needs >= 1 second",
            hint="set consensus.block_period: 1",
        )
    return period


def alloc_section(alloc: dict[str, int]) -> dict:
    return {addr.removeprefix("0x").lower(): {"balance": hex(wei)} for addr, wei in alloc.items()}


def genesis_document(spec: NetworkSpec, config: dict, extra_data: str, mix_hash: str, alloc: dict[str, int]) -> dict:
    """The genesis fields every client shares around its engine-specific `config` and extraData."""
    return {
        "config": config,
        "nonce": "0x0",
        "timestamp": "0x0",
        "extraData": extra_data,
        "gasLimit": hex(spec.consensus.gas_limit),
        "difficulty": "0x1",
        "mixHash": mix_hash,
        "coinbase": "0x" + "00" * 20,
        "alloc": alloc_section(alloc),
    }


def everyone(node: NodePlan, peers: list[NodePlan]) -> list[NodePlan]:
    """The node and its peers, once each, in network order."""
    by_name = {p.name: p for p in [node, *peers]}
    return sorted(by_name.values(), key=lambda p: p.index)


def others(node: NodePlan, peers: list[NodePlan]) -> list[NodePlan]:
    return [p for p in everyone(node, peers) if p.name != node.name]


def enode_list_json(enodes: list[str]) -> str:
    return json.dumps(enodes, indent=1) + "\n"
