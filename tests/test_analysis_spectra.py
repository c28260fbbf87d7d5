"""Spectral comparison and the Jacobian (docs/science.md §4, §3) on planted networks with known answers."""

import json
from pathlib import Path

import numpy as np
import pytest

from twm.analysis import (
    FixedPointNotFound,
    angle_counts,
    compare_spectra,
    jacobian,
    spectral_comparison,
    spectral_radius,
)
from twm.tasks import TASK_NAMES, get_task
from twm.theory import cycle_coordinates, embed, phi, predicted_eigenvalues


def _orthonormal(n, k, seed):
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((n, k)))[0]


@pytest.mark.parametrize("name", TASK_NAMES)
def test_planted_network_has_zero_error(name):
    F = get_task(name).F
    W_hh, _, _ = embed(phi(F, 8), _orthonormal(100, 64, 0))
    c = spectral_comparison(W_hh, F, 8)
    expected = 64 if name == "repeat_copy" else 36
    assert c.defined and c.counts_match and c.n_learned == c.n_theory == expected
    assert c.error < 1e-7 and c.error_optimal <= c.error
    d = c.to_dict()
    assert json.loads(json.dumps(d)) == d and d["n_theory"] == expected


@pytest.mark.parametrize("name", ["repeat_copy", "signed_shuffle_48"])
def test_noise_gives_error_of_the_noise_order(name):
    F = get_task(name).F
    W_hh, _, _ = embed(phi(F, 8), _orthonormal(100, 64, 1))
    noisy = W_hh + 1e-3 * np.random.default_rng(2).standard_normal(W_hh.shape)
    c = spectral_comparison(noisy, F, 8)
    assert c.defined
    assert 1e-5 < c.error < 1e-2
    assert c.error_optimal <= c.error + 1e-12


def test_missing_persistent_mode_is_undefined():
    F = get_task("repeat_copy").F
    Phi = phi(F, 8)
    # Φ is a permutation (normal); the indicator v of one cycle is an eigenvector with λ = 1. Deflating it to 0.5
    # leaves every other eigenvalue in place: 63 eigenvalues above 0.9 instead of 64.
    cycle = [c for c in cycle_coordinates(F, 8) if c % 8 == 3]
    v = np.zeros(64)
    v[cycle] = 1.0
    np.testing.assert_allclose(Phi @ v, v)
    damped = Phi - 0.5 * np.outer(v, v) / (v @ v)
    W_hh, _, _ = embed(damped, _orthonormal(100, 64, 3), d=8)
    c = spectral_comparison(W_hh, F, 8)
    assert (c.defined, c.counts_match, c.n_learned, c.n_theory) == (False, False, 63, 64)
    assert c.error is None and c.error_optimal is None
    assert c.to_dict()["error"] is None


def test_greedy_versus_hungarian_hand_made():
    learned = np.exp(1j * np.array([0.1, -0.05]))
    theory = np.exp(1j * np.array([0.0, 0.3]))
    c = compare_spectra(learned, theory)
    # greedy: 0.1 takes 0.0 (0.1), then -0.05 must take 0.3 (0.35); optimal: 0.1->0.3 (0.2), -0.05->0.0 (0.05)
    assert c.error == pytest.approx((0.1 + 0.35) / 2, abs=1e-12)
    assert c.error_optimal == pytest.approx((0.2 + 0.05) / 2, abs=1e-12)
    assert list(c.matching) == [0, 1]
    # the greedy order is the learned operator's order: reversed, greedy is optimal here
    assert compare_spectra(learned[::-1], theory).error == pytest.approx(0.125, abs=1e-12)


def test_threshold_modulus_and_angle_wraparound():
    # |λ| only decides what is kept; angles across ±π are close (arccos of the dot product)
    c = compare_spectra([0.95 * np.exp(1j * 3.1), 0.2, 0.89j], [np.exp(-1j * 3.1), 0.0, 0.0])
    assert (c.n_learned, c.n_theory) == (1, 1)
    assert c.error == pytest.approx(2 * np.pi - 6.2, abs=1e-9)
    empty = compare_spectra([0.1, 0.2], [0.0])
    assert empty.counts_match and not empty.defined and empty.error is None


def test_predicted_spectrum_against_itself_is_at_the_arccos_floor():
    # arccos(1 - ε) ≈ √(2ε): an identical pair can read up to ~2e-8 rad, docs/science.md §4's formula's resolution
    for name in TASK_NAMES:
        ev = predicted_eigenvalues(get_task(name).F, 8)
        assert compare_spectra(ev[::-1], ev).error < 3e-8


def test_jacobian_without_bias_is_W_hh():
    W = np.random.default_rng(4).standard_normal((6, 6))
    lin = jacobian(W)
    np.testing.assert_array_equal(lin.matrix, W)
    assert not lin.fixed_point.any()
    assert jacobian(W, b=np.zeros(6)).n_starts == 0
    assert spectral_radius(W) == pytest.approx(np.max(np.abs(np.linalg.eigvals(W))))


