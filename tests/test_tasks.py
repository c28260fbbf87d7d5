"""The HDS task library against independent facts (docs/science.md §1)."""

import numpy as np
import pytest
import torch

from twm.tasks import (
    TASK_NAMES,
    custom_task,
    describe,
    get_task,
    operator_from_id,
    sample,
    task_by_id,
    task_id_from_operator,
)
from twm.theory import phi, rollout, sequence_period

D = 9241421688590303745

# docs/science.md §1.2, written out by hand: out -> (sign, lag, src)
T3_RULES = {
    0: (-1, 4, 4),
    1: (1, 5, 3),
    2: (-1, 6, 2),
    3: (-1, 8, 0),
    4: (-1, 7, 1),
    5: (-1, 3, 5),
    6: (1, 1, 7),
    7: (-1, 2, 6),
}
T4_RULES = {
    0: (-1, 3, 5),
    1: (1, 2, 6),
    2: (1, 8, 0),
    3: (1, 7, 1),
    4: (-1, 6, 2),
    5: (1, 5, 3),
    6: (1, 4, 4),
    7: (-1, 1, 7),
}


def _operator_from_rules(rules, s=8, d=8):
    F = np.zeros((s * d, d), dtype=np.int64)
    for out, (sign, lag, src) in rules.items():
        F[(s - lag) * d + src, out] = sign
    return F


@pytest.mark.parametrize(
    ("task_id", "rules"),
    [
        ((255, 0, 0), {j: (1, 8, j) for j in range(8)}),
        ((D, 0, 0), {j: (1, 8 - j, j) for j in range(8)}),
        ((D, 262676, 189), T3_RULES),
        ((D, 38637, 145), T4_RULES),
    ],
)
def test_published_ids_decode_to_spec_rules(task_id, rules):
    F = operator_from_id(task_id, 8, 8)
    assert F.shape == (64, 8)
    assert set(np.unique(F)) <= {-1, 0, 1}
    np.testing.assert_array_equal(F, _operator_from_rules(rules))


def test_describe_reads_like_the_spec():
    lines = describe(operator_from_id((D, 262676, 189), 8, 8), 8)
    assert lines[0] == "x[t][0] = -x[t-4][4]"
    assert lines[6] == "x[t][6] = x[t-1][7]"
    assert describe(operator_from_id((15, 0, 0), 3, 4), 3)[2] == "x[t][2] = x[t-3][2]"


@pytest.mark.parametrize(
    ("task_id", "s", "d", "rule"),
    [
        ((7, 0, 0), 4, 4, "Hamming weight"),
        ((1 << 20 | 7, 0, 0), 4, 4, "< s*d"),
        ((3, 2, 0), 2, 2, "< d - i"),  # base-2 digit 1 of id2 = 2 is 1, but must be < 2 - 1
        ((15, 12, 0), 4, 4, "< d - i"),  # base-4 digit 1 of 12 is 3, but must be < 4 - 1
        ((15, 0, 16), 4, 4, "id3"),
        ((-1, 0, 0), 4, 4, "non-negative"),
        ((15, 0), 4, 4, "three integers"),
    ],
)
def test_invalid_ids_name_the_rule(task_id, s, d, rule):
    with pytest.raises(ValueError, match=rule.replace("*", r"\*").replace("(", r"\(")):
        operator_from_id(task_id, s, d)


@pytest.mark.parametrize("seed", range(20))
def test_id_operator_round_trip(seed):
    rng = np.random.default_rng(seed)
    s, d = int(rng.integers(1, 7)), int(rng.integers(1, 7))
    rows = rng.choice(s * d, size=d, replace=False)
    signs = rng.choice([-1, 1], size=d)
    F = np.zeros((s * d, d), dtype=np.int64)
    F[rows, np.arange(d)] = signs
    task_id = task_id_from_operator(F, s)
    np.testing.assert_array_equal(operator_from_id(task_id, s, d), F)
    assert task_id_from_operator(operator_from_id(task_id, s, d), s) == task_id


