"""Memory-bound kernels behind :mod:`ranking.lsq`: Laplacian assembly, reachability, PCG.

At N = 10^6 items and 5N edges everything here is limited by memory traffic, not arithmetic,
so the kernels (a) never sum duplicate edges (a CSR mat-vec sums them anyway), (b) assemble
the CSR with a two-pass counting sort whose first pass groups half-edges into blocks of
``2**BLOCK_SHIFT`` rows, so the second pass writes into a cache-sized window instead of
scattering over 80 MB, (c) store the *negated* off-diagonal so one ``csr_matvec`` call turns a
preset ``q = d * p`` into ``q = L p`` in place, and (d) preallocate every vector (page faults
of fresh 4-8 MB buffers cost more than the arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

try:  # scipy's C++ counting sort / mat-vec; both accumulate into preallocated outputs
    from scipy.sparse._sparsetools import coo_tocsr, csr_matvec
except ImportError:  # pragma: no cover - depends on scipy internals
    coo_tocsr = csr_matvec = None

BLOCK_SHIFT = 15  # rows per first-pass block: 32768 rows, about 3 MB of output per block


@dataclass
class NegLaplacian:
    """``L = diag(deg) + N`` where ``N`` (CSR) holds the negated edge weights off the diagonal.

    Attributes:
        indptr: (n + 1,) int32/int64 row pointers.
        indices: (2E,) column of every half-edge, grouped by row (duplicates kept).
        data32: (2E,) float32 ``-w`` (the fast PCG operator).
        data64: (2E,) float64 ``-w`` (exact operator for the true residual), or ``None`` when
            ``data32`` is exact (unweighted graphs): it is then widened on use.
        deg: (n,) float64 weighted degrees.
    """

    indptr: np.ndarray
    indices: np.ndarray
    data32: np.ndarray
    data64: np.ndarray | None
    deg: np.ndarray

    @property
    def n(self) -> int:
        return len(self.deg)

    def matvec(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out = L x`` (dtype of ``x``: float32 uses ``data32``, float64 ``data64``)."""
        if x.dtype == np.float32:
            data = self.data32
        else:
            data = self.data32.astype(np.float64) if self.data64 is None else self.data64
        if x.dtype == np.float64:
            np.multiply(self.deg, x, out=out)
        else:
            if getattr(self, "_deg32", None) is None:
                self._deg32 = self.deg.astype(np.float32)
            np.multiply(self._deg32, x, out=out)
        if csr_matvec is None:  # pragma: no cover
            out += sp.csr_matrix((data, self.indices, self.indptr), shape=(self.n,) * 2) @ x
        else:
            csr_matvec(self.n, self.n, self.indptr, self.indices, data, x, out)
        return out


