"""Waiting for a condition: call a check until it holds or a deadline passes."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

from testbed.errors import ChainError

T = TypeVar("T")


class PollTimeout(ChainError):
    """A condition polled with `what` did not hold in time."""


def poll_until(predicate: Callable[[], T], *, timeout: float, interval: float = 0.2, what: str | None = None,
               error: Callable[[], BaseException] | None = None,
               sleep: Callable[[float], object] | None = None) -> T:
    """Call `predicate` until it returns something truthy, and return that value.

    `predicate` is called at least once, then again every `interval` seconds. Once a call
    returns a falsy value after `timeout` seconds have passed:
      - with `error`, the exception `error()` returns is raised (it is built only then, so it
        can describe the state at the end);
      - else with `what`, PollTimeout(f"{what} not within {timeout:.0f}s") is raised;
      - else that last falsy value is returned.
    Exceptions from `predicate` propagate at once. `sleep` waits between calls (time.sleep by
    default; gevent code passes gevent.sleep, an interruptible run its own wait).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            if error is not None:
                raise error()
            if what is not None:
                raise PollTimeout(f"{what} not within {timeout:.0f}s")
            return result
        (sleep or time.sleep)(interval)
