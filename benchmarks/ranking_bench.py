"""Ranking benchmarks: LSQ solver speed vs scipy lsqr, and score recovery on real MOS labels.

    python benchmarks/ranking_bench.py --quick          # small sizes, one noise level (CI/docs)
    python benchmarks/ranking_bench.py                  # N = 1e4..1e6, all benchmarks, 2 noises
    python benchmarks/ranking_bench.py --huge           # also N = 1e7

Recovery simulates the model as ``margin = (mos_i - mos_j) + N(0, sigma²)`` on the 1-5 scale.
Writes benchmarks/results/ranking_bench.json and prints tables.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import lsqr

import ranking

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_LABELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "labels"
BENCHES = {"konvid1k": ("KoNViD-1k", 1.0, 5.0), "lsvq_test": ("LSVQ", 0.0, 100.0),
           "yt_gaming": ("LIVE-YT-Gaming", 0.0, 100.0), "waterloo_4k": ("Waterloo-IVC-4K", 0.0, 100.0)}


def load_mos(name: str) -> np.ndarray:
    """MOS in [1, 5]: ``datamodules.benchmarks.read_benchmark`` if present, else the csv."""
    try:
        from datamodules.benchmarks import read_benchmark
        return np.asarray(read_benchmark(name).mos, dtype=np.float64)
    except ImportError:
        import pandas as pd
        stem, lo, hi = BENCHES[name]
        df = pd.read_csv(SHARED_LABELS / f"{stem}.csv")
        if "split" in df.columns:
            df = df[df["split"] == "test"]
        return 1.0 + 4.0 * (df["mos"].to_numpy(np.float64) - lo) / (hi - lo)


def connected_graph(n: int, seed: int = 0) -> np.ndarray:
    """A random spanning cycle plus 4N random edges: 5N edges, connected (the sampler shape)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    extra = rng.integers(0, n, (4 * n, 2))
    extra[extra[:, 0] == extra[:, 1], 1] = (extra[extra[:, 0] == extra[:, 1], 1] + 1) % n
    return np.concatenate([np.stack([perm, np.roll(perm, 1)], 1), extra])


def _lsqr_from_edges(pairs: np.ndarray, m: np.ndarray, n: int, atol: float) -> tuple:
    e = len(pairs)
    a = sp.csr_matrix((np.concatenate([np.ones(e), -np.ones(e)]),
                       (np.tile(np.arange(e), 2), pairs.T.ravel())), shape=(e, n))
    out = lsqr(a, m, atol=atol, btol=atol, iter_lim=10000)
    return out[0] - out[0].mean(), out[2]


def _normal_residual(pairs: np.ndarray, m: np.ndarray, x: np.ndarray) -> float:
    """True relative residual of the normal equations ``||A^T(m - A x)|| / ||A^T m||``."""
    n = len(x)
    def at(v: np.ndarray) -> np.ndarray:
        return np.bincount(pairs[:, 0], v, n) - np.bincount(pairs[:, 1], v, n)
    return float(np.linalg.norm(at(m - (x[pairs[:, 0]] - x[pairs[:, 1]]))) / np.linalg.norm(at(m)))


