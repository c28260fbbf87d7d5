"""Algorithm 1, the variable-memory basis (SPEC §5), on planted TWM networks W_hh = ΞΦΞ⁺."""

import numpy as np
import pytest
import torch

from twm.analysis import (
    normalise_for_display,
    persistent_projector,
    states_in_basis,
    variable_memory_basis,
    weights_in_basis,
)
from twm.tasks import TASK_NAMES, get_task, sample
from twm.theory import cycle_coordinates, embed, phi


def _basis(n, k, seed, orthonormal=True):
    A = np.random.default_rng(seed).standard_normal((n, k))
    return np.linalg.qr(A)[0] if orthonormal else A


def _planted(F, s, n, seed, orthonormal=True):
    Xi = _basis(n, F.shape[0], seed, orthonormal)
    W_hh, W_uh, W_r = embed(phi(F, s), Xi, d=F.shape[1])
    return Xi, W_hh, W_uh, W_r


@pytest.mark.parametrize("s", [4, 8])
def test_recovers_phi_for_repeat_copy_orthonormal(s):
    F = get_task("repeat_copy", s=s, d=s).F
    _, W_hh, _, W_r = _planted(F, s, 3 * s * s // 2 + 4, seed=s)
    basis = variable_memory_basis(W_hh, W_r, s, F=F)
    n = W_hh.shape[0]
    assert basis.kept.all() and basis.psi.shape == (n, s * s) and basis.psi_star.shape == (s * s, n)
    np.testing.assert_allclose(np.linalg.norm(basis.psi, axis=0), 1.0, atol=1e-12)
    np.testing.assert_allclose(weights_in_basis(W_hh, basis), phi(F, s), atol=1e-8)


@pytest.mark.parametrize("name", TASK_NAMES[1:])
def test_compose_tasks_keep_the_36_cycle_coordinates_and_recover_phi_there(name):
    F = get_task(name).F
    _, W_hh, _, W_r = _planted(F, 8, 100, seed=1)
    basis = variable_memory_basis(W_hh, W_r, 8, F=F)
    assert basis.n_kept == 36 and np.array_equal(np.flatnonzero(basis.kept), cycle_coordinates(F, 8))
    M = weights_in_basis(W_hh, basis)
    k = basis.kept
    np.testing.assert_allclose(M[np.ix_(k, k)], phi(F, 8)[np.ix_(k, k)], atol=1e-8)
    assert not M[~k].any() and not M[:, ~k].any() and not basis.psi[:, ~k].any() and not basis.psi_star[~k].any()


def test_generic_basis_keeps_exact_support_and_signs_for_repeat_copy():
    F = get_task("repeat_copy").F
    _, W_hh, _, W_r = _planted(F, 8, 100, seed=2, orthonormal=False)
    M = weights_in_basis(W_hh, variable_memory_basis(W_hh, W_r, 8, F=F))
    P = phi(F, 8)
    assert np.abs(M - P).max() > 1e-3  # magnitudes differ from 1 when Ξ is not orthonormal ...
    np.testing.assert_array_equal(np.sign(np.where(np.abs(M) > 1e-8, M, 0)), np.sign(P))  # ... support and signs do not


def test_convention_waves_travel_from_s_to_1():
    # W_hh Ψ_{k+1} = Ψ_k (SPEC §5, §7): the unnormalised Krylov blocks satisfy it exactly
    F = get_task("repeat_copy", s=4, d=3).F
    _, W_hh, _, W_r = _planted(F, 4, 20, seed=3, orthonormal=False)
    basis = variable_memory_basis(W_hh, W_r, 4, F=F)
    raw = basis.psi_full * basis.column_norms
    for k in range(3):
        np.testing.assert_allclose(W_hh @ raw[:, (k + 1) * 3 : (k + 2) * 3], raw[:, k * 3 : (k + 1) * 3], atol=1e-10)
    np.testing.assert_allclose(raw[:, -3:], np.linalg.pinv(W_r), atol=1e-12)


def test_hidden_coordinates_show_inputs_travelling_repeat_copy():
    s, d, H = 4, 4, 12
    F = get_task("repeat_copy", s=s, d=d).F
    _, W_hh, W_uh, W_r = _planted(F, s, 30, seed=4)
    u, y = sample(F, s, H, 5, torch.Generator().manual_seed(0))
    u, y = u.double().numpy(), y.double().numpy()
    h = np.zeros((5, 30))
    hidden = []
    for x in u:  # the linear planted RNN solves repeat copy from its inputs (SPEC §2.1)
        h = h @ W_hh.T + x @ W_uh.T
        hidden.append(h)
    hidden = np.stack(hidden)  # (T, B, n)
    basis = variable_memory_basis(W_hh, W_r, s, F=F, hidden=hidden)
    coords = states_in_basis(hidden, basis)
    assert coords.shape == (s + H, 5, s, d)
    seq = np.concatenate([u[:s], y[s:]])  # x_1 .. x_{s+H}
    for k in range(H + 1):  # at time s+k the substrate is [x_{k+1}; ...; x_{s+k}]: variable s holds the newest
        np.testing.assert_allclose(coords[s - 1 + k], seq[k : k + s].transpose(1, 0, 2), atol=1e-9)
    assert basis.complement.shape == (30, 0)  # the trajectory lies entirely in the variable memories


@pytest.mark.parametrize("name", ["staggered_copy", "signed_shuffle_70"])
def test_hidden_coordinates_of_compose_task_from_initialised_substrate(name):
    F = get_task(name).F
    _, W_hh, _, W_r = _planted(F, 8, 100, seed=5)
    Xi = _basis(100, 64, 5)
    u, y = sample(F, 8, 30, 3, torch.Generator().manual_seed(1))
    X = torch.cat([u[:8], y[8:]]).double().numpy()  # (38, B, 8)
    h = np.einsum("nk,bk->bn", Xi, X[:8].transpose(1, 0, 2).reshape(3, 64))  # h(s) = Ξ X_s (SPEC §2.1)
    hidden = [h]
    for _ in range(30):
        hidden.append(hidden[-1] @ W_hh.T)
    basis = variable_memory_basis(W_hh, W_r, 8, F=F)
    coords = states_in_basis(np.stack(hidden), basis).reshape(31, 3, 64)
    k = basis.kept
    for t in range(31):
        substrate = X[t : t + 8].transpose(1, 0, 2).reshape(3, 64)
        np.testing.assert_allclose(coords[t][:, k], substrate[:, k], atol=1e-9)
        assert not coords[t][:, ~k].any()


@pytest.mark.parametrize("s", [4, 8])
def test_task_agnostic_variant_keeps_everything_for_repeat_copy(s):
    F = get_task("repeat_copy", s=s, d=s).F
    for orthonormal in (True, False):
        _, W_hh, _, W_r = _planted(F, s, 2 * s * s, seed=6, orthonormal=orthonormal)
        basis = variable_memory_basis(W_hh, W_r, s)
        assert basis.method == "persistent_rank" and basis.kept.all()


@pytest.mark.parametrize("name", TASK_NAMES[1:])
def test_task_agnostic_variant_on_compose_tasks(name):
    # documented behaviour: exactly as many columns as persistent dimensions (36); with an orthonormal Ξ they are
    # the cycle coordinates themselves (a generic Ξ may pick another spanning set)
    F = get_task(name).F
    _, W_hh, _, W_r = _planted(F, 8, 100, seed=7)
    basis = variable_memory_basis(W_hh, W_r, 8)
    assert basis.n_kept == 36 and np.array_equal(np.flatnonzero(basis.kept), cycle_coordinates(F, 8))
    _, W_gen, _, W_r_gen = _planted(F, 8, 100, seed=8, orthonormal=False)
    assert variable_memory_basis(W_gen, W_r_gen, 8).n_kept == 36


def test_persistent_projector_is_the_spectral_projector():
    F = get_task("staggered_copy").F
    Xi, W_hh, _, _ = _planted(F, 8, 80, seed=9, orthonormal=False)
    P, m = persistent_projector(W_hh)
    assert m == 36
    np.testing.assert_allclose(P @ P, P, atol=1e-8)
    np.testing.assert_allclose(P @ W_hh, W_hh @ P, atol=1e-8)
    # transient substrate coordinates (and anything outside span Ξ) are killed; a cycle coordinate survives
    transient = np.setdiff1d(np.arange(64), cycle_coordinates(F, 8))
    assert np.abs(P @ Xi[:, transient]).max() < 1e-8
    assert np.linalg.matrix_rank(P, tol=1e-8) == 36


def test_complement_finds_activity_outside_the_memories():
    F = get_task("repeat_copy", s=3, d=2).F
    Xi, W_hh, _, W_r = _planted(F, 3, 20, seed=10)
    rng = np.random.default_rng(11)
    outside = np.linalg.qr(np.concatenate([Xi, rng.standard_normal((20, 2))], axis=1))[0][:, 6:]  # ⟂ span Ξ
    hidden = rng.standard_normal((200, 6)) @ Xi.T + rng.standard_normal((200, 2)) * [3.0, 1.0] @ outside.T
    basis = variable_memory_basis(W_hh, W_r, 3, F=F, hidden=hidden.reshape(50, 4, 20), n_complement=10)
    assert basis.complement.shape == (20, 2)
    np.testing.assert_allclose(np.abs(basis.complement.T @ outside).max(axis=1), 1.0, atol=1e-2)


def test_normalise_for_display_is_per_timestep_global():
    rng = np.random.default_rng(12)
    coords = rng.standard_normal((5, 3, 4)) * np.array([1, 10, 100, 0.1, 1])[:, None, None]
    coords[2] = 0.0
    out = normalise_for_display(coords)
    peaks = np.abs(out).max(axis=(1, 2))
    np.testing.assert_allclose(peaks[[0, 1, 3, 4]], 1.0)
    assert peaks[2] == 0.0
    np.testing.assert_allclose(out[1] * np.abs(coords[1]).max(), coords[1])  # one scale for all variables
