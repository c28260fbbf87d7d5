"""The curriculum state machines (docs/science.md §3), checked against the rules written out by hand."""

import random

import pytest

from twm.curriculum import Adaptive, Fixed, Ladder, build_curriculum
from twm.run.spec import CurriculumSpec


def test_ladder_moves_one_rung_per_step_above_the_threshold_and_never_down():
    ladder = Ladder([10, 20, 40, 60, 100], threshold=0.9)
    assert ladder.horizon == 10 and ladder.max_horizon == 100
    assert ladder.update(0.9, 0.0) == 10  # "exceeds": equal is not enough
    assert ladder.update(0.95, 0.0) == 20
    assert ladder.update(1.0, 0.0) == 40  # one rung per step, however good the step
    assert ladder.update(0.1, 9.9) == 40  # never down
    for _ in range(5):
        ladder.update(1.0, 0.0)
    assert ladder.horizon == 100  # and never past the top


def test_ladder_against_a_random_stream():
    rng = random.Random(7)
    rungs = [2, 4, 8, 16]
    ladder, rung = Ladder(rungs, 0.7), 0
    for _ in range(200):
        acc = rng.random()
        if acc > 0.7:
            rung = min(rung + 1, len(rungs) - 1)
        assert ladder.update(acc, 0.0) == rungs[rung]


def test_adaptive_window_growth_shrink_and_clipping():
    cur = Adaptive(gamma=1.2, epsilon=0.03, h0=10, h_max=14, window=3)
    assert [cur.update(0.0, 0.01) for _ in range(3)] == [10, 10, 12]  # decides once per full window: ceil(12.0)
    assert [cur.update(0.0, 0.01) for _ in range(3)] == [12, 12, 14]  # ceil(14.4) = 15, clipped to h_max
    assert [cur.update(0.0, 0.5) for _ in range(3)] == [14, 14, 11]  # floor(14 / 1.2) = 11
    for _ in range(6):
        cur.update(0.0, 0.5)
    assert cur.horizon == 10  # floor(11 / 1.2) = 9, clipped at h0


def test_adaptive_decides_on_the_window_mean_not_the_last_loss():
    cur = Adaptive(gamma=2.0, epsilon=0.1, h0=4, h_max=64, window=2)
    cur.update(0.0, 0.15)
    assert cur.update(0.0, 0.04) == 8  # mean 0.095 < 0.1 although the first loss was above
    cur.update(0.0, 0.05)
    assert cur.update(0.0, 0.16) == 4  # mean 0.105 > 0.1 although the first loss was below


@pytest.mark.parametrize("make", [lambda: Ladder([2, 4, 8], 0.5),
                                  lambda: Adaptive(gamma=1.5, epsilon=0.2, h0=2, h_max=30, window=4),
                                  lambda: Fixed(7)])
def test_state_round_trip_continues_identically(make):
    rng = random.Random(3)
    stream = [(rng.random(), rng.random() * 0.4) for _ in range(60)]
    a = make()
    for acc, loss in stream[:25]:
        a.update(acc, loss)
    b = make()
    b.load_state_dict(a.state_dict())
    assert [a.update(*x) for x in stream[25:]] == [b.update(*x) for x in stream[25:]]


def test_spec_builds_each_kind_and_refuses_unknown_ones():
    assert isinstance(CurriculumSpec.of("ladder", ladder=[1, 2], threshold=0.5).build(), Ladder)
    assert isinstance(CurriculumSpec.of("adaptive").build(), Adaptive)
    assert CurriculumSpec.of("none", horizon=5).build().horizon == 5
    with pytest.raises(ValueError, match="unknown curriculum"):
        build_curriculum("spiral", {})
    with pytest.raises(ValueError, match="strictly increasing"):
        Ladder([10, 5], 0.9)