def _counting_sort(
    n: int, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR ``(indptr, indices, data)`` of the COO triplets, duplicates kept, in two passes."""
    nnz, itype = len(rows), rows.dtype
    if coo_tocsr is None:  # pragma: no cover
        shape = (n, max(n, int(cols.max(initial=0)) + 1))
        full = np.broadcast_to(vals, rows.shape)
        m = sp.csr_matrix(sp.coo_matrix((full, (rows, cols)), shape=shape))
        return m.indptr, m.indices, m.data
    blocks = (n >> BLOCK_SHIFT) + 1
    bptr = np.empty(blocks + 1, dtype=itype)
    rows1, cols1 = np.empty(nnz, dtype=itype), np.empty(nnz, dtype=itype)
    coo_tocsr(blocks, n, nnz, rows >> BLOCK_SHIFT, rows, cols, bptr, rows1, cols1)
    if vals.ndim == 0:  # one shared value: it need not travel through the first pass
        vals1 = np.full(nnz, vals, dtype=vals.dtype)
    else:
        vals1 = np.empty(nnz, dtype=vals.dtype)  # carried through a second block sort
        coo_tocsr(blocks, n, nnz, rows >> BLOCK_SHIFT, rows, vals, bptr, rows1, vals1)
    indptr = np.empty(n + 1, dtype=itype)
    indices, data = np.empty(nnz, dtype=itype), np.empty(nnz, dtype=vals1.dtype)
    coo_tocsr(n, n, nnz, rows1, cols1, vals1, indptr, indices, data)
    return indptr, indices, data


def neg_laplacian(pairs: np.ndarray, n: int, weights: np.ndarray | None) -> NegLaplacian:
    """Assemble :class:`NegLaplacian` from validated ``pairs`` (E, 2) and optional weights (E,).

    >>> op = neg_laplacian(np.array([[0, 1], [1, 2]]), 3, None)
    >>> op.matvec(np.array([1.0, 0.0, -1.0]), np.empty(3)).tolist()
    [1.0, 0.0, -1.0]
    """
    e = len(pairs)
    itype = np.int32 if max(n, 2 * e) < 2**31 - 1 else np.int64
    p = pairs.astype(itype, copy=False)
    rows = np.concatenate([p[:, 0], p[:, 1]])
    cols = np.concatenate([p[:, 1], p[:, 0]])
    if weights is None:
        indptr, indices, data32 = _counting_sort(n, rows, cols, np.array(-1.0, np.float32))
        return NegLaplacian(indptr, indices, data32, None, np.diff(indptr).astype(np.float64))
    else:
        neg_w = -np.concatenate([weights, weights])
        indptr, indices, data64 = _counting_sort(n, rows, cols, neg_w)
        deg = np.bincount(pairs[:, 0], weights=weights, minlength=n)
        deg += np.bincount(pairs[:, 1], weights=weights, minlength=n)
    return NegLaplacian(indptr, indices, data64.astype(np.float32), data64, deg)


def reach_components(op: NegLaplacian) -> tuple[np.ndarray, int] | None:
    """``(labels, count)`` when the items with edges form one component, else ``None``.

    Breadth-first sweep from the first item with an edge, one float32 mat-vec per level (the
    negated weights make a neighbour of a reached item strictly negative). Items without edges
    are singletons. Labels are numbered by each component's first item.
    """
    has_edge = op.deg > 0
    target = int(np.count_nonzero(has_edge))
    first = int(np.argmax(has_edge))
    if target == 0 or not np.all(op.data32 < 0):  # f32 underflow: no trustworthy sign
        return None
    reach = np.zeros(op.n, dtype=np.float32)
    reach[first] = 1.0
    done = _expand_small_frontiers(op, reach, first, max(op.n // 64, 1))
    y = np.empty_like(reach)
    while done < target:
        y.fill(0.0)
        csr_matvec(op.n, op.n, op.indptr, op.indices, op.data32, reach, y)
        np.subtract(reach, y, out=reach)  # reached stays >= 1, new neighbours become > 0
        np.minimum(reach, 1.0, out=reach)
        now = int(np.count_nonzero(reach))
        if now == done:
            return None
        done = now
    starts = ~has_edge
    starts[first] = True
    labels = np.cumsum(starts) - 1
    labels[has_edge] = labels[first]
    return labels.astype(np.int64), op.n - target + 1


def _expand_small_frontiers(op: NegLaplacian, reach: np.ndarray, seed: int, limit: int) -> int:
    """Top-down BFS levels from ``seed`` while the frontier is below ``limit`` items.

    Marks reached items with 1 in ``reach`` and returns how many are reached. Early levels
    touch only the frontier's rows, so they cost far less than a full mat-vec each.
    """
    frontier = np.array([seed], dtype=op.indptr.dtype)
    done = 1
    while 0 < len(frontier) <= limit:
        starts, stops = op.indptr[frontier], op.indptr[frontier + 1]
        counts = (stops - starts).astype(np.int64)
        total = int(counts.sum())
        shift = np.repeat(starts.astype(np.int64) - np.cumsum(counts) + counts, counts)
        nbrs = op.indices[shift + np.arange(total)]
        nbrs = nbrs[reach[nbrs] == 0]
        reach[nbrs] = 1.0
        frontier = np.unique(nbrs)
        done += len(frontier)
    return done


def exact_components(op: NegLaplacian) -> tuple[np.ndarray, int]:
    """Connected-component labels ``(N,)`` (numbered by first item) and count, any graph."""
    if not np.any(op.deg > 0):
        return np.arange(op.n, dtype=np.int64), op.n
    fast = reach_components(op) if csr_matvec is not None else None
    if fast is not None:
        return fast
    adj = sp.csr_matrix((np.ones_like(op.data32), op.indices, op.indptr), shape=(op.n, op.n))
    count, labels = connected_components(adj, directed=False)
    _, first_pos, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first_pos))
    return rank[inverse].astype(np.int64), int(count)


def pcg32(op: NegLaplacian, b: np.ndarray, tol: float, maxiter: int) -> tuple[np.ndarray, int]:
    """Jacobi-preconditioned CG on ``L x = b`` in float32; returns ``(x float64, iterations)``.

    Items with ``deg == 0`` have ``b == 0`` and stay at 0. Stops when the recurrence residual
    drops below ``tol * ||b||`` (callers verify the true residual in float64).
    """
    f32 = np.float32
    d = op.deg.astype(f32)
    inv_d = np.divide(1.0, d, out=np.zeros_like(d), where=d > 0)
    x = np.zeros_like(d)
    r = b.astype(f32)
    z = r * inv_d
    p = z.copy()
    q, tmp = np.empty_like(d), np.empty_like(d)
    rz = float(r @ z)
    stop = (tol * float(np.linalg.norm(b))) ** 2
    for it in range(1, maxiter + 1):
        op.matvec(p, q)
        pq = float(p @ q)
        if pq <= 0.0 or rz == 0.0:  # exact solution reached (or b == 0)
            return x.astype(np.float64), it
        alpha = f32(rz / pq)
        x += np.multiply(alpha, p, out=tmp)
        r -= np.multiply(alpha, q, out=tmp)
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
