"""Spectral comparison of a learned recurrent operator with the TWM's Φ (docs/science.md §4), and the operator itself.

``compare_spectra`` is Table 1's metric: keep eigenvalues with ``|λ| > threshold`` on both sides, and when the
counts agree, match them by angle (greedily, in the learned operator's eigenvalue order, as the authors did; and
optimally, by the Hungarian algorithm, as a second figure). An undefined comparison is ``None``, never NaN.

``jacobian`` is the operator to compare: ``W_hh`` for the bias-free models of docs/science.md §3 (the origin is a
fixed point and the Jacobian there is ``W_hh``), else ``diag(1 - h*²) W_hh`` at a fixed point
``h* = tanh(W_hh h* + b)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment, root

from twm.theory import predicted_eigenvalues


def as_numpy(x, dtype=np.float64) -> np.ndarray:
    """A torch tensor or array-like as a numpy array of ``dtype`` (detached, on the CPU), same shape."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


# --------------------------------------------------------------------------------------------------------------
# Angle differences and matchings
# --------------------------------------------------------------------------------------------------------------
def angle_differences(a, b) -> np.ndarray:
    """Pairwise angle differences (radians, in [0, π]) between two sets of nonzero complex numbers (docs/science.md §4).

    ``arccos`` of the dot product of the unit ``(Re, Im)`` vectors, the dot product clipped to [-1, 1].
    ``a``: ``(m,)``, ``b``: ``(k,)`` → ``(m, k)``. Near 0 this formula resolves no better than ``√(2·eps) ≈ 2e-8``
    rad (one rounding of the dot product), so identical eigenvalues can read ~1e-8; published errors are ≥ 5e-4.
    """
    a = np.asarray(a, dtype=np.complex128).ravel()
    b = np.asarray(b, dtype=np.complex128).ravel()
    ua = np.stack([a.real, a.imag], axis=1) / np.abs(a)[:, None]
    ub = np.stack([b.real, b.imag], axis=1) / np.abs(b)[:, None]
    return np.arccos(np.clip(ua @ ub.T, -1.0, 1.0))


def greedy_matching(cost: np.ndarray) -> np.ndarray:
    """Row ``i`` (in order) takes its cheapest column not yet taken; ties go to the lowest column index.

    ``cost``: ``(m, k)`` with ``m <= k``. Returns the column matched to each row, ``(m,)`` int.
    """
    cost = np.asarray(cost, dtype=np.float64)
    taken = np.zeros(cost.shape[1], dtype=bool)
    cols = np.empty(cost.shape[0], dtype=np.int64)
    for i, row in enumerate(cost):
        j = int(np.argmin(np.where(taken, np.inf, row)))
        cols[i] = j
        taken[j] = True
    return cols


@dataclass(frozen=True)
class SpectralComparison:
    """Result of :func:`compare_spectra` (docs/science.md §4).

    ``error``: mean greedy-matched angle difference (radians), ``None`` when undefined. ``error_optimal``: the same
    with the optimal (Hungarian) matching, ``None`` when undefined; always ``<= error``. ``n_learned``/``n_theory``:
    eigenvalues with ``|λ| > threshold``. ``counts_match``: ``n_learned == n_theory``. ``defined``: the counts match
    *and are nonzero* — an empty matching has no error (it would enter table means as a perfect 0), so both counts
    0 is ``defined == False`` with ``counts_match == True``. ``learned``/``theory``: the kept eigenvalues, in the
    order used for the greedy matching; ``matching[i]`` is the index into ``theory`` that ``learned[i]`` took
    (greedy; empty when undefined).
    """

    error: float | None
    error_optimal: float | None
    n_learned: int
    n_theory: int
    defined: bool
    counts_match: bool
    threshold: float
    learned: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros(0, np.complex128))
    theory: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros(0, np.complex128))
    matching: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros(0, np.int64))

    def to_dict(self) -> dict:
        """Plain JSON-ready scalars (``None`` for an undefined error)."""
        return {
            "error": self.error,
            "error_optimal": self.error_optimal,
            "n_learned": self.n_learned,
            "n_theory": self.n_theory,
            "defined": self.defined,
            "counts_match": self.counts_match,
            "threshold": self.threshold,
        }


def _eigenvalue_vector(x, name: str) -> np.ndarray:
    """``x`` as ``(n,)`` complex: a list, an ``(n,)`` array, or an ``(n, 1)``/``(1, n)`` one (a single row or column
    of eigenvalues is unambiguous). Anything with two or more axes longer than 1 is an operator, not its spectrum:
    ``ValueError``."""
    x = as_numpy(x, np.complex128)
    if sum(k > 1 for k in x.shape) > 1:
        kind = "matrix" if x.ndim == 2 else "array"
        raise ValueError(
            f"compare_spectra takes eigenvalues, got a {x.shape} {kind} for `{name}`: pass np.linalg.eigvals(W) "
            "(or use spectral_comparison(W_hh, F, s))"
        )
    return x.ravel()


