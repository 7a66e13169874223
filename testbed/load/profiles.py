"""Offered-rate profiles (pure): target transactions per second as a function of run time.

A profile says how much load to offer; `shapes.RateShape` turns it into Locust user counts
and every user paces itself to its share of the rate. Keeping the profile pure makes rate
accounting testable without gevent, and lets a report redraw the target line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class Profile:
    """Target rate (tx/s) at `t` seconds since start, or None once the profile is over."""

    duration: float

    def rate_at(self, t: float) -> float | None:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"profile": type(self).__name__, **vars(self)}


@dataclass
class Constant(Profile):
    rate: float
    duration: float

    def rate_at(self, t: float) -> float | None:
        return self.rate if 0 <= t < self.duration else None


@dataclass
class Ramp(Profile):
    """Linear from `start` to `end` over `duration` seconds."""
    start: float
    end: float
    duration: float

    def rate_at(self, t: float) -> float | None:
        if not 0 <= t < self.duration:
            return None
        return self.start + (self.end - self.start) * t / self.duration


@dataclass
class Steps(Profile):
    """Each rate in `rates` for `step_seconds`, one after the other."""
    rates: list[float]
    step_seconds: float

    @property
    def duration(self) -> float:  # type: ignore[override]
        return len(self.rates) * self.step_seconds

    def rate_at(self, t: float) -> float | None:
        if t < 0 or t >= self.duration:
            return None
        return self.rates[int(t // self.step_seconds)]

    def describe(self) -> dict:
        return {"profile": "Steps", "rates": self.rates, "step_seconds": self.step_seconds, "duration": self.duration}


@dataclass
class Spike(Profile):
    """`base` rate, with `peak` from `at` for `length` seconds."""
    base: float
    peak: float
    at: float
    length: float
    duration: float

    def rate_at(self, t: float) -> float | None:
        if not 0 <= t < self.duration:
            return None
        return self.peak if self.at <= t < self.at + self.length else self.base


def parse_profile(text: str) -> Profile:
    """`constant:RATE:SECONDS`, `ramp:FROM:TO:SECONDS`, `steps:R1,R2,..:STEP_SECONDS`,
    `spike:BASE:PEAK:AT:LENGTH:SECONDS`."""
    kind, _, rest = text.partition(":")
    parts = rest.split(":") if rest else []
    try:
        if kind == "constant" and len(parts) == 2:
            return Constant(float(parts[0]), float(parts[1]))
        if kind == "ramp" and len(parts) == 3:
            return Ramp(float(parts[0]), float(parts[1]), float(parts[2]))
        if kind == "steps" and len(parts) == 2:
            return Steps([float(r) for r in parts[0].split(",")], float(parts[1]))
        if kind == "spike" and len(parts) == 5:
            return Spike(*(float(p) for p in parts))
    except ValueError:
        pass
    raise ValueError(f"bad load profile {text!r}; use constant:RATE:SECONDS, ramp:FROM:TO:SECONDS, "
                     "steps:R1,R2,...:STEP_SECONDS or spike:BASE:PEAK:AT:LENGTH:SECONDS")


def users_for_rate(rate: float, per_user_rate: float, max_users: int, min_users: int = 1) -> int:
    """How many users offer `rate` when no user offers more than `per_user_rate`, and at least
    `min_users` (one per organization, so every organization's node takes load); capped by accounts."""
    if rate <= 0:
        return 0
    return min(max_users, max(min_users, 1, math.ceil(rate / per_user_rate)))


def pacing_interval(rate: float, users: int, batch: int) -> float:
    """Seconds between one user's batches so that `users` users together offer `rate` tx/s."""
    if rate <= 0 or users <= 0:
        return math.inf
    return batch * users / rate
