"""Zero-mean least-squares score recovery (HodgeRank), paper Sec. 3.2, Eq. (2)-(5).

Every edge ``k = (i, j)`` with margin ``m_k`` asks for ``s_i - s_j ≈ m_k``. With the signed
incidence matrix ``A`` (E, N) and per-edge weights ``W`` the normal equations are the weighted
graph Laplacian system ``L s = A^T W m`` with ``L = A^T W A``. ``L`` is singular (constants per
connected component), so each component is solved with its own zero mean.

Speed: the Laplacian is assembled directly in CSR form (a counting sort of the ``2E`` directed
half-edges, no duplicate summation — a CSR mat-vec sums duplicates anyway) and solved with
Jacobi-preconditioned conjugate gradients. Convergence is judged on the *true* residual
``||b - L s|| / ||b||`` recomputed after CG stops, never on the recurrence alone.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ranking._checks import check_graph

try:  # the C++ counting sort behind scipy's COO->CSR conversion, without sum_duplicates
    from scipy.sparse._sparsetools import coo_tocsr as _coo_tocsr
except ImportError:  # pragma: no cover - depends on scipy internals
    _coo_tocsr = None


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


def laplacian_csr(pairs: np.ndarray, num_items: int, weights: np.ndarray | None = None
                  ) -> tuple[sp.csr_matrix, np.ndarray]:
    """Off-diagonal adjacency ``W_adj`` (CSR, symmetric, float32) and degrees ``d`` (float64).

    ``L = diag(d) - W_adj``. Duplicate edges stay duplicate entries (mat-vecs sum them). The
    adjacency is float32 because the solve is memory-bound (half the bytes per mat-vec); the
    true residual is recomputed in float64 from the edge list, and refinement steps on it
    recover float64 accuracy.

    >>> adj, deg = laplacian_csr(np.array([[0, 1], [1, 2]]), 3)
    >>> adj.toarray().tolist(), deg.tolist()
    ([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], [1.0, 2.0, 1.0])
    """
    n, e = int(num_items), pairs.shape[0]
    idx_type = np.int32 if max(n, 2 * e) < 2**31 - 1 else np.int64
    rows = np.concatenate([pairs[:, 0], pairs[:, 1]]).astype(idx_type)
    cols = np.concatenate([pairs[:, 1], pairs[:, 0]]).astype(idx_type)
    w = np.ones(e) if weights is None else weights
    deg = np.bincount(pairs[:, 0], weights=w, minlength=n)
    deg += np.bincount(pairs[:, 1], weights=w, minlength=n)
    w32 = w.astype(np.float32)
    vals = np.concatenate([w32, w32])
    if _coo_tocsr is None:  # pragma: no cover
        adj = sp.csr_matrix(sp.coo_matrix((vals, (rows, cols)), shape=(n, n)))
        return adj, deg
    indptr = np.empty(n + 1, dtype=idx_type)
    indices = np.empty(2 * e, dtype=idx_type)
    data = np.empty(2 * e, dtype=np.float32)
    _coo_tocsr(n, n, 2 * e, rows, cols, vals, indptr, indices, data)
    adj = sp.csr_matrix((data, indices, indptr), shape=(n, n), copy=False)
    return adj, deg


def components_csr(adj: sp.csr_matrix, deg: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected-component labels ``(N,)`` and their count from a symmetric CSR pattern.

    Fast path: a breadth-first sweep from the first item with an edge, one CSR mat-vec per
    level (C speed, bandwidth-bound); when it reaches every item that has an edge the graph is
    one component plus isolated singletons. Otherwise scipy's exact labelling is used.
    Labels are renumbered ``0..C-1`` in order of each component's first item.

    >>> adj, deg = laplacian_csr(np.array([[0, 1], [3, 4]]), 5)
    >>> labels, count = components_csr(adj, deg)
    >>> labels.tolist(), count
    ([0, 0, 1, 2, 2], 3)
    """
    n = adj.shape[0]
    has_edge = deg > 0
    if not has_edge.any():
        return np.arange(n, dtype=np.int64), n
    reached = np.zeros(n, dtype=adj.dtype)
    reached[int(np.argmax(has_edge))] = 1.0
    total_old, target = 1, int(has_edge.sum())
    while total_old < target:
        np.maximum(reached, adj @ reached > 0, out=reached)
        total = int(np.count_nonzero(reached))
        if total == total_old:
            break
        total_old = total
    if total_old == target:
        first = int(np.argmax(has_edge))
        starts = ~has_edge  # every isolated item opens its own component, as does `first`
        starts[first] = True
        labels = np.cumsum(starts) - 1
        labels[has_edge] = labels[first]
        return labels.astype(np.int64), n - target + 1
    count, labels = connected_components(adj, directed=False)
    _, first_pos, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first_pos))
    return rank[inverse].astype(np.int64), int(count)