@pytest.mark.parametrize("name", TASK_NAMES)
def test_registry_round_trips_published_ids(name):
    task = get_task(name)
    assert task_id_from_operator(task.F, 8) == task.task_id
    assert task_by_id(task.task_id, 8, 8).name == name
    assert {"table", "demo"} <= set(task.labels)


def test_label_maps_disagree_as_published():
    assert get_task("staggered_copy").labels == {"table": "T2", "demo": "T3"}
    assert get_task("signed_shuffle_48").labels == {"table": "T3", "demo": "T2"}


def test_repeat_copy_any_shape_and_custom_tasks():
    assert get_task("repeat_copy", s=3, d=5).task_id == (31, 0, 0)
    with pytest.raises(ValueError, match="s = d = 8"):
        get_task("signed_shuffle_70", s=4, d=4)
    with pytest.raises(ValueError, match="unknown task"):
        get_task("nope")
    F = operator_from_id((D, 38637, 145), 8, 8)
    assert custom_task(8, F=F).task_id == (D, 38637, 145)
    assert custom_task(8, 8, task_id=(D, 38637, 145)).F.tolist() == F.tolist()
    shared = np.zeros((4, 2), dtype=int)
    shared[0, :] = 1  # both outputs read one row: a valid HDS with no task id
    assert custom_task(2, F=shared).task_id is None


def _direct_recursion(F, s, x0, horizon):
    """The HDS by its definition: x_{t+1}[out] = sum_r F[r, out] * X_t[r], one sample at a time in float64."""
    xs = [np.asarray(v, dtype=np.float64) for v in x0]
    for _ in range(horizon):
        X = np.concatenate(xs[-s:])
        xs.append(X @ F)
    return np.stack(xs)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_sample_matches_recursion_and_phi_rollout(name):
    task = get_task(name)
    s, d, H = 8, 8, 60
    u, y = sample(task.F, s, H, 5, torch.Generator().manual_seed(3))
    assert u.shape == y.shape == (s + H, 5, d) and u.dtype == torch.float32
    assert torch.all(u[s:] == 0) and torch.all(y[:s] == 0) and torch.all(u[:s].abs() == 1)
    for b in range(5):
        seq = _direct_recursion(task.F, s, u[:s, b].numpy(), H)
        np.testing.assert_array_equal(y[s:, b].numpy(), seq[s:])
        X = rollout(phi(task.F, s), u[:s, b].numpy().reshape(-1), H)
        np.testing.assert_array_equal(y[s:, b].numpy(), X[1:, -d:])


def test_sample_reproducible_and_horizon_extends():
    F = get_task("signed_shuffle_48").F
    a = sample(F, 8, 30, 16, torch.Generator().manual_seed(7))
    b = sample(F, 8, 30, 16, torch.Generator().manual_seed(7))
    c = sample(F, 8, 90, 16, torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(c[1][: 8 + 30], a[1])
    d = sample(F, 8, 30, 16, torch.Generator().manual_seed(8))
    assert not torch.equal(a[0], d[0])


def test_sample_general_linear_operator():
    F = np.array([[1.0, 0.5], [0.0, -2.0], [1.0, 0.0], [0.25, 1.0]])
    u, y = sample(F, 2, 5, 3, torch.Generator().manual_seed(0))
    for b in range(3):
        np.testing.assert_allclose(y[2:, b].numpy(), _direct_recursion(F, 2, u[:2, b].numpy(), 5)[2:], rtol=1e-5)


@pytest.mark.parametrize(
    ("name", "period"),
    [("repeat_copy", 8), ("staggered_copy", 840), ("signed_shuffle_48", 48), ("signed_shuffle_70", 70)],
)
def test_sequence_periods(name, period):
    task = get_task(name)
    assert sequence_period(task.F, 8) == period  # from the cycles; the sampled sequences below check it
    _, y = sample(task.F, 8, 2 * period + 8, 256, torch.Generator().manual_seed(0))
    out = y[8:]
    assert torch.equal(out[period:], out[:-period])
    for p in range(1, period):
        if period % p == 0:
            assert not torch.equal(out[p:], out[:-p]), p
