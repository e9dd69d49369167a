"""Input validation shared by every aggregator: one place that names bad edges."""

from __future__ import annotations

import numpy as np


def _first(mask: np.ndarray) -> int:
    """Index of the first ``True`` entry of ``mask`` (callers know one exists)."""
    return int(np.flatnonzero(mask)[0])


def check_pairs(pairs: np.ndarray, num_items: int) -> np.ndarray:
    """Validate an edge list and return it as an ``int64`` array of shape ``(E, 2)``.

    Raises:
        ValueError: wrong shape, self-pairs or indices outside ``[0, num_items)``; the message
            says how many edges are bad and which one is first.
    """
    if int(num_items) < 0:
        raise ValueError(f"num_items must be >= 0, got {num_items}")
    arr = np.asarray(pairs)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"pairs must have shape (E, 2), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError("pairs must hold integer item indices")
    arr = arr.astype(np.int64, copy=False)
    if arr.min() < 0 or arr.max() >= num_items:  # cheap scan first, details only on failure
        bad = (arr < 0).any(axis=1) | (arr >= num_items).any(axis=1)
        k = _first(bad)
        raise ValueError(
            f"{int(bad.sum())} pairs have an index outside [0, {num_items}) "
            f"(first: edge {k} = {tuple(arr[k].tolist())})"
        )
    self_pair = arr[:, 0] == arr[:, 1]
    if self_pair.any():
        k = _first(self_pair)
        raise ValueError(f"{int(self_pair.sum())} self-pairs (i == j) (first: edge {k} = {tuple(arr[k].tolist())})")
    return arr


def check_values(values: np.ndarray | None, num_edges: int, what: str, positive: bool = False) -> np.ndarray | None:
    """Validate a per-edge float array (margins or weights) of length ``num_edges``.

    Raises:
        ValueError: wrong length, NaN/inf entries (or non-positive ones when ``positive``);
            the message says how many and which edge is first.
    """
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.shape[0] != num_edges:
        raise ValueError(f"{what} has {arr.shape[0]} entries but there are {num_edges} pairs")
    if not np.isfinite(arr.sum()) and not np.isfinite(arr).all():  # sum: one cheap pass
        bad = ~np.isfinite(arr)
        k = _first(bad)
        raise ValueError(f"{int(bad.sum())} {what} are NaN/inf (first: edge {k} = {arr[k]})")
    if positive and (arr <= 0).any():
        nonpos = arr <= 0
        k = _first(nonpos)
        raise ValueError(f"{int(nonpos.sum())} {what} are <= 0 (first: edge {k} = {arr[k]})")
    return arr


def check_graph(
    pairs: np.ndarray, margins: np.ndarray, num_items: int, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate ``(pairs, margins, weights)`` together; returns ``(pairs (E,2), margins (E,), w)``."""
    arr = check_pairs(pairs, num_items)
    m = check_values(margins, arr.shape[0], "margins")
    w = check_values(weights, arr.shape[0], "weights", positive=True)
    assert m is not None
    return arr, m, w
