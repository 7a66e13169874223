"""The run's event bus: what happens during a scenario (step started/finished, fault injected/healed,
reorg seen, check result). Subscribers (the run directory, progress lines) listen; a failing
subscriber is recorded, never raised into the run.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

Handler = Callable[[dict], None]


class EventBus:
    def __init__(self) -> None:
        self._handlers: list[Handler] = []
        self._lock = threading.Lock()
        self.t0 = time.time()
        self.handler_errors: list[str] = []

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def emit(self, kind: str, /, **data) -> dict:
        now = time.time()
        event = {"time": round(now, 3), "t": round(now - self.t0, 3), "event": kind, **data}
        with self._lock:
            for handler in self._handlers:
                try:
                    handler(event)
                except Exception as exc:  # a subscriber must not break the run
                    self.handler_errors.append(f"{kind}: {exc.__class__.__name__}: {exc}")
        return event
