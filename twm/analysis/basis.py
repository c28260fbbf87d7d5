"""Algorithm 1: the variable-memory basis that reveals the hidden traveling waves (docs/science.md §5).

``Ψ_s = pinv(W_r)`` reads the newest substrate column out of the hidden state; ``Ψ_k = W_hh^{s-k} Ψ_s`` follows it
back in time (``W_hh Ψ_{k+1} = Ψ_k``: the waves travel from variable s to variable 1, the convention of the released
figures, docs/science.md §7). Each column is normalised to unit norm and only persistent columns are kept; the dual
basis ``Ψ* = pinv(Ψ_kept)`` turns hidden states into substrate coordinates (Fig. 3) and ``W_hh`` into ``Ψ* W_hh Ψ``
(Fig. 4); :func:`support_summary` scores that matrix against Φ.

Substrate order throughout: flat index ``r = i*d + j`` is variable ``i + 1`` (block ``i``, 1 = oldest, s = newest),
dim ``j`` — the order of ``X_t`` in docs/science.md §1 and of Φ's rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla

from twm.analysis.spectra import as_numpy
from twm.theory import cycle_coordinates, phi


@dataclass(frozen=True)
class VariableMemoryBasis:
    """Result of :func:`variable_memory_basis`.

    ``psi``: ``(n, s*d)``, block ``k-1`` holds Ψ_k (unit columns), non-kept columns zero. ``psi_star``:
    ``(s*d, n)``, ``pinv`` of the kept columns placed at the kept rows, zero rows elsewhere. ``kept``: ``(s*d,)``
    bool. ``complement``: ``(n, k)`` orthonormal principal directions of the residual trajectory (``k = 0``
    without a trajectory). ``psi_full``: ``(n, s*d)`` all normalised Krylov columns before selection.
    ``column_norms``: ``(s*d,)`` norms of ``W_hh^{s-k} Ψ_s`` before normalisation. ``method``:
    ``"cycle_coordinates"`` (F given) or ``"persistent_rank"`` (F = None).
    """

    psi: np.ndarray = field(repr=False)
    psi_star: np.ndarray = field(repr=False)
    kept: np.ndarray
    complement: np.ndarray = field(repr=False)
    s: int
    d: int
    psi_full: np.ndarray = field(repr=False)
    column_norms: np.ndarray = field(repr=False)
    method: str

    @property
    def n_kept(self) -> int:
        return int(self.kept.sum())

    def project(self, hidden) -> np.ndarray:
        """``Ψ Ψ* h``: the part of ``hidden`` ``(..., n)`` in the variable memories, same shape."""
        H = as_numpy(hidden)
        return H @ self.psi_star.T @ self.psi.T


def persistent_projector(W_hh, threshold: float = 0.9) -> tuple[np.ndarray, int]:
    """Spectral (oblique) projector onto the invariant subspace of ``W_hh`` ``(n, n)`` for eigenvalues with
    ``|λ| > threshold``, along the invariant subspace of the others. Returns ``(P (n, n), its rank m)``.

    Computed from an ordered real Schur form ``W = Z [[A, C], [0, B]] Zᵀ`` (``A`` holds the large eigenvalues) and
    the Sylvester equation ``A Y − Y B = C``: ``P = Z [[I, Y], [0, 0]] Zᵀ`` — no eigenvector matrix is inverted,
    so defective (nilpotent) transient blocks are harmless.
    """
    W = as_numpy(W_hh)
    thr2 = float(threshold) ** 2
    T, Z, m = sla.schur(W, output="real", sort=lambda re, im: re * re + im * im > thr2)
    if m == 0:
        return np.zeros_like(W), 0
    if m == W.shape[0]:
        return np.eye(W.shape[0]), m
    Y = sla.solve_sylvester(T[:m, :m], -T[m:, m:], T[:m, m:])
    return Z[:, :m] @ (Z[:, :m].T + Y @ Z[:, m:].T), m


def _persistent_columns(W: np.ndarray, psi_full: np.ndarray, threshold: float, rank_tol: float) -> np.ndarray:
    """The F = None column rule (see :func:`variable_memory_basis`)."""
    P, m = persistent_projector(W, threshold)
    kept = np.zeros(psi_full.shape[1], dtype=bool)
    if m == 0:
        return kept
    projected = P @ psi_full
    _, R, piv = sla.qr(projected, mode="economic", pivoting=True)
    diag = np.abs(np.diag(R))
    if diag.size == 0 or diag[0] == 0:
        return kept
    n_keep = int(min(m, np.sum(diag > rank_tol * diag[0])))
    kept[piv[:n_keep]] = True
    return kept


def variable_memory_basis(
    W_hh,
    W_r,
    s: int,
    F=None,
    hidden=None,
    n_complement: int = 10,
    threshold: float = 0.9,
    rank_tol: float = 1e-6,
) -> VariableMemoryBasis:
    """Algorithm 1 as the released figures computed it (docs/science.md §5).

    ``W_hh``: ``(n, n)``; ``W_r``: ``(d, n)``; ``F``: ``(s*d, d)`` or ``None``; ``hidden``: ``(T, n)`` or
    ``(T, B, n)`` or ``None``.

    1. ``Ψ_s = pinv(W_r)``, ``Ψ_k = W_hh^{s-k} Ψ_s`` for k = s-1..1, every column normalised to unit norm.
    2. Columns kept:

       * ``F`` given: Φ's cycle coordinates, ``theory.cycle_coordinates(F, s)`` (64 for repeat copy at s = d = 8,
         36 for the three compose tasks).
       * ``F = None`` (task-agnostic, no ground truth): let ``m`` be the number of eigenvalues of ``W_hh`` with
         ``|λ| > threshold`` (the count §4 compares) and ``P`` the spectral projector onto their invariant subspace
         (:func:`persistent_projector`). Each unit Krylov column ``c`` is scored by its persistent part ``P c``: a
         transient direction (one whose activity dies out, i.e. lies in the invariant subspace of the small
         eigenvalues) has ``P c = 0``, and a column that only repeats persistent content already present adds no
         rank. The kept set is the first ``min(m, s*d)`` columns chosen by QR with column pivoting of ``P Ψ_full``
         (largest new persistent component first), dropping any whose pivot ``|R_kk|`` is ``<= rank_tol · |R_00|``.
         On a planted repeat copy network this keeps all ``s*d`` columns; on a planted compose task it keeps
         exactly 36, one per persistent dimension — which columns can differ from the cycle coordinates (any set
         spanning the same persistent subspace scores the same), so Fig. 4 is read in that basis.
    3. ``Ψ* = pinv(Ψ_kept)`` at the kept rows. Complement: the top ``n_complement`` principal directions (centred
       PCA, via SVD) of the residual trajectory ``h − Ψ Ψ* h``; fewer when the residual has lower numerical rank
       (only singular values ``> 1e-10 · ‖h − mean h‖_F`` count, so a trajectory inside the memories has none).
    """
    W = as_numpy(W_hh)
    Wr = as_numpy(W_r)
    n = W.shape[0]
    if W.shape != (n, n) or Wr.ndim != 2 or Wr.shape[1] != n:
        raise ValueError(f"need W_hh (n, n) and W_r (d, n); got {W.shape} and {Wr.shape}")
    d = Wr.shape[0]
    if s < 1:
        raise ValueError(f"s must be >= 1, got {s}")
    blocks = [np.linalg.pinv(Wr)]
    for _ in range(s - 1):
        blocks.append(W @ blocks[-1])
    raw = np.concatenate(blocks[::-1], axis=1)  # block k-1 = Ψ_k = W^{s-k} Ψ_s
    norms = np.linalg.norm(raw, axis=0)
    psi_full = np.divide(raw, norms, out=np.zeros_like(raw), where=norms > 0)
    if F is not None:
        F = np.asarray(F)
        if F.shape != (s * d, d):
            raise ValueError(f"F must have shape (s*d, d) = ({s * d}, {d}), got {F.shape}")
        kept = np.zeros(s * d, dtype=bool)
        kept[cycle_coordinates(F, s)] = True
        method = "cycle_coordinates"
    else:
        kept = _persistent_columns(W, psi_full, threshold, rank_tol)
        method = "persistent_rank"
    kept &= norms > 0
    psi = np.where(kept[None, :], psi_full, 0.0)
    psi_star = np.zeros((s * d, n))
    if kept.any():
        psi_star[kept] = np.linalg.pinv(psi_full[:, kept])
    complement = np.zeros((n, 0))
    if hidden is not None and n_complement > 0:
        H = as_numpy(hidden).reshape(-1, n)
        R = H - (H @ psi_star.T) @ psi.T
        R = R - R.mean(axis=0)
        scale = np.linalg.norm(H - H.mean(axis=0))
        _, sv, Vt = np.linalg.svd(R, full_matrices=False)
        k = int(min(n_complement, np.sum(sv > 1e-10 * scale)))
        complement = Vt[:k].T.copy()
    return VariableMemoryBasis(psi, psi_star, kept, complement, int(s), int(d), psi_full, norms, method)


def weights_in_basis(W_hh, basis: VariableMemoryBasis) -> np.ndarray:
    """``Ψ* W_hh Ψ``, ``(s*d, s*d)`` in substrate order (Fig. 4; docs/science.md §5 step 4). Rows and columns of
    non-kept coordinates are zero. On a TWM it shows the shift (variable k+1 → k) and ``Fᵀ`` in the last block row."""
    return basis.psi_star @ as_numpy(W_hh) @ basis.psi


def support_summary(M, F, s: int, kept, level: float = 0.5) -> dict:
    """How well ``M = Ψ* W_hh Ψ`` ``(s*d, s*d)`` shows Φ (Fig. 4, docs/science.md §5 step 4), honest about the kept
    set. ``F``: binary ``(s*d, d)``; ``kept``: ``(s*d,)`` bool (``VariableMemoryBasis.kept``).

    Let ``C`` be Φ's cycle coordinates (``theory.cycle_coordinates``), ``K`` the kept ones, ``S`` Φ's support
    (``Φ ≠ 0``). The **scored** entries are those of ``S`` with both coordinates in ``C``, plus those of ``S``
    touching a kept transient coordinate (``K ∖ C``). A **hit** is a scored entry with both coordinates in ``C ∩ K``
    where ``M`` has Φ's sign and ``|M| > level``; so a cycle entry with a coordinate not kept, and every entry of a
    kept transient coordinate, is a miss. ``support_match`` = hits / scored (``support_entries``); with ``K = C``
    it is the fraction of Φ's kept×kept support that ``M`` shows. ``shift_match``/``boundary_match``: the same
    over the scored entries off/in the last block row (``Fᵀ``; the shift entries hold by construction of the
    Krylov basis up to the norm ratios, so the boundary is the informative part). ``on_support_abs_mean``/
    ``on_support_abs_min``: ``|M|`` on the scored entries, read as 0 where a coordinate is not kept.
    ``off_support_max``: the largest ``|M|`` on kept×kept entries where Φ is 0 (0 if none). ``None`` where a
    fraction has no entries. ``kept_matches_cycles``: ``K = C``; ``n_kept_not_cycle``: ``|K ∖ C|``;
    ``n_cycle_not_kept``: ``|C ∖ K|``.
    """
    P = phi(F, s)
    n = P.shape[0]
    M = as_numpy(M)
    kept = np.asarray(kept, dtype=bool)
    if M.shape != (n, n) or kept.shape != (n,):
        raise ValueError(f"need M ({n}, {n}) and kept ({n},); got {M.shape} and {kept.shape}")
    cycle = np.zeros(n, dtype=bool)
    cycle[cycle_coordinates(F, s)] = True
    stray = kept & ~cycle
    support = P != 0
    scored = support & ((cycle[:, None] & cycle[None, :]) | stray[:, None] | stray[None, :])
    both = kept[:, None] & kept[None, :]
    Mk = np.where(both, M, 0.0)
    held = cycle & kept
    hits = scored & held[:, None] & held[None, :] & (np.sign(Mk) == np.sign(P)) & (np.abs(Mk) > level)
    boundary = np.zeros_like(scored)
    boundary[-(n // s):] = True
    count = int(scored.sum())
    parts = {}
    for name, part in (("shift", scored & ~boundary), ("boundary", scored & boundary)):
        k = int(part.sum())
        parts[f"{name}_match"] = float((hits & part).sum() / k) if k else None
    on = np.abs(Mk[scored])
    off = both & ~support
    return {
        "support_entries": count,
        "support_match": float(hits.sum() / count) if count else None,
        **parts,
        "support_level": level,
        "on_support_abs_mean": float(on.mean()) if count else None,
        "on_support_abs_min": float(on.min()) if count else None,
        "off_support_max": float(np.abs(M[off]).max()) if off.any() else 0.0,
        "kept_matches_cycles": bool(np.array_equal(kept, cycle)),
        "n_kept_not_cycle": int(stray.sum()),
        "n_cycle_not_kept": int((cycle & ~kept).sum()),
    }


def states_in_basis(hidden, basis: VariableMemoryBasis, s: int | None = None, d: int | None = None) -> np.ndarray:
    """Substrate coordinates ``Ψ* h`` of hidden states ``(..., n)``, reshaped to ``(..., s, d)`` (Fig. 3):
    ``[..., k-1, j]`` is dim ``j`` of variable ``k`` (k = s newest). Non-kept coordinates are 0. ``s``/``d``
    default to the basis's own."""
    s = basis.s if s is None else s
    d = basis.d if d is None else d
    if s * d != basis.psi_star.shape[0]:
        raise ValueError(f"s*d = {s * d} does not match the basis ({basis.psi_star.shape[0]} coordinates)")
    H = as_numpy(hidden)
    coords = H @ basis.psi_star.T
    return coords.reshape(*H.shape[:-1], s, d)


