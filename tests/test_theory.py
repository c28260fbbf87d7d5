"""The TWM theory against independent facts (docs/science.md §2)."""

from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as Fn

from twm.tasks import TASK_NAMES, get_task, sample
from twm.theory import (
    cycle_coordinates,
    embed,
    fibonacci_operator,
    phi,
    predicted_eigenvalues,
    rollout,
    sbc_rollout,
    sbc_step,
)


def _angle_counts(values, tol=1e-9):
    unit = values[np.abs(np.abs(values) - 1) < tol]
    degrees = np.round(np.degrees(np.angle(unit)), 2)
    degrees[degrees == -180.0] = 180.0
    return Counter(degrees.tolist())


@pytest.mark.parametrize("name", TASK_NAMES)
def test_spectrum_from_cycles_equals_eigensolver(name):
    F = get_task(name).F
    theory = predicted_eigenvalues(F, 8)
    numeric = np.linalg.eigvals(phi(F, 8))
    assert theory.shape == (64,)
    # multiset equality: match each numeric eigenvalue to the nearest unused theory eigenvalue
    remaining = list(theory)
    for lam in numeric:
        k = int(np.argmin([abs(lam - t) for t in remaining]))
        assert abs(lam - remaining.pop(k)) < 1e-6


def test_spectrum_angle_counts_spec_table():
    t1 = _angle_counts(predicted_eigenvalues(get_task("repeat_copy").F, 8))
    assert t1 == {round(45.0 * k - (360 if k > 4 else 0), 2): 8 for k in range(8)}
    t2 = _angle_counts(predicted_eigenvalues(get_task("staggered_copy").F, 8))
    assert sum(t2.values()) == 36 and t2[0.0] == 8 and t2[180.0] == 4 and t2[90.0] == t2[-90.0] == 2
    assert t2[120.0] == t2[-120.0] == 2 and t2[51.43] == t2[-154.29] == 1
    t3 = _angle_counts(predicted_eigenvalues(get_task("signed_shuffle_48").F, 8))
    assert sum(t3.values()) == 36 and t3[60.0] == t3[-60.0] == 2 and t3[180.0] == 2 and t3[30.0] == 1
    assert all(t3[round((2 * k + 1) * 7.5 - (360 if (2 * k + 1) * 7.5 > 180 else 0), 2)] >= 1 for k in range(24))
    t4 = _angle_counts(predicted_eigenvalues(get_task("signed_shuffle_70").F, 8))
    assert sum(t4.values()) == 36 and t4[180.0] == 1 and t4[0.0] == 1 and t4[round(360 / 35, 2)] == 1
    for name in TASK_NAMES[1:]:
        assert np.sum(np.abs(predicted_eigenvalues(get_task(name).F, 8)) == 0) == 28


@pytest.mark.parametrize(
    ("name", "count"),
    [("repeat_copy", 64), ("staggered_copy", 36), ("signed_shuffle_48", 36), ("signed_shuffle_70", 36)],
)
def test_cycle_coordinates_are_the_persistent_memory(name, count):
    F = get_task(name).F
    kept = cycle_coordinates(F, 8)
    assert len(kept) == count
    # the transient coordinates die out: after s*d steps only cycle coordinates can be nonzero
    P = np.linalg.matrix_power(np.abs(phi(F, 8)), 64)
    transient = np.setdiff1d(np.arange(64), kept)
    assert np.all(P[:, transient] == 0)


def test_repeat_copy_general_shape_spectrum():
    ev = predicted_eigenvalues(get_task("repeat_copy", s=5, d=3).F, 5)
    np.testing.assert_allclose(np.abs(ev), 1)
    assert Counter(np.round(np.degrees(np.angle(ev)) % 360, 6).tolist()) == {round(72.0 * k, 6): 3 for k in range(5)}


FIB = {2: [1, 1, 2, 3, 5, 8, 13, 21, 34, 55], 3: [1, 1, 1, 3, 5, 9, 17, 31, 57, 105]}


@pytest.mark.parametrize("s", [2, 3])
def test_fibonacci_numbers(s):
    F = fibonacci_operator(s, 1)
    X = rollout(phi(F, s), np.ones(s), 10 - s)
    assert [int(round(v)) for v in list(X[0]) + list(X[1:, -1])] == FIB[s]


@pytest.mark.parametrize(("s", "radius"), [(2, 1.618034), (3, 1.839287), (4, 1.927562), (8, 1.996031)])
def test_fibonacci_spectral_radius(s, radius):
    assert abs(np.max(np.abs(np.linalg.eigvals(phi(fibonacci_operator(s, 2), s)))) - radius) < 1e-6


def test_fibonacci_integer_inputs_direct_recursion():
    rng = np.random.default_rng(0)
    s, d = 4, 3
    seq = [rng.integers(-5, 6, size=d).astype(np.float64) for _ in range(s)]
    X = rollout(phi(fibonacci_operator(s, d), s), np.concatenate(seq), 40)
    for _ in range(40):
        seq.append(sum(seq[-s:]))
    np.testing.assert_array_equal(X[1:, -d:], np.stack(seq[s:]))


