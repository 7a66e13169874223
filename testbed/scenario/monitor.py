"""The agreement monitor: a thread that samples every live node beside a scenario or load run.

Each sample is one JSON-RPC batch per node (head, peers, validator set, and block hashes
from a short recheck window below the node's previous head up to its new head), so
hashes are fetched incrementally: a height is read again only while it is within
`recheck` blocks of the head, which is where Clique reorganises. If the lowest rechecked
hash changed too, the window is widened until it reaches a height that did not change.
Every `views_every` samples the same eth_call views are asked of every node at the
common head. All judging is done by the pure functions in testbed.consensus; this class
only gathers, writes `samples.jsonl` and builds the verdict (`monitor.json`).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Callable

from testbed.chain.rpc import RpcClient, RpcError
from testbed.chain.sample import ValidatorMethod, method_of, validator_set
from testbed.consensus import (HeadPoint, NodeSnapshot, Reorg, apply_hashes, find_divergences, find_reorgs,
                               find_stalls, find_state_mismatches, liveness)
from testbed.runs import RunDir

Endpoints = Callable[[], dict[str, str]]  # node name -> RPC URL of the nodes that are up now
Emit = Callable[..., None]


def _quiet(*_args, **_kwargs) -> None:
    return None


@dataclass
class NodeTrack:
    """What the monitor knows of one node between samples."""

    hashes: dict[int, str] = field(default_factory=dict)
    head: int | None = None
    header_method: str = "eth_getHeaderByNumber"


@dataclass(frozen=True)
class MonitorVerdict:
    agreed: bool  # no two live nodes hold different blocks at any height up to the common head (at the end)
    common_height: int | None
    heights_checked: int
    divergences: list[dict]  # final: node, height, both hashes
    transient_divergences: int  # samples in which live nodes differed below the common head
    first_transient: dict | None
    reorgs: list[dict]
    max_reorg_depth: int
    stalls: list[dict]
    blocks_per_min: float | None
    validator_sets_agree: bool
    validator_sets: dict[str, list[str]]
    state_mismatches: list[dict]
    samples: int
    nodes_at_end: list[str]
    start: float
    end: float
    sampler_errors: list[str]

    def to_json(self) -> dict:
        return dict(vars(self))

    def summary(self) -> str:
        parts = [f"agreed on {self.heights_checked} heights up to #{self.common_height}" if self.agreed
                 else f"DIVERGED: {self.divergences[0]['evidence'] if self.divergences else 'no common block'}"]
        parts.append(f"max reorg depth {self.max_reorg_depth} ({len(self.reorgs)} reorgs)")
        if self.blocks_per_min is not None:
            parts.append(f"{self.blocks_per_min:.1f} blocks/min")
        if self.stalls:
            parts.append(f"{len(self.stalls)} stall(s)")
        if self.state_mismatches:
            parts.append(f"{len(self.state_mismatches)} state mismatch(es)")
        return "; ".join(parts)


class AgreementMonitor:
    def __init__(self, endpoints: Endpoints, *, validator_method: ValidatorMethod, run: RunDir,
                 interval: float = 0.5, recheck: int = 12, stall_after: float = 5.0, views=None,
                 views_every: int = 4, emit: Emit = _quiet, timeout: float = 3.0, admin: Endpoints | None = None) -> None:
        self.endpoints = endpoints
        self.validator_method = validator_method
        self.admin = admin or dict  # node name -> its admin endpoint, where validator sets are read
        self.run = run  # where samples.jsonl and monitor.json go
        self.interval = interval
        self.recheck = recheck
        self.stall_after = stall_after
        self.views = views
        self.views_every = max(1, views_every)
        self.emit = emit
        self.timeout = timeout
        self.deadline = max(1.0, min(timeout, 2 * interval))  # per sample; a late node is skipped, not waited for
        self.tracks: dict[str, NodeTrack] = {}
        self.points: list[HeadPoint] = []
        self.reorgs: list[Reorg] = []
        self.reorg_times: list[float] = []
        self.validator_sets: dict[str, tuple[str, ...]] = {}
        self.state_mismatches: list[dict] = []
        self.transient: list[dict] = []
        self.samples = 0
        self.live_at_end: list[str] = []
        self.start_time: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="monitor-rpc")
        self.errors: list[str] = []

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> "AgreementMonitor":
        self.start_time = time.time()
        self._thread = threading.Thread(target=self._loop, name="agreement-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self, converge: float = 15.0) -> MonitorVerdict:
        """Stop sampling, take a last sample with the full state views, write the verdict.

        A node that just came back (resumed, restarted, healed) may still sit on its own tip
        block for a few seconds before it fetches the others' chain. While the last sample
        shows a divergence, sample again for up to `converge` seconds: a fork that resolves
        is recorded as a reorg, one that persists is the verdict.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.deadline = self.timeout  # the last sample decides who is live at the end: give every node its full time
        self.sample(force_views=True)
        until = time.monotonic() + converge
        while self.verdict().divergences and time.monotonic() < until:
            time.sleep(self.interval)
            self.sample(force_views=True)
        self._pool.shutdown(wait=True)
        verdict = self.verdict()
        self.run.write_json("monitor.json", verdict.to_json())
        return verdict

    def _loop(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.sample()
            except Exception as exc:  # the monitor must never take the run down; the error is recorded
                self.errors.append(f"{exc.__class__.__name__}: {exc}")
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))

    # ---- one sample -----------------------------------------------------------------------
    def _fetch(self, name: str, url: str, admin_url: str | None) -> NodeSnapshot:
        """The node's chain view, then (once, if it answered) the validator set on its admin endpoint."""
        snap = self._chain_view(name, url)
        if not snap.reachable:
            return snap
        answer = validator_set(admin_url, method_of(self.validator_method, name), self.timeout)
        return replace(snap, validators=tuple(sorted(a.lower() for a in answer)) if answer is not None else None)

    def _chain_view(self, name: str, url: str) -> NodeSnapshot:
        track = self.tracks.get(name) or NodeTrack()
        with RpcClient(url, timeout=self.timeout) as rpc:
            prev = track.head
            low = max(0, prev - self.recheck) if prev is not None else None
            heights = list(range(low, prev + 5)) if low is not None else []
            while True:
                snap = self._batch(rpc, name, track, heights)
                if not snap.reachable or low is None or low == 0:
                    return snap
                if snap.hashes.get(low) in (None, track.hashes.get(low)) or low not in track.hashes:
                    return snap
                new_low = max(0, low - 4 * self.recheck)  # the reorg goes deeper than the window: widen it
                heights, low = list(range(new_low, low)) + heights, new_low

    def _batch(self, rpc: RpcClient, name: str, track: NodeTrack, heights: list[int]) -> NodeSnapshot:
        calls: list[tuple[str, list]] = [("eth_getBlockByNumber", ["latest", False]), ("net_peerCount", [])]
        fixed = len(calls)
        header = lambda h: (track.header_method, [hex(h)] if track.header_method == "eth_getHeaderByNumber" else [hex(h), False])
        calls += [header(h) for h in heights]
        try:
            results = rpc.batch(calls, allow_errors=True)
        except RpcError as exc:
            return NodeSnapshot(node=name, reachable=False, error=str(exc))
        head = results[0]
        if not isinstance(head, dict):
            return NodeSnapshot(node=name, reachable=False, error=str(head))
        number = int(head["number"], 16)
        hashes = {number: head["hash"]}
        unsupported = False
        for h, block in zip(heights, results[fixed:]):
            if isinstance(block, dict):
                hashes[h] = block["hash"]
            elif isinstance(block, RpcError) and "not" in str(block).lower() and "exist" in str(block).lower():
                unsupported = True
        if unsupported and track.header_method == "eth_getHeaderByNumber":
            track.header_method = "eth_getBlockByNumber"  # clients without the header call
        rest = [h for h in range(max(heights, default=-1) + 1, number) if h not in hashes]
        if rest:  # the head moved further than guessed: one more batch for the gap
            for start in range(0, len(rest), 500):
                chunk = rest[start:start + 500]
                try:
                    blocks = rpc.batch([header(h) for h in chunk], allow_errors=True)
                except RpcError:
                    break
                hashes.update({h: b["hash"] for h, b in zip(chunk, blocks) if isinstance(b, dict)})
        peers = results[1] if isinstance(results[1], str) else None
        return NodeSnapshot(node=name, reachable=True, head_number=number, head_hash=head["hash"],
                            head_timestamp=int(head["timestamp"], 16), peers=int(peers, 16) if peers else None,
                            hashes={h: v for h, v in hashes.items() if h <= number})

    def _fetch_all(self, endpoints: dict[str, str]) -> list[NodeSnapshot]:
        """All nodes at once; a node that has not answered by the deadline (paused, overloaded)
        counts as unreachable in this sample, so one frozen node never delays the others' samples."""
        admin = self.admin()  # once per sample: node name -> admin endpoint
        futures = {name: self._pool.submit(self._fetch, name, url, admin.get(name)) for name, url in endpoints.items()}
        wait(futures.values(), timeout=self.deadline)
        snaps = []
        for name, future in futures.items():
            if future.done() and future.exception() is None:
                snaps.append(future.result())
            else:
                future.cancel()
                error = f"no answer within {self.deadline:.1f}s" if not future.done() else str(future.exception())
                snaps.append(NodeSnapshot(node=name, reachable=False, error=error))
        return snaps

    def sample(self, force_views: bool = False) -> dict:
        with self._lock:
            return self._sample(force_views)

    def _sample(self, force_views: bool) -> dict:
        endpoints = self.endpoints()
        now = time.time()
        snaps = self._fetch_all(endpoints)
        seen = {name: track.hashes for name, track in self.tracks.items()}
        reorgs = find_reorgs(seen, snaps)
        apply_hashes(seen, snaps, reorgs)
        for snap in snaps:
            track = self.tracks.setdefault(snap.node, NodeTrack())
            track.hashes = seen.get(snap.node, track.hashes)
            if snap.reachable:
                track.head = snap.head_number
                if snap.validators is not None:
                    self.validator_sets[snap.node] = snap.validators
            self.points.append(HeadPoint(now, snap.node, snap.head_number if snap.reachable else None))
        for reorg in reorgs:
            self.reorgs.append(reorg)
            self.reorg_times.append(now)
            self.emit("reorg", node=reorg.node, height=reorg.height, depth=reorg.depth,
                      old_hash=reorg.old_hash, new_hash=reorg.new_hash)
        live = [s for s in snaps if s.reachable]
        common = min((s.head_number for s in live), default=None)
        below = [NodeSnapshot(node=s.node, reachable=True, hashes={h: v for h, v in s.hashes.items() if h <= common})
                 for s in live] if common is not None else []
        divergences = find_divergences(below)
        if divergences:
            first = divergences[0]
            self.transient.append({"time": now, "height": first.height, "node_a": first.node_a, "hash_a": first.hash_a,
                                   "node_b": first.node_b, "hash_b": first.hash_b})
        row: dict = {
            "time": round(now, 3), "sample": self.samples, "common_head": common,
            "nodes": {s.node: ({"head": s.head_number, "hash": s.head_hash, "block_time": s.head_timestamp,
                                "since_block_s": round(now - s.head_timestamp, 2) if s.head_timestamp else None,
                                "peers": s.peers, "validators": len(s.validators) if s.validators is not None else None}
                               if s.reachable else {"head": None, "error": (s.error or "")[:160]}) for s in snaps},
            "down": sorted(set(self.tracks) - set(endpoints)),
            "divergences": [str(d) for d in divergences],
            "reorgs": [{"node": r.node, "height": r.height, "depth": r.depth} for r in reorgs],
        }
        if self.views is not None and common is not None and common >= self.views.since_block and \
                (force_views or self.samples % self.views_every == 0):
            row["views"] = self._compare_views(endpoints, [s.node for s in live], common, now)
        self.samples += 1
        self.live_at_end = [s.node for s in live]
        self.run.append_jsonl("samples.jsonl", row)
        return row

    def _compare_views(self, endpoints: dict[str, str], nodes: list[str], block: int, now: float) -> dict:
        views = self.views.views()

        def ask(node: str) -> tuple[str, dict[str, object]]:
            with RpcClient(endpoints[node], timeout=self.timeout) as rpc:
                try:
                    answers = rpc.batch([("eth_call", [{"to": v.to, "data": v.data}, hex(block)]) for v in views],
                                        allow_errors=True)
                except RpcError as exc:
                    return node, {"(unreachable)": str(exc)[:80]}
            return node, {v.key: (a if isinstance(a, str) else "error") for v, a in zip(views, answers)}

        raw = dict(self._pool.map(ask, nodes))
        answered = {n: v for n, v in raw.items() if "(unreachable)" not in v}
        mismatches = find_state_mismatches(answered)
        for m in mismatches:
            self.state_mismatches.append({"time": now, "block": block, "key": m.key, "node_a": m.node_a,
                                          "value_a": str(m.value_a), "node_b": m.node_b, "value_b": str(m.value_b)})
        first = next(iter(answered.values()), {})
        by_key = {v.key: v for v in views}
        return {"block": block, "nodes": sorted(answered), "mismatches": [str(m) for m in mismatches],
                "values": {k: self.views.decode(by_key[k], v) for k, v in first.items() if k in by_key}}

    # ---- verdict --------------------------------------------------------------------------
    def heads(self) -> list[HeadPoint]:
        with self._lock:
            return list(self.points)

    def verdict(self) -> MonitorVerdict:
        live = [n for n in self.live_at_end if n in self.tracks]
        heads = [self.tracks[n].head for n in live if self.tracks[n].head is not None]
        common = min(heads) if heads else None
        finals = [NodeSnapshot(node=n, reachable=True, hashes={h: v for h, v in self.tracks[n].hashes.items()
                                                                 if common is not None and h <= common}) for n in live]
        divergences = find_divergences(finals)
        heights = set().union(*(s.hashes.keys() for s in finals)) if finals else set()
        start = self.start_time or (self.points[0].time if self.points else time.time())
        end = self.points[-1].time if self.points else start
        rate = liveness(self.points, start, end)
        sets = {n: list(v) for n, v in self.validator_sets.items() if n in live}
        return MonitorVerdict(
            agreed=bool(finals) and common is not None and not divergences,
            common_height=common, heights_checked=len(heights),
            divergences=[{"height": d.height, "node_a": d.node_a, "hash_a": d.hash_a, "node_b": d.node_b,
                          "hash_b": d.hash_b, "evidence": str(d)} for d in divergences],
            transient_divergences=len(self.transient), first_transient=self.transient[0] if self.transient else None,
            reorgs=[{**vars(r), "time": t, "evidence": str(r)} for r, t in zip(self.reorgs, self.reorg_times)],
            max_reorg_depth=max((r.depth for r in self.reorgs), default=0),
            stalls=[{"start": s.start, "end": s.end, "seconds": round(s.seconds, 2), "height": s.height,
                     "ongoing": s.ongoing, "evidence": str(s)} for s in find_stalls(self.points, self.stall_after)],
            blocks_per_min=rate.blocks_per_min,
            validator_sets_agree=len({tuple(v) for v in sets.values()}) <= 1, validator_sets=sets,
            state_mismatches=self.state_mismatches, samples=self.samples, nodes_at_end=live, start=start, end=end,
            sampler_errors=self.errors[:20],
        )
