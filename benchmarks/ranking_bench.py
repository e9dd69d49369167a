"""Ranking benchmarks: LSQ solver speed vs scipy lsqr, and score recovery on real MOS labels.

    python benchmarks/ranking_bench.py                      # both parts (N = 1e4..1e6)
    python benchmarks/ranking_bench.py --parts recovery     # the sampler comparison only
    python benchmarks/ranking_bench.py --quick              # small: N <= 1e4; KoNViD-1k, σ 0.3, 1 seed
    python benchmarks/ranking_bench.py --huge               # speed also at N = 1e7
    python benchmarks/ranking_bench.py --parts recovery --batch-size 16 --benchmarks konvid1k \
        --out /tmp/b16.json                                 # the evaluation callback's batch size

Recovery: on the bundled label lists of the paper's seven test sets (MOS on [1, 5]) a simulated
model answers ``margin = (mos_i - mos_j) + N(0, σ²)``; every sampler spends the 5N budget
(:func:`ranking.run_comparisons`, its default batch size) and LSQ / Elo / win-rate / BT (draw
threshold 0.2) recover the scores; per run: SRCC, PLCC, stability point of the Fig. 4 curves,
connected components of the final graph. ``appendix_a_lsq`` is the strict sampler with LSQ
provisional ratings (the alternative its docstring weighs).

Small: leaderboards of N = 12..100 videos (random KoNViD-1k subsets, batch 8 as at predict):
how often each sampler leaves the graph disconnected or stops short of its 5N budget.

Each part replaces its own key of benchmarks/results/ranking_bench.json (the other part keeps
its last measured value) and prints its tables.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's packages first

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from scipy.sparse.linalg import lsqr  # noqa: E402

import ranking  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
#: the paper's seven test sets (Sec. 4.1), by their ``datamodules.benchmarks`` names
BENCHES = ("lsvq_test", "lsvq_1080p", "konvid1k", "live_vqc", "yt_gaming", "waterloo_4k", "vdpve")
AGGREGATORS = ranking.AGGREGATOR_NAMES
SAMPLER_VARIANTS: dict[str, Callable[..., ranking.BaseSampler]] = {
    **ranking.SAMPLERS,
    "appendix_a_lsq": partial(ranking.AppendixASampler, provisional="lsq"),
}


def load_mos(name: str) -> np.ndarray:
    """MOS in [1, 5] of a benchmark's bundled label list (its test split for LSVQ)."""
    from datamodules.benchmarks import read_benchmark

    return np.asarray(read_benchmark(name).mos, dtype=np.float64)


