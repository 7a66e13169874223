"""Rate profiles, user counts and pacing (pure), and the Locust shapes (in a subprocess: Locust monkey-patches)."""

import json
import math
import subprocess
import sys

import pytest

from testbed.load.profiles import Constant, Ramp, Spike, Steps, pacing_interval, parse_profile, users_for_rate


def test_constant_and_end():
    p = Constant(200, 10)
    assert p.rate_at(0) == 200 and p.rate_at(9.99) == 200
    assert p.rate_at(10) is None and p.rate_at(-1) is None


def test_ramp_is_linear():
    p = Ramp(100, 300, 20)
    assert p.rate_at(0) == 100 and p.rate_at(10) == 200 and p.rate_at(19) == pytest.approx(290)
    assert p.rate_at(20) is None


def test_steps_and_duration():
    p = Steps([100, 200, 400], 5)
    assert p.duration == 15
    assert [p.rate_at(t) for t in (0, 4.9, 5, 10, 14.9)] == [100, 100, 200, 400, 400]
    assert p.rate_at(15) is None


def test_spike():
    p = Spike(base=100, peak=800, at=10, length=5, duration=30)
    assert [p.rate_at(t) for t in (0, 9.9, 10, 14.9, 15, 29)] == [100, 100, 800, 800, 100, 100]


def test_parse_profiles_and_errors():
    assert parse_profile("constant:150:60") == Constant(150, 60)
    assert parse_profile("ramp:10:100:30") == Ramp(10, 100, 30)
    assert parse_profile("steps:100,200:20") == Steps([100, 200], 20)
    assert parse_profile("spike:100:500:10:5:60") == Spike(100, 500, 10, 5, 60)
    for bad in ("constant:abc:1", "wave:1:2", "steps:1,2", ""):
        with pytest.raises(ValueError, match="bad load profile"):
            parse_profile(bad)


def test_users_for_rate_caps_and_rounds_up():
    assert users_for_rate(0, 25, 100) == 0
    assert users_for_rate(1, 25, 100) == 1
    assert users_for_rate(250, 25, 100) == 10
    assert users_for_rate(251, 25, 100) == 11
    assert users_for_rate(10_000, 25, 40) == 40
    assert users_for_rate(100, 50, 100, min_users=4) == 4  # one user per organization at least
    assert users_for_rate(100, 50, 3, min_users=4) == 3  # but never more users than accounts


def test_pacing_adds_up_to_the_target_rate():
    # every user sends `batch` txs per interval: users * batch / interval == rate
    for rate, per_user, batch in ((1000, 25, 10), (130, 25, 10), (7, 25, 1), (2500, 40, 50)):
        users = users_for_rate(rate, per_user, 10_000)
        interval = pacing_interval(rate, users, batch)
        assert users * batch / interval == pytest.approx(rate)
        assert batch / interval <= per_user + 1e-9  # no user exceeds its share
    assert math.isinf(pacing_interval(0, 4, 10))


SHAPE_CHECK = r"""
import json, types
from testbed.load.shapes import ProfileShape, ControlledShape
from testbed.load.profiles import Steps
ctx = types.SimpleNamespace(per_user_rate=25.0, max_users=40, min_users=4, target_rate=None)
runner = types.SimpleNamespace(environment=types.SimpleNamespace(testbed=ctx))
out = []
shape = ProfileShape(Steps([100, 260, 5000], 5)); shape.runner = runner
for t in (0, 6, 11, 16):
    shape.get_run_time = lambda t=t: t
    out.append([shape.tick(), ctx.target_rate])
c = ControlledShape(0.0); c.runner = runner
out.append([c.tick(), ctx.target_rate]); c.rate = 300; out.append([c.tick(), ctx.target_rate]); c.rate = None
out.append([c.tick(), ctx.target_rate])
print(json.dumps(out))
"""


def test_shapes_turn_rates_into_users():
    proc = subprocess.run([sys.executable, "-c", SHAPE_CHECK], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    ticks = json.loads(proc.stdout.strip().splitlines()[-1])
    assert ticks[0] == [[4, 100], 100]  # users start and stop at once: pacing sets the rate
    assert ticks[1] == [[11, 100], 260]
    assert ticks[2] == [[40, 100], 5000]  # capped by the funded accounts
    assert ticks[3] == [None, None]  # profile over: the run stops
    assert ticks[4] == [[0, 100], 0.0]
    assert ticks[5] == [[12, 100], 300]
    assert ticks[6] == [None, None]