def _random_basis(n, k, seed, orthonormal):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, k))
    return np.linalg.qr(A)[0] if orthonormal else A


def _linear_rnn(W_hh, W_uh, W_r, u, h0=None):
    h = np.zeros(W_hh.shape[0]) if h0 is None else h0
    ys = []
    for x in u:
        h = W_hh @ h + W_uh @ x
        ys.append(W_r @ h)
    return np.stack(ys)


@pytest.mark.parametrize("orthonormal", [True, False])
def test_embedded_repeat_copy_solves_from_inputs(orthonormal):
    task = get_task("repeat_copy", s=4, d=3)
    W_hh, W_uh, W_r = embed(phi(task.F, 4), _random_basis(40, 12, 1, orthonormal))
    u, y = sample(task.F, 4, 30, 6, torch.Generator().manual_seed(0))
    for b in range(6):
        out = _linear_rnn(W_hh, W_uh, W_r, u[:, b].double().numpy())
        np.testing.assert_allclose(out[4:], y[4:, b].numpy(), atol=1e-8)


@pytest.mark.parametrize("name", TASK_NAMES[1:])
def test_embedded_compose_tasks_from_initialised_substrate(name):
    task = get_task(name)
    Xi = _random_basis(100, 64, 2, orthonormal=False)
    W_hh, W_uh, W_r = embed(phi(task.F, 8), Xi)
    u, y = sample(task.F, 8, 80, 4, torch.Generator().manual_seed(1))
    for b in range(4):
        h = Xi @ u[:8, b].double().numpy().reshape(-1)
        out = _linear_rnn(W_hh, W_uh, W_r, np.zeros((80, 8)), h0=h)
        np.testing.assert_allclose(out, y[8:, b].numpy(), atol=1e-7)
    # and feeding the inputs instead does not solve it (docs/science.md §2.1: the boundary acts on partial memories)
    out = _linear_rnn(W_hh, W_uh, W_r, u[:, 0].double().numpy())
    assert np.abs(out[8:] - y[8:, 0].numpy()).max() > 0.5


def _decoder_attention(tokens, W_Q, W_K, W_V, s, steps):
    """An attention-only, single-head decoder over a sliding window of the last s tokens, built from SDPA."""
    seq = list(tokens)
    for _ in range(steps):
        window = torch.stack(seq[-s:])
        q = (seq[-1] @ W_Q.T).view(1, 1, 1, -1)
        k = (window @ W_K.T).view(1, 1, s, -1)
        v = (window @ W_V.T).view(1, 1, s, -1)
        seq.append(Fn.scaled_dot_product_attention(q, k, v, scale=1.0).view(-1))
    return torch.stack(seq)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sbc_equals_attention_only_decoder(seed):
    g = torch.Generator().manual_seed(seed)
    s, d, k = 5, 4, 3
    W_Q, W_K = torch.randn(k, d, generator=g, dtype=torch.float64), torch.randn(k, d, generator=g, dtype=torch.float64)
    W_V = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    H0 = torch.randn(s, d, generator=g, dtype=torch.float64)
    states = sbc_rollout(H0, W_Q, W_K, W_V, 20)
    decoded = _decoder_attention(list(H0), W_Q, W_K, W_V, s, 20)
    for t in range(21):
        torch.testing.assert_close(states[t], decoded[t : t + s], atol=1e-6, rtol=0)


def test_sbc_boundary_is_permutation_invariant():
    g = torch.Generator().manual_seed(4)
    s, d = 6, 3
    W_Q, W_K, W_V = (torch.randn(d, d, generator=g, dtype=torch.float64) for _ in range(3))
    H = torch.randn(s, d, generator=g, dtype=torch.float64)
    perm = torch.cat([torch.randperm(s - 1, generator=g), torch.tensor([s - 1])])
    torch.testing.assert_close(sbc_step(H, W_Q, W_K, W_V)[-1], sbc_step(H[perm], W_Q, W_K, W_V)[-1])


def test_sbc_fibonacci_special_case_and_orthogonal_values_bound():
    s, d = 3, 2
    H = torch.tensor([[1.0, 2.0], [1.0, -1.0], [2.0, 0.5]], dtype=torch.float64)
    states = sbc_rollout(
        H,
        torch.eye(d, dtype=torch.float64),
        torch.zeros(d, d, dtype=torch.float64),
        s * torch.eye(d, dtype=torch.float64),
        8,
    )
    X = rollout(phi(fibonacci_operator(s, d), s), H.reshape(-1).numpy(), 8)
    np.testing.assert_allclose(states[:, -1].numpy(), X[:, -d:])
    g = torch.Generator().manual_seed(5)
    W_V = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))[0]
    W_Q, W_K = torch.randn(4, 4, generator=g, dtype=torch.float64), torch.randn(4, 4, generator=g, dtype=torch.float64)
    traj = sbc_rollout(torch.randn(5, 4, generator=g, dtype=torch.float64), W_Q, W_K, W_V, 30)
    peaks = traj.norm(dim=-1).amax(dim=-1)
    assert torch.all(peaks[1:] <= peaks[:-1] + 1e-12)