def connected_graph(n: int, seed: int = 0) -> np.ndarray:
    """A random spanning cycle plus 4N random edges: 5N edges, connected."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    extra = rng.integers(0, n, (4 * n, 2))
    same = extra[:, 0] == extra[:, 1]
    extra[same, 1] = (extra[same, 1] + 1) % n
    return np.concatenate([np.stack([perm, np.roll(perm, 1)], 1), extra])


def _lsqr_from_edges(pairs: np.ndarray, m: np.ndarray, n: int, atol: float) -> tuple:
    e = len(pairs)
    a = sp.csr_matrix(
        (np.concatenate([np.ones(e), -np.ones(e)]), (np.tile(np.arange(e), 2), pairs.T.ravel())), shape=(e, n)
    )
    out = lsqr(a, m, atol=atol, btol=atol, iter_lim=10000)
    return out[0] - out[0].mean(), out[2]


def _normal_residual(pairs: np.ndarray, m: np.ndarray, x: np.ndarray) -> float:
    """True relative residual of the normal equations ``||A^T(m - A x)|| / ||A^T m||``."""
    n = len(x)

    def at(v: np.ndarray) -> np.ndarray:
        return np.bincount(pairs[:, 0], v, n) - np.bincount(pairs[:, 1], v, n)

    return float(np.linalg.norm(at(m - (x[pairs[:, 0]] - x[pairs[:, 1]]))) / np.linalg.norm(at(m)))


def _timed(func: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    value = func()
    return value, time.perf_counter() - start


def bench_speed(n: int, repeats: int = 2) -> dict:
    """Time LSQ (ours) and lsqr, both from the edge list, on one graph; best of ``repeats``."""
    pairs = connected_graph(n)
    rng = np.random.default_rng(1)
    m = rng.normal(size=n)[pairs[:, 0]] + rng.normal(size=len(pairs))
    row: dict = {"n": n, "edges": len(pairs)}
    t_ours, t_lsqr = [], []
    for _ in range(repeats):
        res, t = _timed(lambda: ranking.lsq_solve(pairs, m, n))
        t_ours.append(t)
        (x_l, it_l), t = _timed(lambda: _lsqr_from_edges(pairs, m, n, 1e-8))
        t_lsqr.append(t)
    row.update(
        lsq_s=min(t_ours),
        lsq_s_all=t_ours,
        lsq_iters=res.iterations,
        lsq_residual=res.residual,
        lsq_residual_check=_normal_residual(pairs, m, res.scores),
        lsqr_s=min(t_lsqr),
        lsqr_s_all=t_lsqr,
        lsqr_iters=int(it_l),
        lsqr_residual=_normal_residual(pairs, m, x_l),
        max_abs_diff=float(np.abs(res.scores - x_l).max()),
    )
    row["speedup"] = row["lsqr_s"] / row["lsq_s"]
    if n <= 2000:
        a = np.zeros((len(pairs), n))
        a[np.arange(len(pairs)), pairs[:, 0]] = 1
        a[np.arange(len(pairs)), pairs[:, 1]] = -1
        row["dense_lstsq_s"] = _timed(lambda: np.linalg.lstsq(a, m, rcond=None))[1]
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def bench_recovery(
    name: str,
    sigma: float,
    seed: int = 0,
    steps: int = 10,
    samplers: Sequence[str] = tuple(SAMPLER_VARIANTS),
    mos: np.ndarray | None = None,
    batch_size: int | None = None,
) -> list[dict]:
    """Every sampler x aggregator on one benchmark's MOS with simulated noisy margins.

    One row per (sampler, aggregator): final SRCC/PLCC, the Fig. 4 stability points over
    ``steps`` prefixes (LSQ, Elo, win-rate; ``None`` for BT, whose prefix fits are too slow to
    repeat), the final graph's components (``components``, ``isolated``, ``largest_frac``) and
    the LSQ score RMSE against the centred MOS beside the ``σ / sqrt(average degree)`` bound.
    """
    mos = load_mos(name) if mos is None else mos
    n, funcs = len(mos), ranking.make_aggregators(AGGREGATORS)
    rows = []
    for sname in samplers:
        rng = np.random.default_rng(seed + 1)
        pairs, margins = ranking.run_comparisons(
            lambda q, rng=rng: mos[q[:, 0]] - mos[q[:, 1]] + sigma * rng.normal(size=len(q)),
            n,
            sampler=SAMPLER_VARIANTS[sname](n, seed=seed),
            batch_size=batch_size,
        )
        conv = ranking.convergence(pairs, margins, mos, ["lsq", "elo", "winrate"], steps=steps)
        lsq = ranking.lsq_solve(pairs, margins, n, warn=False)
        graph = {
            "edges": len(pairs),
            "components": lsq.num_components,
            "isolated": len(lsq.isolated),
            "largest_frac": float(lsq.component_sizes.max() / n),
            "lsq_rmse": float(np.sqrt(np.mean((lsq.scores - (mos - mos.mean())) ** 2))),
            "rmse_bound": sigma / np.sqrt(2 * len(pairs) / n),
        }
        for agg, func in funcs.items():
            corr = ranking.correlations(func(pairs, margins, n), mos)
            stable = conv.stable_at.get(agg, {})
            rows.append(
                {
                    "benchmark": name,
                    "n": n,
                    "sigma": sigma,
                    "seed": seed,
                    "sampler": sname,
                    "aggregator": agg,
                    "srcc": corr["srcc"],
                    "plcc": corr["plcc"],
                    "stable_srcc_edges": stable.get("srcc"),
                    "stable_plcc_edges": stable.get("plcc"),
                    **graph,
                }
            )
    return rows


def summarise(rows: Sequence[dict]) -> list[dict]:
    """Per (sampler, σ): mean ± std over benchmarks x seeds of each aggregator's SRCC (PLCC
    for LSQ), the mean share of the budget after which the SRCC of LSQ / Elo / win-rate is
    stable (Fig. 4), and the share of runs whose final graph is disconnected."""
    out = []
    for sampler in dict.fromkeys(r["sampler"] for r in rows):
        for sigma in sorted({r["sigma"] for r in rows}):
            sub = [r for r in rows if r["sampler"] == sampler and r["sigma"] == sigma]
            row: dict = {"sampler": sampler, "sigma": sigma}
            for agg in AGGREGATORS:
                srcc = np.array([r["srcc"] for r in sub if r["aggregator"] == agg])
                row[f"{agg}_srcc"], row[f"{agg}_srcc_std"] = srcc.mean(), srcc.std()
            row["lsq_plcc"] = float(np.mean([r["plcc"] for r in sub if r["aggregator"] == "lsq"]))
            for agg in ("lsq", "elo", "winrate"):  # Fig. 4: SRCC stable after this share of 5N
                row[f"{agg}_stable"] = float(
                    np.mean(
                        [
                            np.nan if r["stable_srcc_edges"] is None else r["stable_srcc_edges"] / r["edges"]
                            for r in sub
                            if r["aggregator"] == agg
                        ]
                    )
                )
            runs = [r for r in sub if r["aggregator"] == "lsq"]
            row["runs"] = len(runs)
            row["disconnected"] = sum(r["components"] > 1 for r in runs) / len(runs)
            out.append(row)
    return out


def paired_gap(rows: Sequence[dict], a: str, b: str) -> list[dict]:
    """``a - b`` SRCC per aggregator and σ, paired by (benchmark, seed): mean, std, min, max."""
    key = {(r["sampler"], r["aggregator"], r["sigma"], r["benchmark"], r["seed"]): r["srcc"] for r in rows}
    out = []
    for sigma in sorted({r["sigma"] for r in rows}):
        for agg in AGGREGATORS:
            d = np.array(
                [
                    v - key[(b, *k[1:])]
                    for k, v in key.items()
                    if k[0] == a and k[1] == agg and k[2] == sigma and (b, *k[1:]) in key
                ]
            )
            if len(d):
                out.append(
                    {
                        "gap": f"{a} - {b}",
                        "sigma": sigma,
                        "aggregator": agg,
                        "mean": d.mean(),
                        "std": d.std(),
                        "min": d.min(),
                        "max": d.max(),
                        "pairs": len(d),
                    }
                )
    return out


def _table(rows: Sequence[dict], keys: Sequence[str]) -> str:
    lines = [" | ".join(f"{k:>14}" for k in keys)]
    for r in rows:
        lines.append(" | ".join(f"{r[k]:>14.4g}" if isinstance(r[k], float) else f"{r[k]!s:>14}" for k in keys))
    return "\n".join(lines)


def run_recovery(
    names: Sequence[str], sigmas: Sequence[float], seeds: Sequence[int], batch_size: int | None = None
) -> dict:
    """The recovery part: rows, summary and the robust - appendix_a gaps; prints the tables."""
    rows = []
    for name in names:
        mos = load_mos(name)
        for sigma in sigmas:
            for seed in seeds:
                start = time.perf_counter()
                rows += bench_recovery(name, sigma, seed, mos=mos, batch_size=batch_size)
                print(f"[recovery] {name} σ={sigma} seed={seed}: {time.perf_counter() - start:.1f} s", flush=True)
    summary = summarise(rows)
    gaps = paired_gap(rows, "robust", "appendix_a")
    print(
        _table(
            summary,
            ["sampler", "sigma", "runs", "lsq_srcc", "lsq_plcc", "bt_srcc", "elo_srcc", "winrate_srcc", "disconnected"],
        )
    )
    print(_table(summary, ["sampler", "sigma", "lsq_stable", "elo_stable", "winrate_stable"]))
    print(_table(gaps, ["gap", "sigma", "aggregator", "mean", "std", "min", "max"]))
    return {
        "rows": rows,
        "summary": summary,
        "gaps": gaps,
        "setup": {
            "benchmarks": list(names),
            "sigmas": list(sigmas),
            "seeds": list(seeds),
            "budget": "5N",
            "draw_threshold": 0.2,
            "batch_size": batch_size or "max(16, N // 10) (run_comparisons default)",
        },
    }


def bench_small(
    sizes: Sequence[int] = (12, 20, 50, 100), runs: int = 20, sigma: float = 0.3, batch_size: int = 8
) -> list[dict]:
    """Small leaderboards (a user's folder at predict, ``batch_size`` as in conf/predict.yaml):
    per sampler and N, over ``runs`` random KoNViD-1k subsets: the share of runs whose graph is
    disconnected or ends short of 5N, and the mean LSQ SRCC."""
    konvid = load_mos("konvid1k")
    out = []
    for n in sizes:
        for sname in ("robust", "appendix_a", "appendix_a_lsq"):
            split = short = 0
            srcc = []
            for run in range(runs):
                rng = np.random.default_rng(run)
                mos = rng.choice(konvid, n, replace=False)
                pairs, margins = ranking.run_comparisons(
                    lambda q, rng=rng, mos=mos: mos[q[:, 0]] - mos[q[:, 1]] + sigma * rng.normal(size=len(q)),
                    n,
                    sampler=SAMPLER_VARIANTS[sname](n, seed=run),
                    batch_size=batch_size,
                )
                lsq = ranking.lsq_solve(pairs, margins, n, warn=False)
                split += lsq.num_components > 1
                short += len(pairs) < 5 * n
                srcc.append(ranking.correlations(lsq.scores, mos)["srcc"])
            out.append(
                {
                    "n": n,
                    "sampler": sname,
                    "runs": runs,
                    "sigma": sigma,
                    "batch_size": batch_size,
                    "disconnected": split / runs,
                    "short_of_budget": short / runs,
                    "lsq_srcc": float(np.mean(srcc)),
                }
            )
    print(_table(out, ["n", "sampler", "runs", "disconnected", "short_of_budget", "lsq_srcc"]))
    return out


def main(argv: list[str] | None = None) -> dict:
    """CLI entry point; returns the JSON-ready results."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--parts", nargs="+", choices=["speed", "recovery", "small"], default=["speed", "recovery", "small"]
    )
    ap.add_argument("--quick", action="store_true", help="small sizes, KoNViD-1k, σ 0.3, 1 seed")
    ap.add_argument("--huge", action="store_true", help="also time N = 10^7")
    ap.add_argument("--seeds", type=int, default=3, help="recovery seeds 0..S-1")
    ap.add_argument("--benchmarks", nargs="+", choices=BENCHES, help="recovery sets (default all)")
    ap.add_argument("--batch-size", type=int, help="pairs per sampler round (default N // 10)")
    ap.add_argument("--out", type=Path, default=RESULTS / "ranking_bench.json")
    args = ap.parse_args(argv)
    out = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if "speed" in args.parts:
        sizes = [10**3, 10**4] if args.quick else [10**4, 10**5, 10**6] + [10**7] * args.huge
        out["speed"] = [bench_speed(n) for n in sizes]
        print(
            _table(
                out["speed"],
                [
                    "n",
                    "edges",
                    "lsq_s",
                    "lsq_iters",
                    "lsq_residual",
                    "lsqr_s",
                    "lsqr_iters",
                    "lsqr_residual",
                    "speedup",
                ],
            )
        )
    if "recovery" in args.parts:
        names = args.benchmarks or (["konvid1k"] if args.quick else BENCHES)
        out["recovery"] = run_recovery(
            names, [0.3] if args.quick else [0.3, 0.6], range(1 if args.quick else args.seeds), args.batch_size
        )
    if "small" in args.parts:
        out["small"] = bench_small(runs=5 if args.quick else 20)
    out.pop("quick", None)  # the settings of each part are in its own entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