def bench_speed(n: int, repeats: int = 2) -> dict:
    """Time LSQ (ours) and lsqr, both from the edge list, on one graph; best of ``repeats``."""
    pairs = connected_graph(n)
    rng = np.random.default_rng(1)
    m = rng.normal(size=n)[pairs[:, 0]] - rng.normal(size=n)[pairs[:, 1]] * 0 + rng.normal(size=len(pairs))
    row: dict = {"n": n, "edges": len(pairs)}
    t_ours, t_lsqr = [], []
    for _ in range(repeats):
        t = time.perf_counter(); res = ranking.lsq_solve(pairs, m, n); t_ours.append(time.perf_counter() - t)
        t = time.perf_counter(); x_l, it_l = _lsqr_from_edges(pairs, m, n, 1e-8); t_lsqr.append(time.perf_counter() - t)
    row.update(lsq_s=min(t_ours), lsq_s_all=t_ours, lsq_iters=res.iterations, lsq_residual=res.residual,
               lsq_residual_check=_normal_residual(pairs, m, res.scores),
               lsqr_s=min(t_lsqr), lsqr_s_all=t_lsqr, lsqr_iters=int(it_l),
               lsqr_residual=_normal_residual(pairs, m, x_l),
               max_abs_diff=float(np.abs(res.scores - x_l).max()))
    row["speedup"] = row["lsqr_s"] / row["lsq_s"]
    if n <= 2000:
        a = np.zeros((len(pairs), n)); a[np.arange(len(pairs)), pairs[:, 0]] = 1; a[np.arange(len(pairs)), pairs[:, 1]] = -1
        t = time.perf_counter(); np.linalg.lstsq(a, m, rcond=None); row["dense_lstsq_s"] = time.perf_counter() - t
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def bench_recovery(name: str, sigma: float, seed: int = 0, steps: int = 10) -> list[dict]:
    """Every sampler x aggregator on one benchmark's MOS with simulated noisy margins."""
    mos = load_mos(name)
    n = len(mos)
    rows = []
    for sname, cls in ranking.SAMPLERS.items():
        rng = np.random.default_rng(seed + 1)
        oracle = lambda q: mos[q[:, 0]] - mos[q[:, 1]] + sigma * rng.normal(size=len(q))  # noqa: E731
        pairs, margins = ranking.run_comparisons(oracle, n, sampler=cls(n, seed=seed))
        conv = ranking.convergence(pairs, margins, mos, ["lsq", "elo", "winrate", "bt"], steps=steps)
        lsq = ranking.lsq_scores(pairs, margins, n)
        rmse = float(np.sqrt(np.mean((lsq - (mos - mos.mean())) ** 2)))
        bound = sigma / np.sqrt(2 * len(pairs) / n)  # σ/√(average degree)
        for agg in conv.curves:
            rows.append({"benchmark": name, "n": n, "sigma": sigma, "sampler": sname, "aggregator": agg,
                         "srcc": conv.curves[agg]["srcc"][-1], "plcc": conv.curves[agg]["plcc"][-1],
                         "stable_srcc_edges": conv.stable_at[agg]["srcc"],
                         "stable_plcc_edges": conv.stable_at[agg]["plcc"],
                         "lsq_rmse": rmse, "rmse_bound": bound})
    return rows


def _table(rows: list[dict], keys: list[str]) -> str:
    lines = [" | ".join(f"{k:>12}" for k in keys)]
    for r in rows:
        lines.append(" | ".join(f"{r[k]:>12.4g}" if isinstance(r[k], float) else f"{r[k]!s:>12}" for k in keys))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """CLI entry point; returns the JSON-ready results."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, KoNViD-1k only, sigma 0.3")
    ap.add_argument("--huge", action="store_true", help="also time N = 10^7")
    ap.add_argument("--out", type=Path, default=RESULTS / "ranking_bench.json")
    args = ap.parse_args(argv)
    sizes = [10**3, 10**4] if args.quick else [10**4, 10**5, 10**6] + ([10**7] if args.huge else [])
    speed = [bench_speed(n) for n in sizes]
    print(_table(speed, ["n", "edges", "lsq_s", "lsq_iters", "lsq_residual", "lsqr_s", "lsqr_iters",
                         "lsqr_residual", "speedup", "peak_rss_mb"]))
    names = ["konvid1k"] if args.quick else list(BENCHES)
    sigmas = [0.3] if args.quick else [0.3, 0.6]
    rec = [r for name in names for s in sigmas for r in bench_recovery(name, s)]
    print(_table(rec, ["benchmark", "sigma", "sampler", "aggregator", "srcc", "plcc",
                       "stable_srcc_edges", "lsq_rmse", "rmse_bound"]))
    out = {"speed": speed, "recovery": rec, "quick": args.quick}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