def test_jacobian_with_bias_recovers_planted_fixed_point():
    rng = np.random.default_rng(5)
    n = 40
    W = 0.5 * rng.standard_normal((n, n)) / np.sqrt(n)  # contraction: a unique fixed point
    h_star = rng.uniform(-0.3, 0.3, n)
    b = np.arctanh(h_star) - W @ h_star
    states = rng.uniform(-0.9, 0.9, (50, n))
    lin = jacobian(W, b=b, states=states)
    np.testing.assert_allclose(lin.fixed_point, h_star, atol=1e-10)
    np.testing.assert_allclose(lin.matrix, np.diag(1 - h_star**2) @ W, atol=1e-10)
    assert lin.residual < 1e-8 and lin.n_starts == 33 and lin.starts[0] == 33 and len(lin.fixed_points) == 1
    c = spectral_comparison(W, get_task("repeat_copy", s=2, d=2).F, 2, b=b, states=states)
    assert c.n_learned == 0 and not c.defined  # the damped operator keeps nothing above 0.9


def test_dominant_fixed_point_is_the_most_reached():
    # h = tanh(2 h) (n = 1): fixed points 0 and ±0.9575; starts near +1 reach +h*
    W = np.array([[2.0]])
    b = np.array([1e-12])
    lin = jacobian(W, b=b, states=np.array([[0.8], [0.9], [0.99]]))
    h = lin.fixed_point[0]
    assert h == pytest.approx(np.tanh(2 * h), abs=1e-12) and h > 0.9
    assert list(lin.starts) == [3, 1]
    assert lin.matrix[0, 0] == pytest.approx(2 * (1 - h**2))


def test_no_converged_fixed_point_raises():
    W = np.array([[0.0, -4.0], [4.0, 0.0]])
    with pytest.raises(FixedPointNotFound):
        jacobian(W, b=np.array([1e-3, 0.0]), tol=0.0)  # tol 0: no residual counts as converged


@pytest.mark.parametrize("which", ["learned", "theory"])
def test_a_matrix_is_refused_not_ravelled(which):
    # docs/science.md §4: the comparison is of eigenvalues; a (n, n) operator ravelled into n² "eigenvalues" is wrong
    W = embed(phi(get_task("repeat_copy", s=2, d=2).F, 2), _orthonormal(6, 4, 6))[0]
    ev = np.linalg.eigvals(W)
    args = {"learned": ev, "theory": ev, which: W}
    with pytest.raises(ValueError, match=rf"eigenvalues, got a \(6, 6\) matrix for `{which}`.*eigvals"):
        compare_spectra(**args)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        compare_spectra(**{**args, which: np.ones((2, 3))})


def test_eigenvalue_vectors_in_any_orientation_are_accepted():
    ev = predicted_eigenvalues(get_task("repeat_copy", s=3, d=2).F, 3)
    flat = compare_spectra(ev, ev).to_dict()
    for shaped in (list(ev), ev[:, None], ev[None, :]):
        assert compare_spectra(shaped, ev).to_dict() == flat == compare_spectra(ev, shaped).to_dict()


def test_as_numpy_is_public_and_no_analysis_module_imports_a_private_name():
    import ast

    import torch

    import twm.analysis.spectra as spectra

    out = spectra.as_numpy(torch.ones(2, 3, requires_grad=True))
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (2, 3)
    assert spectra.as_numpy([1j], np.complex128).dtype == np.complex128
    assert not hasattr(spectra, "_numpy")
    for name in ("spectra", "basis", "plots"):
        tree = ast.parse(Path(spectra.__file__).with_name(f"{name}.py").read_text())
        private = [a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for a in node.names
                   if a.name.startswith("_") and node.module != "__future__"]
        assert not private, f"{name}.py imports private names {private}"


@pytest.mark.parametrize("seed", range(4))
def test_optimal_matching_equals_the_brute_force_optimum(seed):
    """Hungarian against every permutation (7! = 5 040) of random unit eigenvalues: the optimum, and greedy never
    below it."""
    from itertools import permutations

    rng = np.random.default_rng(seed)
    learned, theory = np.exp(1j * rng.uniform(0, 2 * np.pi, 7)), np.exp(1j * rng.uniform(0, 2 * np.pi, 7))
    cost = np.arccos(np.clip(np.real(learned[:, None] * np.conj(theory[None, :])), -1, 1))
    best = min(np.mean(cost[np.arange(7), list(p)]) for p in permutations(range(7)))
    result = compare_spectra(learned, theory)
    assert result.error_optimal == pytest.approx(best, abs=1e-12) and result.error >= best - 1e-12


def test_angle_counts_by_hand():
    """Φ of repeat copy with s = 3, d = 2 (the cube roots of unity, twice each) plus two zeros; learned eigenvalues
    placed by hand: one at -1.7 degrees belongs to 0 degrees (angles wrap), one at 151.8 degrees to 120, one below
    the threshold to none."""
    w = np.exp(2j * np.pi / 3)
    theory = np.array([1, 1, w, w, w**2, w**2, 0, 0])
    learned = np.array([1.01 * np.exp(0.02j), 0.95 * np.exp(-0.03j), 0.97 * w * np.exp(0.1j),
                        1.2 * w**2 * np.exp(-0.2j), 0.5, 0.92 * np.exp(1j * (np.pi - 0.3))])
    counts = angle_counts(learned, theory, threshold=0.9)
    assert [(round(a, 6), t, k) for a, t, k in counts] == [(0.0, 2, 2), (120.0, 2, 2), (240.0, 2, 1)]
    assert angle_counts(learned, theory, threshold=1.1) == [(0.0, 2, 0), (120.0, 2, 0), (240.0, 2, 1)]
