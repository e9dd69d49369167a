"""Zero-mean least-squares score recovery (HodgeRank), paper Sec. 3.2, Eq. (2)-(5).

Every edge ``k = (i, j)`` with margin ``m_k`` asks for ``s_i - s_j ≈ m_k``. With the signed
incidence matrix ``A`` (E, N) and per-edge weights ``W`` the normal equations are the weighted
graph Laplacian system ``L s = A^T W m`` with ``L = A^T W A``. ``L`` is singular (constants per
connected component), so each component is solved with its own zero mean.

Speed (see :mod:`ranking._kernels`): the Laplacian is assembled directly in CSR form by a
cache-blocked two-pass counting sort of the ``2E`` half-edges (no duplicate summation) and
solved with float32 Jacobi-preconditioned conjugate gradients plus float64 refinement.
Convergence is judged on the *true* residual ``||b - L s|| / ||b||`` recomputed after CG
stops, never on the recurrence alone.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ranking._checks import check_graph
from ranking._kernels import NegLaplacian, exact_components, neg_laplacian, pcg32


@dataclass
class LSQResult:
    """Outcome of :func:`lsq_solve`.

    Attributes:
        scores: (N,) recovered scores, zero mean within every connected component.
        components: (N,) component label per item (``0..num_components-1``, by first item).
        num_components: number of connected components, isolated items included.
        isolated: indices of items without any edge (score 0 by the zero-mean gauge).
        iterations: conjugate-gradient iterations in total (restarts included).
        residual: true relative residual ``||b - L s|| / ||b||`` of the returned scores.
        converged: ``residual <= tol``.
    """

    scores: np.ndarray
    components: np.ndarray
    num_components: int
    isolated: np.ndarray
    iterations: int
    residual: float
    converged: bool
    component_sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def laplacian_csr(
    pairs: np.ndarray, num_items: int, weights: np.ndarray | None = None
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Off-diagonal adjacency ``W_adj`` (CSR, symmetric, float32) and degrees ``d`` (float64).

    ``L = diag(d) - W_adj``. Duplicate edges stay duplicate entries (mat-vecs sum them).

    >>> adj, deg = laplacian_csr(np.array([[0, 1], [1, 2]]), 3)
    >>> adj.toarray().tolist(), deg.tolist()
    ([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], [1.0, 2.0, 1.0])
    """
    op = neg_laplacian(np.asarray(pairs).reshape(-1, 2), int(num_items), weights)
    n = int(num_items)
    return sp.csr_matrix((-op.data32, op.indices, op.indptr), shape=(n, n)), op.deg


