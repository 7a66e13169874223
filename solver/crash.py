"""Fault injection for tests: `--crash-after STEP[:N]` makes a Solver SIGKILL itself right after
the N-th time it reaches STEP, to prove the journal makes every step crash-safe."""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger("solver")

DELIVER_POINTS = ("encrypted", "deliver_signed", "deliver_sent", "finished")  # the default: one `deliver`
CLAIM_FIRST_POINTS = ("accept_signed", "accept_sent", "accepted", "encrypted", "finish_signed", "finish_sent", "finished")
CRASH_POINTS = tuple(dict.fromkeys(CLAIM_FIRST_POINTS + DELIVER_POINTS))


class CrashPoints:
    """How many more times each armed point may be passed; the last pass kills the process."""

    def __init__(self, crash_after: dict[str, int]) -> None:
        self._left = dict(crash_after)

    def passed(self, point: str) -> None:
        left = self._left.get(point)
        if left is None:
            return
        self._left[point] = left - 1
        if left - 1 <= 0:
            log.warning("fault injection: SIGKILL after %s", point)
            for handler in logging.getLogger().handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGKILL)
