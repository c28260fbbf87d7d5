"""Algorithm 1, the variable-memory basis (docs/science.md §5), on planted TWM networks W_hh = ΞΦΞ⁺."""

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
from twm.analysis.basis import support_summary
from twm.tasks import TASK_NAMES, custom_task, get_task, sample
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
    # W_hh Ψ_{k+1} = Ψ_k (docs/science.md §5, §7): the unnormalised Krylov blocks satisfy it exactly
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
    for x in u:  # the linear planted RNN solves repeat copy from its inputs (docs/science.md §2.1)
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
    h = np.einsum("nk,bk->bn", Xi, X[:8].transpose(1, 0, 2).reshape(3, 64))  # h(s) = Ξ X_s (docs/science.md §2.1)
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


def _kept_by_kept_score(M, F, s, kept, level=0.5):
    """Reference: the score on kept×kept entries only, blind to which coordinates were kept (all the old keys)."""
    P = phi(F, s)
    both = kept[:, None] & kept[None, :]
    support, off = both & (P != 0), both & (P == 0)
    hits = support & (np.sign(M) == np.sign(P)) & (np.abs(M) > level)
    boundary = np.zeros_like(support)
    boundary[-(P.shape[0] // s):] = True
    share = {name: float((hits & part).sum() / part.sum()) if part.any() else None
             for name, part in (("shift_match", support & ~boundary), ("boundary_match", support & boundary))}
    return {"support_entries": int(support.sum()), "support_match": float(hits.sum() / support.sum()), **share,
            "support_level": level, "on_support_abs_mean": float(np.abs(M[support]).mean()),
            "on_support_abs_min": float(np.abs(M[support]).min()), "off_support_max": float(np.abs(M[off]).max())}


def _small_task():
    """s = 3, d = 2: Φ's cycle 0 → 2 → 4 → 0 (sign -1) and the transient chain 1 → 3 → 5 → 4."""
    F = np.zeros((6, 2))
    F[0, 0], F[4, 1] = -1, 1
    assert cycle_coordinates(F, 3).tolist() == [0, 2, 4]
    return F


def test_support_summary_keeping_the_cycle_coordinates_is_the_kept_by_kept_score():
    F = _small_task()
    W_hh, _, W_r = embed(phi(F, 3), _basis(8, 6, 2, orthonormal=False), d=2)
    basis = variable_memory_basis(W_hh, W_r, 3, F=F)
    M = weights_in_basis(W_hh, basis)
    out = support_summary(M, F, 3, basis.kept)
    # by hand: Φ's support on the kept {0, 2, 4} is (0, 2), (2, 4) (shift, +1) and (4, 0) (boundary, -1); this Ξ
    # leaves the boundary entry weak, so 2 of 3 match
    assert M[0, 2] > 0.5 and M[2, 4] > 0.5 and abs(M[4, 0]) < 0.5
    on = np.abs([M[0, 2], M[2, 4], M[4, 0]])
    off = max(abs(M[i, j]) for i in (0, 2, 4) for j in (0, 2, 4) if (i, j) not in {(0, 2), (2, 4), (4, 0)})
    assert {k: out[k] for k in ("support_entries", "shift_match", "boundary_match", "support_level")} == {
        "support_entries": 3, "shift_match": 1.0, "boundary_match": 0.0, "support_level": 0.5}
    assert (out["support_match"], out["on_support_abs_mean"], out["on_support_abs_min"], out["off_support_max"]) == (
        pytest.approx(2 / 3), pytest.approx(on.mean()), pytest.approx(on.min()), pytest.approx(off))
    assert (out["kept_matches_cycles"], out["n_kept_not_cycle"], out["n_cycle_not_kept"]) == (True, 0, 0)
    reference = _kept_by_kept_score(M, F, 3, basis.kept)
    assert {k: out[k] for k in reference} == reference


@pytest.mark.parametrize("name", TASK_NAMES)
def test_support_summary_with_F_given_equals_the_kept_by_kept_score(name):
    F = get_task(name).F
    _, W_hh, _, W_r = _planted(F, 8, 100, seed=13, orthonormal=False)
    basis = variable_memory_basis(W_hh, W_r, 8, F=F)
    M = weights_in_basis(W_hh, basis)
    out = support_summary(M, F, 8, basis.kept)
    reference = _kept_by_kept_score(M, F, 8, basis.kept)
    assert {k: out[k] for k in reference} == reference and out["kept_matches_cycles"]


@pytest.mark.parametrize(
    "kept, scored, hits, not_cycle, not_kept",
    [
        ([0, 2, 4, 5], 5, 3, 1, 0),  # + transient 5: its entries (3, 5), (5, 4) are misses
        ([0, 4], 3, 1, 0, 1),  # - cycle 2: (0, 2), (2, 4) are misses
        ([0, 4, 5], 5, 1, 1, 1),  # 5 instead of 2: the kept×kept score would read 2/2
    ],
)
def test_support_summary_scores_a_wrong_kept_set_below_one(kept, scored, hits, not_cycle, not_kept):
    F = _small_task()
    mask = np.isin(np.arange(6), kept)
    P = phi(F, 3)
    assert _kept_by_kept_score(P, F, 3, mask)["support_match"] == 1.0  # blind to the kept set
    out = support_summary(P, F, 3, mask)  # M = Φ itself: every kept×kept entry is perfect
    assert (out["support_entries"], out["support_match"]) == (scored, hits / scored)
    counts = (out["kept_matches_cycles"], out["n_kept_not_cycle"], out["n_cycle_not_kept"])
    assert counts == (False, not_cycle, not_kept)


def test_task_agnostic_kept_set_with_a_transient_coordinate_scores_below_one():
    # a random signed task at s = 5, d = 3 (cycle {3, 6, 9, 11, 12, 14}, transients feeding it) planted with generic
    # bases: the F-free column rule picks another spanning set, sometimes with a transient coordinate in it
    s = 5
    F = custom_task(s, 3, task_id=(2057, 5, 3)).F
    cycle = cycle_coordinates(F, s)
    assert cycle.tolist() == [3, 6, 9, 11, 12, 14]
    wrong = {}
    for seed in range(20):
        W_hh, _, W_r = embed(phi(F, s), _basis(24, 15, seed, orthonormal=False), d=3)
        basis = variable_memory_basis(W_hh, W_r, s)
        out = support_summary(weights_in_basis(W_hh, basis), F, s, basis.kept)
        extra = np.setdiff1d(np.flatnonzero(basis.kept), cycle).size
        assert out["n_kept_not_cycle"] == extra
        assert out["kept_matches_cycles"] == (extra == 0 and out["n_cycle_not_kept"] == 0)
        if extra:
            assert out["support_match"] < 1
            wrong[seed] = out
    # the held-out symptom: Ξ seed 3 keeps transient 13 instead of cycle coordinate 9, which kept×kept reads as 4/4
    W_hh, _, W_r = embed(phi(F, s), _basis(24, 15, 3, orthonormal=False), d=3)
    basis = variable_memory_basis(W_hh, W_r, s)
    assert np.flatnonzero(basis.kept).tolist() == [3, 6, 11, 12, 13, 14]
    old = _kept_by_kept_score(weights_in_basis(W_hh, basis), F, s, basis.kept)
    assert (old["support_entries"], old["support_match"]) == (4, 1.0)
    assert wrong[3]["support_match"] < 1 and (wrong[3]["n_kept_not_cycle"], wrong[3]["n_cycle_not_kept"]) == (1, 1)
