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


def stall_limit_s(block_period: float) -> float:
    """How long a chain may go without a new block before it counts as stalled: max(15 s, 10 periods)
    (`testbed status` reports it, the stall watchdog acts on it)."""
    return max(15.0, 10.0 * block_period)


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
    # heights compared on every reachable node: at or below the common height (a node's own head
    # above it is sampled too, and a conflict there still counts as a divergence, but it is no checked height)
    shared = set.intersection(*(set(s.hashes) for s in reachable)) if reachable else set()
    shared = {h for h in shared if height is not None and h <= height}
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


# ---- over time: reorgs, stalls, liveness (pure; fed by the agreement monitor) -------------

@dataclass(frozen=True)
class Reorg:
    """A node replaced blocks it had already shown: the hash at `height` changed.

    `depth` counts the blocks the node dropped: from `height` up to the highest block it
    had shown before (a head replaced by a sibling is depth 1).
    """

    node: str
    height: int
    old_hash: str
    new_hash: str
    depth: int
    old_head: int

    def __str__(self) -> str:
        return (f"{self.node} reorganised {self.depth} block(s) from height {self.height}: "
                f"{self.old_hash[:12]} -> {self.new_hash[:12]}")


def find_reorgs(seen: dict[str, dict[int, str]], snapshots: list[NodeSnapshot]) -> list[Reorg]:
    """Compare each reachable node's fresh hashes with the ones it showed before (`seen`).

    One Reorg per node: at the lowest height whose hash changed, with the depth of what
    was dropped. Heights a node never showed before are not reorgs.
    """
    found: list[Reorg] = []
    for snap in snapshots:
        before = seen.get(snap.node) or {}
        if not snap.reachable or not before:
            continue
        changed = sorted(h for h, block_hash in snap.hashes.items() if h in before and before[h] != block_hash)
        if not changed:
            continue
        low = changed[0]
        old_head = max(before)
        found.append(Reorg(snap.node, low, before[low], snap.hashes[low], old_head - low + 1, old_head))
    return found


def apply_hashes(seen: dict[str, dict[int, str]], snapshots: list[NodeSnapshot], reorgs: list[Reorg]) -> None:
    """Fold fresh hashes into `seen`; after a reorg, drop the node's heights above its new head."""
    for snap in snapshots:
        if not snap.reachable:
            continue
        known = seen.setdefault(snap.node, {})
        if any(r.node == snap.node for r in reorgs) and snap.head_number is not None:
            for h in [h for h in known if h > snap.head_number]:
                del known[h]
        known.update(snap.hashes)


@dataclass(frozen=True)
class HeadPoint:
    """One node's head at one moment (wall-clock seconds)."""

    time: float
    node: str
    head: int | None  # None: the node did not answer


@dataclass(frozen=True)
class Stall:
    """No live node's head advanced for `seconds` (from `start` to `end`) at height `height`."""

    start: float
    end: float
    height: int
    ongoing: bool

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def __str__(self) -> str:
        return f"no new block for {self.seconds:.1f}s at height {self.height}" + (" (still stalled)" if self.ongoing else "")


def _network_head(points: list[HeadPoint]) -> list[tuple[float, int]]:
    """(time, highest head any node reported at that time), in time order."""
    by_time: dict[float, int] = {}
    for p in points:
        if p.head is not None:
            by_time[p.time] = max(by_time.get(p.time, p.head), p.head)
    return sorted(by_time.items())


def find_stalls(points: list[HeadPoint], min_seconds: float, *, end: float | None = None) -> list[Stall]:
    """Periods of at least `min_seconds` in which the highest head of the network did not grow."""
    series = _network_head(points)
    stalls: list[Stall] = []
    if not series:
        return stalls
    since, height = series[0]
    for t, head in series[1:]:
        if head > height:
            if t - since >= min_seconds:
                stalls.append(Stall(since, t, height, False))
            since, height = t, head
    last = end if end is not None else series[-1][0]
    if last - since >= min_seconds:
        stalls.append(Stall(since, last, height, True))
    return stalls


@dataclass(frozen=True)
class Liveness:
    """Blocks per minute over a window, per node and for the network (highest head)."""

    start: float
    end: float
    blocks: int  # growth of the network's highest head in the window
    per_node: dict[str, int]  # growth of each node's head in the window (nodes that answered twice)

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def blocks_per_min(self) -> float | None:
        return self.blocks * 60 / self.seconds if self.seconds > 0 else None

    def __str__(self) -> str:
        rate = self.blocks_per_min
        return (f"{self.blocks} blocks in {self.seconds:.1f}s" + (f" ({rate:.1f}/min)" if rate is not None else "")
                + (f"; most by one node: {max(self.per_node.values())}" if self.per_node else ""))


def liveness(points: list[HeadPoint], start: float, end: float) -> Liveness:
    """Chain growth between `start` and `end`, from the head samples inside that window."""
    inside = [p for p in points if start <= p.time <= end]
    series = _network_head(inside)
    blocks = series[-1][1] - series[0][1] if len(series) >= 2 else 0
    per_node: dict[str, int] = {}
    for node in sorted({p.node for p in inside}):
        heads = [p.head for p in sorted(inside, key=lambda p: p.time) if p.node == node and p.head is not None]
        if len(heads) >= 2:
            per_node[node] = max(heads) - heads[0]
    window_start = series[0][0] if series else start
    window_end = series[-1][0] if series else end
    return Liveness(window_start, window_end, max(blocks, 0), per_node)


def choose_branch(snapshots: list[NodeSnapshot], total_difficulty: dict[str, int]) -> str | None:
    """The node whose head branch the network should follow after a split: the heaviest
    branch (total difficulty), then the branch most nodes hold, then the first node."""
    live = [s for s in snapshots if s.reachable and s.head_hash is not None]
    if not live:
        return None
    holders: dict[str, int] = {}
    for s in live:
        holders[s.head_hash] = holders.get(s.head_hash, 0) + 1
    order = {s.node: i for i, s in enumerate(live)}
    best = max(live, key=lambda s: (total_difficulty.get(s.node, 0), holders[s.head_hash], -order[s.node]))
    return best.node


def rewind_points(snapshots: list[NodeSnapshot], chosen: str) -> dict[str, int]:
    """For every node whose head is off the chosen node's branch: the highest height at which
    it still agrees with that branch (their common ancestor), where it must rewind to."""
    by_node = {s.node: s for s in snapshots if s.reachable}
    reference = by_node[chosen].hashes
    points: dict[str, int] = {}
    for node, snap in by_node.items():
        if node == chosen or snap.head_number is None:
            continue
        if reference.get(snap.head_number) == snap.head_hash:
            continue  # on the branch (possibly behind): it catches up by itself
        common = [h for h, block_hash in snap.hashes.items() if reference.get(h) == block_hash]
        points[node] = max(common) if common else 0
    return points