def _edge_matvec(pairs: np.ndarray, w: np.ndarray | None, x: np.ndarray) -> np.ndarray:
    """``L x = A^T W A x`` in exact float64 straight from the edge list (for the residual)."""
    diff = x[pairs[:, 0]] - x[pairs[:, 1]]
    if w is not None:
        diff *= w
    out = np.bincount(pairs[:, 0], weights=diff, minlength=len(x))
    out -= np.bincount(pairs[:, 1], weights=diff, minlength=len(x))
    return out


def _pcg(adj: sp.csr_matrix, deg: np.ndarray, b: np.ndarray, tol: float, maxiter: int
         ) -> tuple[np.ndarray, int]:
    """Jacobi-preconditioned CG on ``(diag(deg) - adj) x = b`` in float32; ``(x, iterations)``.

    Items with ``deg == 0`` have ``b == 0`` and stay at 0. Vectors are preallocated and updated
    in place: at N = 10^6 fresh allocations (page faults) cost more than the arithmetic.
    """
    f32 = np.float32
    d = deg.astype(f32)
    inv_d = np.divide(1.0, d, out=np.zeros_like(d), where=d > 0)
    x = np.zeros_like(d)
    r = b.astype(f32)
    z = r * inv_d
    p = z.copy()
    q = np.empty_like(d)
    rz = float(r @ z)
    stop = (tol * float(np.linalg.norm(b))) ** 2
    for it in range(1, maxiter + 1):
        np.multiply(d, p, out=q)
        q -= adj @ p  # q = L p
        pq = float(p @ q)
        if pq <= 0.0 or rz == 0.0:  # exact solution reached (or b == 0)
            return x.astype(np.float64), it
        alpha = f32(rz / pq)
        x += alpha * p
        r -= alpha * q
        if float(r @ r) <= stop:
            return x.astype(np.float64), it
        np.multiply(r, inv_d, out=z)
        rz_new = float(r @ z)
        if rz_new == 0.0:
            return x.astype(np.float64), it
        p *= f32(rz_new / rz)
        p += z
        rz = rz_new
    return x.astype(np.float64), maxiter


def _true_residual(pairs: np.ndarray, w: np.ndarray | None, b: np.ndarray, x: np.ndarray
                   ) -> tuple[np.ndarray, float]:
    """Residual vector ``b - L x`` and ``||b - L x|| / ||b||`` (0 when ``b`` is 0), float64."""
    res = b - _edge_matvec(pairs, w, x)
    norm_b = float(np.linalg.norm(b))
    return res, (float(np.linalg.norm(res)) / norm_b if norm_b > 0 else 0.0)


def _center(x: np.ndarray, labels: np.ndarray, count: int) -> None:
    """Subtract each component's mean in place (the zero-mean gauge of Eq. 5)."""
    if count == 1:
        x -= x.mean()
        return
    sizes = np.bincount(labels, minlength=count)
    x -= (np.bincount(labels, weights=x, minlength=count) / sizes)[labels]


def lsq_solve(pairs: np.ndarray, margins: np.ndarray, num_items: int,
              weights: np.ndarray | None = None, tol: float = 1e-6,
              maxiter: int = 1000, refinements: int = 4, warn: bool = True) -> LSQResult:
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
    adj, deg = laplacian_csr(arr, n, w)
    wm = m if w is None else w * m
    b = np.bincount(arr[:, 0], weights=wm, minlength=n)
    b -= np.bincount(arr[:, 1], weights=wm, minlength=n)
    labels, count = components_csr(adj, deg)
    x, iterations = _pcg(adj, deg, b, max(tol, 1e-6), maxiter)
    res, residual = _true_residual(arr, w, b, x)
    for _ in range(refinements):  # mixed-precision iterative refinement on the true residual
        if residual <= tol:
            break
        _center(res, labels, count)  # keep the correction's right-hand side in range(L)
        dx, its = _pcg(adj, deg, res, max(tol / max(residual, tol), 1e-6), maxiter)
        x += dx
        iterations += its
        res, residual = _true_residual(arr, w, b, x)
    _center(x, labels, count)
    isolated = np.flatnonzero(deg == 0)
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
        "scores are not comparable across components", RuntimeWarning, stacklevel=3)


def lsq_scores(pairs: np.ndarray, margins: np.ndarray, num_items: int,
               weights: np.ndarray | None = None, tol: float = 1e-6) -> np.ndarray:
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
