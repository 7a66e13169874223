"""Locust load shapes driven by an offered-rate profile (constant, ramp, steps, spike).

A shape turns the profile's target rate into a user count (each user offers at most
`per_user_rate` tx/s) and publishes the target on the context; users pace themselves to
target / users. `ControlledShape` lets a driver (the bench) set the rate step by step.
"""

from __future__ import annotations

from locust import LoadTestShape

from testbed.load.profiles import Profile, users_for_rate

SPAWN_AT_ONCE = 100.0  # users per second: instant for our user counts; Locust warns above 100


class RateShape(LoadTestShape):
    abstract = True

    def target(self, run_time: float) -> float | None:
        raise NotImplementedError

    def tick(self):
        ctx = self.runner.environment.testbed
        rate = self.target(self.get_run_time())
        if rate is None:
            ctx.target_rate = ctx.target_users = None
            return None
        users = users_for_rate(rate, ctx.per_user_rate, ctx.max_users, ctx.min_users) if rate > 0 else 0
        ctx.target_rate, ctx.target_users = rate, users
        # start and stop users at once (Locust also stops users at the spawn rate): pacing, not
        # ramping users, sets the offered rate
        return users, SPAWN_AT_ONCE


class ProfileShape(RateShape):
    abstract = True

    def __init__(self, profile: Profile) -> None:
        super().__init__()
        self.profile = profile

    def target(self, run_time: float) -> float | None:
        return self.profile.rate_at(run_time)


class ControlledShape(RateShape):
    """The rate is whatever the driver last set; None stops the run."""
    abstract = True

    def __init__(self, rate: float | None = 0.0) -> None:
        super().__init__()
        self.rate = rate

    def target(self, run_time: float) -> float | None:
        return self.rate
