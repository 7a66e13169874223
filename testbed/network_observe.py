"""Looking at a running network: per-node snapshots, agreement (latest block or every height),
`status`, readiness after start-up, and the repair of a Clique chain stuck on competing branches
(`heal`, `reconcile_forks`). A mixin of Network (testbed/network.py), which provides the nodes,
their processes, endpoints and RPC."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from typing import Callable

from testbed.chain.sample import snapshot_all
from testbed.clients.base import NodePlan
from testbed.consensus import AgreementResult, NodeSnapshot, check_agreement, choose_branch, rewind_points, stall_limit_s
from testbed.engines import engine_of
from testbed.errors import ReadinessError

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class NodeStatus:
    plan: NodePlan
    process_alive: bool
    pid: int | None
    snapshot: NodeSnapshot


@dataclass(frozen=True)
class NetworkStatus:
    name: str
    client: str
    engine: str
    nodes: list[NodeStatus]
    agreement: AgreementResult
    observed_at: float = 0.0  # wall clock of the look
    block_period: int = 1

    @property
    def head_age_s(self) -> float | None:
        """Seconds since the newest block any node holds was sealed."""
        stamps = [n.snapshot.head_timestamp for n in self.nodes if n.snapshot.reachable and n.snapshot.head_timestamp]
        return round(max(0.0, self.observed_at - max(stamps)), 1) if stamps else None

    @property
    def stalled(self) -> bool:
        """No node has a block younger than max(15 s, 10 periods): the chain does not grow."""
        age = self.head_age_s
        return age is not None and age > stall_limit_s(self.block_period)

    def to_json(self) -> dict:
        return {
            "network": self.name, "client": self.client, "engine": self.engine,
            "head_age_s": self.head_age_s, "stalled": self.stalled,
            "agreement": {
                "agreed": self.agreement.agreed, "common_height": self.agreement.common_height,
                "summary": self.agreement.summary(),
                "divergences": [vars(d) for d in self.agreement.divergences],
                "unreachable": list(self.agreement.unreachable),
                "validators_agree": self.agreement.validators_agree,
            },
            "nodes": [
                {
                    "name": n.plan.name, "org": n.plan.org, "role": n.plan.role, "pid": n.pid,
                    "alive": n.process_alive, "rpc_url": n.plan.rpc_url, "reachable": n.snapshot.reachable,
                    "head_number": n.snapshot.head_number, "head_hash": n.snapshot.head_hash,
                    "peers": n.snapshot.peers,
                    "validators": list(n.snapshot.validators) if n.snapshot.validators is not None else None,
                }
                for n in self.nodes
            ],
        }


class NetworkObservation:
    """Network's observation and fork repair (see the module docstring)."""

    def heal(self, *, progress: Progress = _quiet, settle: float = 20.0) -> dict[str, int]:
        """Remove every link fault, then make sure the chain is one chain again.

        After a split, Clique can stay stuck on competing branches of equal weight: each side
        prefers its own, and every signer that may still seal sits on the other branch. If the
        chain does not move on within `settle` seconds, the nodes off the chosen branch (the
        heaviest, then the one most nodes hold) are rewound to the common ancestor
        (debug_setHead) and sync the chosen branch, as an operator would. Returns {node: height}
        of the nodes rewound.
        """
        self.backend.heal()
        return self.reconcile_forks(progress=progress, settle=settle)

    def reconcile_forks(self, *, progress: Progress = _quiet, settle: float = 20.0, wait: bool = True) -> dict[str, int]:
        live = self.running_nodes()
        start = {s.node: s.head_number for s in self.snapshots(only=live) if s.reachable}
        if not start:
            return {}
        goal = max(start.values()) + 2
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            snaps = self.snapshots(only=live)
            if all(s.reachable and (s.head_number or 0) >= goal for s in snaps):
                return {}
            time.sleep(1)
        if not engine_of(self.spec).repairs_forks:
            return {}  # QBFT/IBFT blocks are final: no competing branches to reconcile
        low = max(0, min(start.values()) - 128)
        heights = list(range(low, max(start.values()) + 1))
        snaps = self.snapshots(heights, only=live)
        weights = {s.node: self._total_difficulty(s) for s in snaps if s.reachable}
        chosen = choose_branch(snaps, weights)
        points = rewind_points(snaps, chosen) if chosen else {}
        for name, height in points.items():
            progress(f"{name} is stuck on a competing branch: rewinding it to block #{height} to follow {chosen}'s")
            self.admin_call(name, "debug_setHead", hex(height))
        if points and wait:
            self.wait_ready(progress=progress, new_blocks=2, only=live, timeout=90 + 3 * len(live))
        return points
    def _genesis_time(self) -> float:
        """The genesis block's timestamp (a new Clique network's is set a few seconds ahead)."""
        try:
            return float(int(json.loads(self.state.genesis_file.read_text()).get("timestamp", "0x0"), 16))
        except (OSError, ValueError, AttributeError):
            return 0.0

    def _total_difficulty(self, snap: NodeSnapshot) -> int:
        block = self._rpc_call(snap.node, "eth_getBlockByHash", snap.head_hash, False) or {}
        return int(block.get("totalDifficulty") or "0x0", 16)
    # ---- observation ------------------------------------------------------------------------
    def snapshots(self, heights: list[int] | None = None, only: list[str] | None = None) -> list[NodeSnapshot]:
        methods = {n.name: self.validator_rpc_of(n.name).list_method for n in self.nodes if only is None or n.name in only}
        return snapshot_all(self.endpoints(only), methods, heights, admin=self.admin_urls(only))

    def agreement(self, *, full: bool = False, only: list[str] | None = None, settle: float = 0.0) -> AgreementResult:
        """Agreement on the latest common block (or, with full, on every height up to it).

        Clique has no instant finality: two signers may seal competing blocks at the tip and
        one is replaced a block later. A disagreement among reachable nodes is therefore
        sampled again for up to `settle` seconds; one that persists is the answer.
        """
        deadline = time.monotonic() + settle
        while True:
            result = self._agreement_once(full=full, only=only)
            if result.agreed or result.unreachable or time.monotonic() >= deadline:
                return result
            time.sleep(1.0)

    def _agreement_once(self, *, full: bool, only: list[str] | None) -> AgreementResult:
        first = self.snapshots(only=only)
        heads = [s.head_number for s in first if s.reachable and s.head_number is not None]
        if not heads:
            return check_agreement(first)
        common = min(heads)
        heights = list(range(0, common + 1)) if full else [common]
        snaps = self.snapshots(heights, only=only)
        now = [s.head_number for s in snaps if s.reachable and s.head_number is not None]
        if now and min(now) < common:  # a Clique reorg to a shorter, heavier branch meanwhile: judge up to the new common head
            snaps = [replace(s, hashes={h: v for h, v in s.hashes.items() if h <= min(now)}) for s in snaps]
        return check_agreement(snaps)

    def status(self) -> NetworkStatus:
        pids = {n.name: self.state.read_pid(n.name) for n in self.nodes}
        alive = {name: bool(p and self.backend.is_alive(p)) for name, p in pids.items()}
        live = [name for name, ok in alive.items() if ok]
        snaps = {s.node: s for s in self.snapshots(only=live)} if live else {}
        heads = [s.head_number for s in snaps.values() if s.reachable and s.head_number is not None]
        if heads:
            snaps = {s.node: s for s in self.snapshots([min(heads)], only=live)}
        all_snaps = [snaps.get(n.name, NodeSnapshot(node=n.name, reachable=False, error="not running")) for n in self.nodes]
        return NetworkStatus(
            name=self.name, client=self.spec.client, engine=self.spec.consensus.engine,
            nodes=[NodeStatus(plan=n, process_alive=alive[n.name], pid=pids[n.name].pid if pids[n.name] else None,
                              snapshot=snaps.get(n.name, NodeSnapshot(node=n.name, reachable=False, error="not running")))
                   for n in self.nodes],
            agreement=check_agreement(all_snaps), observed_at=time.time(), block_period=self.spec.consensus.block_period,
        )

    def wait_ready(self, *, progress: Progress = _quiet, timeout: float | None = None, new_blocks: int = 3,
                   only: list[str] | None = None) -> AgreementResult:
        """Return once every node (or `only`) has all its peers and agrees on `new_blocks` new blocks."""
        names = only or [n.name for n in self.nodes]
        # a dial that loses a simultaneous-connect race is retried only after the client's dial
        # history expires (35 s in geth and GoQuorum: p2p/dial.go); the retry can lose the race
        # again (CI saw a five-node network still one link short at 70 s, peered on the third
        # round): leave room for three rounds. A network that peers at once is not slowed.
        timeout = timeout if timeout is not None else 110 + 3 * len(names)
        deadline = time.monotonic() + timeout
        expected_peers = len(self.nodes) - 1
        progress(f"waiting for {len(names)} nodes to peer ({expected_peers} peers each)")
        target: int | None = None
        last: list[NodeSnapshot] = []
        # Clique signers seal from the first second, before they are peered: competing first
        # blocks of equal weight can leave the chain stuck (as after a partition). No new head
        # for this long while fully peered means stuck: reconcile the branches.
        stall_after = max(10.0, 5.0 * self.spec.consensus.block_period)
        first_block_at = self._genesis_time() + self.spec.consensus.block_period  # no block can exist before
        seen_heads: tuple = ()
        moved_at = time.monotonic()
        while time.monotonic() < deadline:
            for name in names:
                if not self.process(name):
                    raise ReadinessError(f"node {name} exited during start-up: " + self._last_log_line(name),
                                         hint=f"log: {self.state.log_file(name)}")
            last = self.snapshots(only=names)
            peered = all(s.reachable and (s.peers or 0) >= min(expected_peers, len(names) - 1) for s in last)
            now_heads = tuple(s.head_hash for s in last)
            if now_heads != seen_heads:
                seen_heads, moved_at = now_heads, time.monotonic()
            elif peered and min(time.monotonic() - moved_at, time.time() - first_block_at) > stall_after:
                rewound = self.reconcile_forks(progress=progress, settle=0, wait=False)
                progress(f"start-up stalled for {stall_after:.0f}s; " + (f"rewound {rewound}" if rewound else "no competing branches found"))
                moved_at = time.monotonic()
            if peered:
                heads = [s.head_number for s in last]
                if target is None:
                    target = max(heads) + new_blocks
                    progress(f"all nodes peered; waiting for block #{target} agreed by every node")
                if min(heads) >= target:
                    result = check_agreement(self.snapshots([target], only=names))
                    if result.agreed:
                        progress(f"ready: {result.summary()}")
                        return result
            time.sleep(0.25)
        laggard = self._laggard(last, expected_peers, target)
        raise ReadinessError(
            f"network {self.name!r} not ready after {timeout:.0f}s: {laggard}: " + self._last_log_line(laggard.split()[0]),
            hint=f"log: {self.state.log_file(laggard.split()[0])}",
        )

    def _laggard(self, snaps: list[NodeSnapshot], expected_peers: int, target: int | None) -> str:
        for s in snaps:
            if not s.reachable:
                return f"{s.node} does not answer RPC"
        for s in snaps:
            if (s.peers or 0) < expected_peers:
                return f"{s.node} has {s.peers} of {expected_peers} peers"
        if snaps and target is not None:
            lowest = min(snaps, key=lambda s: s.head_number or 0)
            return f"{lowest.node} is at block {lowest.head_number}, waiting for {target}"
        return f"{snaps[0].node if snaps else self.nodes[0].name} not ready"

    def _last_log_line(self, name: str) -> str:
        lines = [line for line in self.state.tail_log(name, 40) if line.strip()]
        for line in reversed(lines):
            if any(word in line for word in ("Fatal", "ERROR", "error", "panic")):
                return line.strip()[:300]
        return lines[-1].strip()[:300] if lines else "(empty log)"
