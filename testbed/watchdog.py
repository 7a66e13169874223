"""A Clique stall watchdog: the operator's known remedy, applied by the harness and recorded.

Clique can deadlock without any fault: under load, out-of-turn signers seal competing blocks
of equal difficulty, each node keeps its own branch (equal total difficulty does not reorg),
and every signer allowed to seal the next block sits on the other branch (go-ethereum
#18402, closed unfixed when Clique was deprecated). The chain then never moves again. The
remedy operators run is a watchdog that rewinds the nodes off one branch (debug_setHead) so
they sync the other: `Network.reconcile_forks`.

`StallWatchdog` does that during load runs: when no node's head has grown for `stall_after`
seconds while every running node answers and their heads differ, it reconciles once and
records what it did (`interventions`, and an event through `record`). It never acts while
`paused()` is true (a scenario's fault is active: a partition is supposed to stall), while a
node does not answer, or on engines with final blocks (QBFT/IBFT: nothing to reconcile).
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from testbed.consensus import stall_limit_s
from testbed.engines import engine_of

Record = Callable[..., None]


class StallWatchdog:
    def __init__(self, net, *, stall_after: float | None = None, interval: float = 1.0,
                 enabled: bool = True, paused: Callable[[], bool] = lambda: False, record: Record = lambda *_a, **_k: None,
                 progress: Callable[[str], None] = lambda _: None, clock: Callable[[], float] = time.monotonic) -> None:
        self.net = net
        self.stall_after = stall_after if stall_after is not None else stall_limit_s(net.spec.consensus.block_period)
        self.interval, self.paused, self.record, self.progress, self.clock = interval, paused, record, progress, clock
        self.interventions: list[dict] = []
        self.enabled = enabled and engine_of(net.spec).repairs_forks
        self._tips: dict[str, tuple] | None = None
        self._moved_at = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> dict | None:
        """One look at the heads; returns the intervention it made, if any."""
        now = self.clock()
        snaps = self.net.snapshots(only=self.net.running_nodes())
        heads = [s.head_number for s in snaps if s.reachable and s.head_number is not None]
        tips = {s.node: (s.head_number, s.head_hash) for s in snaps if s.reachable}
        if tips != self._tips:  # any head moved (a node catching up counts too: no deadlock yet)
            self._tips, self._moved_at = tips, now
            return None
        if self.paused():
            self._moved_at = now  # a fault's stall is the scenario's business; count afresh after it
            return None
        stalled = now - self._moved_at
        if not self.enabled or stalled < self.stall_after or len(heads) < len(snaps) or len(snaps) < 2:
            return None
        if len({h for _, h in tips.values()}) < 2:
            return None  # one chain that does not grow: not a fork to reconcile (e.g. too few signers)
        self.progress(f"the chain has not grown for {stalled:.0f}s and the nodes hold different heads: "
                      "reconciling the competing Clique branches")
        rewound = self.net.reconcile_forks(progress=self.progress, settle=0, wait=False)
        self._moved_at = now
        if not rewound:
            return None
        done = {"at": round(time.time(), 3), "stalled_s": round(stalled, 1), "rewound": rewound,
                "heads": {n: number for n, (number, _) in tips.items()}, "after": ["stall"]}
        self.interventions.append(done)
        self.record("branches_reconciled", **done)
        return done

    # ---- background -------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception as exc:  # a watchdog never takes the run down; say why it skipped a look
                self.progress(f"stall watchdog: {exc}")

    def start(self) -> StallWatchdog:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="stall-watchdog", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> list[dict]:
        """Stop watching (idempotent); returns the interventions made."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        return self.interventions

    def __enter__(self) -> StallWatchdog:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