def normalise_for_display(coords) -> np.ndarray:
    """Global per-timestep normalisation (docs/science.md §7, the released figures' choice; the paper's Fig. 8 instead
    normalised per memory): each time step is divided by its largest ``|value|`` over all variables and dims.

    ``coords``: ``(T, ..., s, d)``, time first; the max runs over the last two axes, separately for every time step
    (and every index of any axes in between, e.g. a batch). Time steps that are all zero stay zero. Result in
    [-1, 1], same shape.
    """
    C = as_numpy(coords)
    if C.ndim < 3:
        raise ValueError(f"coords must be (T, ..., s, d), got shape {C.shape}")
    peak = np.max(np.abs(C), axis=(-2, -1), keepdims=True)
    return np.divide(C, peak, out=np.zeros_like(C), where=peak > 0)


def normalise_per_memory(coords) -> np.ndarray:
    """Per-memory normalisation (the paper's Figs. 8–10: "normalize the activity along each variable memory to have
    standard deviation 1"; docs/science.md §7): every variable's coordinates are divided by their standard deviation
    over time and dims.

    ``coords``: ``(T, ..., s, d)``, time first; the standard deviation (population, about the mean) runs over axis 0
    and the last axis, separately for every variable (and every index of any axes in between). The values are only
    scaled, not centred, so their signs keep their meaning. A variable that is constant zero stays zero. Same shape.
    """
    C = as_numpy(coords)
    if C.ndim < 3:
        raise ValueError(f"coords must be (T, ..., s, d), got shape {C.shape}")
    sd = np.std(C, axis=(0, C.ndim - 1), keepdims=True)
    return np.divide(C, sd, out=np.zeros_like(C), where=sd > 0)