def components_csr(adj: sp.csr_matrix, deg: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected-component labels ``(N,)`` and their count from a symmetric CSR pattern.

    Labels are renumbered ``0..C-1`` in order of each component's first item.

    >>> adj, deg = laplacian_csr(np.array([[0, 1], [3, 4]]), 5)
    >>> labels, count = components_csr(adj, deg)
    >>> labels.tolist(), count
    ([0, 0, 1, 2, 2], 3)
    """
    neg = -np.abs(adj.data).astype(np.float32)
    op = NegLaplacian(adj.indptr, adj.indices, neg, None, np.asarray(deg))
    return exact_components(op)


def _true_residual(op: NegLaplacian, b: np.ndarray, x: np.ndarray, buf: np.ndarray) -> tuple[np.ndarray, float]:
    """Residual ``b - L x`` in float64 with the exact weights, and ``||b - L x|| / ||b||``."""
    res = np.subtract(b, op.matvec(x, buf), out=buf)
    norm_b = float(np.linalg.norm(b))
    return res, (float(np.linalg.norm(res)) / norm_b if norm_b > 0 else 0.0)


def _center(x: np.ndarray, labels: np.ndarray, count: int) -> None:
    """Subtract each component's mean in place (the zero-mean gauge of Eq. 5)."""
    if count == 1:
        x -= x.mean()
        return
    sizes = np.bincount(labels, minlength=count)
    x -= (np.bincount(labels, weights=x, minlength=count) / sizes)[labels]


def lsq_solve(
    pairs: np.ndarray,
    margins: np.ndarray,
    num_items: int,
    weights: np.ndarray | None = None,
    tol: float = 1e-6,
    maxiter: int = 1000,
    refinements: int = 4,
    warn: bool = True,
) -> LSQResult:
    """Zero-mean least-squares scores from pairwise margins, with diagnostics.

    Solves ``min_s sum_k w_k (s_i - s_j - m_k)^2`` subject to a zero mean within each connected
    component (paper Eq. 5). A disconnected graph is never mixed into one scale: each component
    is centred on its own and a ``RuntimeWarning`` names the components and isolated items.

    Args:
        pairs: (E, 2) int item indices; edge ``(i, j)`` means ``s_i - s_j ≈ margin``.
        margins: (E,) finite margins.
        num_items: N; items without edges are isolated (score 0, reported).
        weights: optional (E,) positive per-edge weights (e.g. inverse noise variance).
        tol: target true relative residual ``||b - L s|| / ||b||``.
        maxiter: CG iteration cap per solve.
        refinements: at most this many correction solves on the float64 true residual (the
            inner CG runs in float32, so one solve alone stops near 1e-6).
        warn: emit the disconnected-graph warning.

    Returns:
        :class:`LSQResult` with scores, component labels, isolated items, iterations, residual.

    Raises:
        ValueError: NaN/inf margins or weights, self-pairs, out-of-range indices, bad shapes.

    >>> res = lsq_solve(np.array([[0, 1], [1, 2]]), np.array([1.0, 2.0]), 3)
    >>> np.round(res.scores, 6).tolist(), res.num_components
    ([1.333333, 0.333333, -1.666667], 1)
    """
    arr, m, w = check_graph(pairs, margins, num_items, weights)
    n = int(num_items)
    if w is not None:  # scaling all weights leaves the solution unchanged; keeps float32 sane
        w = w / float(w.max())
    op = neg_laplacian(arr, n, w)
    wm = m if w is None else w * m
    b = np.bincount(arr[:, 0], weights=wm, minlength=n)
    b -= np.bincount(arr[:, 1], weights=wm, minlength=n)
    labels, count = exact_components(op)
    x, iterations = pcg32(op, b, max(tol, 1e-6), maxiter)
    buf = np.empty(n)
    res, residual = _true_residual(op, b, x, buf)
    for _ in range(refinements):  # mixed-precision iterative refinement on the true residual
        if residual <= tol:
            break
        _center(res, labels, count)  # keep the correction's right-hand side in range(L)
        dx, its = pcg32(op, res, max(tol / max(residual, tol), 1e-6), maxiter)
        x += dx
        iterations += its
        res, residual = _true_residual(op, b, x, buf)
    _center(x, labels, count)
    isolated = np.flatnonzero(op.deg == 0)
    sizes = np.bincount(labels, minlength=count)
    if warn and count > 1:
        _warn_disconnected(sizes, isolated)
    return LSQResult(x, labels, count, isolated, iterations, residual, residual <= tol, sizes)


def _warn_disconnected(sizes: np.ndarray, isolated: np.ndarray) -> None:
    """Warn that scores of different components are not on one scale."""
    big = np.sort(sizes[sizes > 1])[::-1]
    warnings.warn(
        f"comparison graph is disconnected: {len(big)} component(s) with edges "
        f"(sizes {big[:5].tolist()}{'...' if len(big) > 5 else ''}) and {len(isolated)} isolated "
        f"item(s) (first {isolated[:5].tolist()}); each component has its own zero mean and "
        "scores are not comparable across components",
        RuntimeWarning,
        stacklevel=3,
    )


def lsq_scores(
    pairs: np.ndarray, margins: np.ndarray, num_items: int, weights: np.ndarray | None = None, tol: float = 1e-6
) -> np.ndarray:
    """Zero-mean least-squares (HodgeRank) scores; see :func:`lsq_solve` for the details.

    Args:
        pairs: (E, 2) int item indices; edge ``(i, j)`` means ``s_i - s_j ≈ margin``.
        margins: (E,) finite margins.
        num_items: N.
        weights: optional (E,) positive per-edge weights.
        tol: target true relative residual (scores are then accurate to about ``tol`` times
            their spread; pass e.g. ``1e-10`` for reference-grade parity).

    Returns:
        (N,) float64 scores, zero mean per connected component.

    >>> lsq_scores(np.array([[0, 1], [1, 2], [0, 2]]), np.array([1.0, 1.0, 2.0]), 3).round(6)
    array([ 1.,  0., -1.])
    """
    return lsq_solve(pairs, margins, num_items, weights, tol=tol).scores