def compare_spectra(learned, theory, threshold: float = 0.9) -> SpectralComparison:
    """Table 1's spectral error between a learned operator's eigenvalues and Φ's (docs/science.md §4).

    ``learned``, ``theory``: eigenvalues, ``(n,)`` and ``(k,)`` complex (``learned`` in the eigensolver's order,
    which sets the greedy order); a single row or column, ``(n, 1)`` or ``(1, n)``, is read as ``(n,)``. A matrix
    (two or more axes longer than 1, e.g. ``W_hh`` or Φ itself) raises ``ValueError``: pass ``np.linalg.eigvals``
    of it, or use :func:`spectral_comparison`.

    Keeps ``|λ| > threshold`` on both sides; if the counts differ (or are both 0) the comparison is undefined:
    ``error = error_optimal = None``, ``defined = False``. Otherwise ``error`` is the mean angle difference of the
    greedy matching (each learned eigenvalue, in order, takes its nearest not-yet-taken theory eigenvalue) and
    ``error_optimal`` that of the optimal assignment (``scipy.optimize.linear_sum_assignment`` on the same cost).
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold!r}")
    learned = _eigenvalue_vector(learned, "learned")
    theory = _eigenvalue_vector(theory, "theory")
    if not (np.all(np.isfinite(learned)) and np.all(np.isfinite(theory))):
        raise ValueError("eigenvalues must be finite")
    lk = learned[np.abs(learned) > threshold]
    tk = theory[np.abs(theory) > threshold]
    n_l, n_t = len(lk), len(tk)
    counts_match = n_l == n_t
    if not counts_match or n_l == 0:
        return SpectralComparison(None, None, n_l, n_t, False, counts_match, float(threshold), lk, tk)
    cost = angle_differences(lk, tk)
    cols = greedy_matching(cost)
    error = float(cost[np.arange(n_l), cols].mean())
    rows_opt, cols_opt = linear_sum_assignment(cost)
    error_optimal = float(cost[rows_opt, cols_opt].mean())
    # the optimum can only be lower; guard the last ulp of the two summation orders
    error_optimal = min(error_optimal, error)
    return SpectralComparison(error, error_optimal, n_l, n_t, True, True, float(threshold), lk, tk, cols)


# --------------------------------------------------------------------------------------------------------------
# The operator: Jacobian at the origin or at a found fixed point
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Linearisation:
    """Result of :func:`jacobian`.

    ``matrix``: the Jacobian ``(n, n)``. ``fixed_point``: ``h*`` ``(n,)`` (zeros for a bias-free model).
    ``fixed_points``: every distinct converged fixed point ``(k, n)``, ordered as ranked (most starts first, then
    smallest norm); ``starts``: how many starts reached each ``(k,)``; ``residual``: ``‖tanh(W_hh h* + b) − h*‖₂``
    at the chosen one; ``n_starts``: starts tried (0 without a bias).
    """

    matrix: np.ndarray = field(repr=False)
    fixed_point: np.ndarray = field(repr=False)
    fixed_points: np.ndarray = field(repr=False)
    starts: np.ndarray
    residual: float
    n_starts: int


class FixedPointNotFound(RuntimeError):
    """No start converged to a fixed point of ``h = tanh(W_hh h + b)`` within the tolerance."""


def _fixed_point_from(W: np.ndarray, b: np.ndarray, h0: np.ndarray) -> tuple[np.ndarray, float]:
    """Solve ``g(h) = tanh(W h + b) − h = 0`` from ``h0`` (MINPACK hybrid method, analytic Jacobian), then polish
    with Newton steps. Returns ``(h, ‖g(h)‖₂)``."""
    eye = np.eye(len(b))

    def g(h):
        return np.tanh(W @ h + b) - h

    def jac(h):
        return (1.0 - np.tanh(W @ h + b) ** 2)[:, None] * W - eye

    sol = root(g, h0, jac=jac, method="hybr")
    h = sol.x
    best, best_res = h, float(np.linalg.norm(g(h)))
    for _ in range(5):
        try:
            h = h - np.linalg.solve(jac(h), g(h))
        except np.linalg.LinAlgError:
            break
        res = float(np.linalg.norm(g(h)))
        if not np.isfinite(res):
            break
        if res < best_res:
            best, best_res = h, res
    return best, best_res


def jacobian(
    W_hh, b=None, states=None, tol: float = 1e-8, max_starts: int = 32, merge_tol: float = 1e-6
) -> Linearisation:
    """The operator whose spectrum is compared with Φ (docs/science.md §3, §4).

    Without a bias (``b`` is ``None`` or all zeros) the origin is a fixed point and the Jacobian is ``W_hh``.
    With a bias, fixed points of ``h = tanh(W_hh h + b)`` are solved for (root finding on
    ``tanh(W_hh h + b) − h``, equivalent to minimising its squared norm) from the origin and from up to
    ``max_starts`` of the visited ``states`` (``(..., n)``, flattened; evenly spaced ones when there are more).
    Starts whose residual ``‖tanh(W_hh h + b) − h‖₂`` ends below ``tol`` count as converged; converged points
    closer than ``merge_tol`` (max-abs) are one fixed point. **Dominant** fixed point: the one reached from the
    most starts, ties broken by the smallest norm. The Jacobian there is ``diag(1 − h*²) W_hh``.

    ``W_hh``: ``(n, n)``; ``b``: ``(n,)`` or ``None``. Raises :class:`FixedPointNotFound` when no start converges.
    """
    W = as_numpy(W_hh)
    n = W.shape[0]
    if W.shape != (n, n):
        raise ValueError(f"W_hh must be square, got {W.shape}")
    if b is None or not np.any(as_numpy(b)):
        zero = np.zeros(n)
        return Linearisation(W.copy(), zero, zero[None], np.array([0]), 0.0, 0)
    b = as_numpy(b).reshape(-1)
    if b.shape != (n,):
        raise ValueError(f"b must have shape ({n},), got {b.shape}")
    starts = [np.zeros(n)]
    if states is not None:
        S = as_numpy(states).reshape(-1, n)
        if len(S) > max_starts:
            S = S[np.linspace(0, len(S) - 1, max_starts).round().astype(int)]
        starts.extend(S)
    points: list[np.ndarray] = []
    counts: list[int] = []
    residuals: list[float] = []
    for h0 in starts:
        h, res = _fixed_point_from(W, b, h0)
        if not res < tol:
            continue
        for k, p in enumerate(points):
            if np.max(np.abs(p - h)) < merge_tol:
                counts[k] += 1
                break
        else:
            points.append(h)
            counts.append(1)
            residuals.append(res)
    if not points:
        raise FixedPointNotFound(
            f"none of {len(starts)} starts converged to a fixed point of h = tanh(W_hh h + b) (residual < {tol:g})"
        )
    order = sorted(range(len(points)), key=lambda k: (-counts[k], float(np.linalg.norm(points[k]))))
    pts = np.stack([points[k] for k in order])
    h_star = pts[0]
    J = (1.0 - h_star**2)[:, None] * W
    return Linearisation(J, h_star, pts, np.array([counts[k] for k in order]), residuals[order[0]], len(starts))


def spectral_comparison(W_hh, F, s: int, threshold: float = 0.9, b=None, states=None) -> SpectralComparison:
    """:func:`compare_spectra` of the eigenvalues of :func:`jacobian` ``(W_hh, b, states)`` against
    ``predicted_eigenvalues(F, s)`` (docs/science.md §4). ``W_hh``: ``(n, n)``, ``F``: ``(s*d, d)``."""
    J = jacobian(W_hh, b=b, states=states).matrix
    return compare_spectra(np.linalg.eigvals(J), predicted_eigenvalues(F, s), threshold=threshold)


def spectral_radius(W_hh) -> float:
    """``max |λ(W_hh)|`` (docs/science.md §6). ``W_hh``: ``(n, n)`` array or tensor."""
    return float(np.max(np.abs(np.linalg.eigvals(as_numpy(W_hh)))))


def angle_counts(learned, theory, threshold: float = 0.9) -> list[tuple[float, int, int]]:
    """Eigenvalues per direction (Figs. 6, 8B, 9A): for each angle of Φ's unit-modulus eigenvalues, Φ's count and
    how many learned eigenvalues with ``|λ| > threshold`` lie nearest that direction.

    ``learned``: ``(n,)`` complex; ``theory``: ``(m,)`` complex (``predicted_eigenvalues``; those with modulus
    below 0.5, Φ's zeros, have no direction). Returns ``[(angle in degrees [0, 360), n_theory, n_learned), ...]``
    sorted by angle; the learned counts sum to the number of learned eigenvalues above ``threshold``.
    """
    lam = np.asarray(learned, dtype=np.complex128).ravel()
    theory = np.asarray(theory, dtype=np.complex128).ravel()
    unit = theory[np.abs(theory) > 0.5]
    deg = np.round(np.mod(np.degrees(np.angle(unit)), 360.0), 6)
    deg[deg >= 360.0] = 0.0
    angles, n_theory = np.unique(deg, return_counts=True)
    n_learned = np.zeros(len(angles), dtype=np.int64)
    above = lam[np.abs(lam) > threshold]
    if len(angles) and above.size:
        nearest = np.argmin(angle_differences(above, np.exp(1j * np.radians(angles))), axis=1)
        n_learned = np.bincount(nearest, minlength=len(angles))
    return [(float(a), int(t), int(k)) for a, t, k in zip(angles, n_theory, n_learned)]
