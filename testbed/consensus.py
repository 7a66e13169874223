"""Agreement checks: pure functions over per-node snapshots, each returning evidence.

Sampling the nodes lives in testbed.chain.sample; nothing here does I/O, so every check
is unit-tested with crafted snapshots (forks, unreachable nodes, split validator sets).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class NodeSnapshot:
    node: str
    reachable: bool
    head_number: int | None = None
    head_hash: str | None = None
    head_timestamp: int | None = None
    peers: int | None = None
    validators: tuple[str, ...] | None = None
    hashes: dict[int, str] = field(default_factory=dict)  # height -> block hash, for the heights sampled
    error: str | None = None


@dataclass(frozen=True)
class Divergence:
    """Two nodes hold different blocks at the same height: a fork."""

    height: int
    node_a: str
    hash_a: str
    node_b: str
    hash_b: str

    def __str__(self) -> str:
        return f"height {self.height}: {self.node_a} has {self.hash_a[:12]}, {self.node_b} has {self.hash_b[:12]}"


@dataclass(frozen=True)
class AgreementResult:
    agreed: bool
    common_height: int | None  # highest height every reachable node has
    heights_checked: int
    divergences: tuple[Divergence, ...] = ()
    unreachable: tuple[str, ...] = ()
    validator_sets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    validators_agree: bool = True

    def summary(self) -> str:
        if not self.agreed:
            if self.divergences:
                first = self.divergences[0]
                return f"DIVERGED at {first} ({len(self.divergences)} divergent heights)"
            return "NO AGREEMENT: " + (f"unreachable {', '.join(self.unreachable)}" if self.unreachable else "no common block")
        text = f"agreed on {self.heights_checked} heights up to #{self.common_height}"
        if self.unreachable:
            text += f" (unreachable: {', '.join(self.unreachable)})"
        if not self.validators_agree:
            text += "; validator sets differ"
        return text


def common_height(snapshots: list[NodeSnapshot]) -> int | None:
    heads = [s.head_number for s in snapshots if s.reachable and s.head_number is not None]
    return min(heads) if heads else None


def find_divergences(snapshots: list[NodeSnapshot]) -> list[Divergence]:
    """Every height at which two reachable nodes report different hashes (first pair of each height)."""
    found: list[Divergence] = []
    heights = sorted({h for s in snapshots if s.reachable for h in s.hashes})
    for height in heights:
        holders = [(s.node, s.hashes[height]) for s in snapshots if s.reachable and height in s.hashes]
        if not holders:
            continue
        ref_node, ref_hash = holders[0]
        for node, block_hash in holders[1:]:
            if block_hash != ref_hash:
                found.append(Divergence(height, ref_node, ref_hash, node, block_hash))
                break
    return found


def check_agreement(snapshots: list[NodeSnapshot], *, require_all: bool = True) -> AgreementResult:
    """Do all reachable nodes hold the same block at every sampled height, and the same validators?

    With require_all, an unreachable node makes the result not agreed.
    """
    unreachable = tuple(s.node for s in snapshots if not s.reachable)
    reachable = [s for s in snapshots if s.reachable]
    height = common_height(snapshots)
    divergences = find_divergences(snapshots)
    validator_sets = {s.node: tuple(sorted(a.lower() for a in s.validators)) for s in reachable if s.validators is not None}
    validators_agree = len(set(validator_sets.values())) <= 1
    shared = {h for h in set().union(*(s.hashes.keys() for s in reachable))} if reachable else set()
    agreed = bool(reachable) and height is not None and not divergences and validators_agree
    if require_all and unreachable:
        agreed = False
    return AgreementResult(
        agreed=agreed,
        common_height=height,
        heights_checked=len(shared),
        divergences=tuple(divergences),
        unreachable=unreachable,
        validator_sets=validator_sets,
        validators_agree=validators_agree,
    )


@dataclass(frozen=True)
class StateMismatch:
    """Two nodes return different values for the same query at the same block."""

    key: str
    node_a: str
    value_a: object
    node_b: str
    value_b: object

    def __str__(self) -> str:
        return f"{self.key}: {self.node_a} says {self.value_a!r}, {self.node_b} says {self.value_b!r}"


def find_state_mismatches(values_by_node: dict[str, dict[str, object]]) -> list[StateMismatch]:
    """Compare per-node answers to the same queries (balances, eth_call views) made at one block."""
    found: list[StateMismatch] = []
    nodes = list(values_by_node)
    if not nodes:
        return found
    ref = nodes[0]
    keys = sorted(set().union(*(v.keys() for v in values_by_node.values())))
    for key in keys:
        for other in nodes[1:]:
            a, b = values_by_node[ref].get(key), values_by_node[other].get(key)
            if a != b:
                found.append(StateMismatch(key, ref, a, other, b))
                break
    return found
