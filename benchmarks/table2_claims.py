"""The paper's Table 2 claims checked against ablation records, with effect sizes and seed spread.

Each claim compares two variants of ``benchmarks/ablations.py`` on the mean SRCC over a split
group (in-domain or out-of-domain), paired by seed: the effect is the mean over seeds of
``SRCC(a) - SRCC(b)`` and the spread the standard deviation of that difference over seeds. A
claim is *held* when the effect is positive and larger than the spread, *reversed* when it is
negative and larger than the spread; otherwise a strict claim (``a > b``) is *not
distinguishable* and a weak one (``a >= b``) *not contradicted* (within the seed spread). A claim with an undefined SRCC (N/A: e.g. Elo on
a model whose margins are all draws) is *undefined*.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

#: (a, relation, b, group, the paper's wording)
CLAIMS: tuple[tuple[str, str, str, str, str], ...] = (
    ("pairwise_head", ">", "pointwise_head", "out_of_domain", "pairwise > pointwise out of domain (head)"),
    ("pairwise_ntp", ">", "pointwise_ntp", "out_of_domain", "pairwise > pointwise out of domain (NTP)"),
    ("pairwise_head", ">", "pairwise_ntp", "out_of_domain", "head > NTP (pairwise, out of domain)"),
    ("pointwise_head", ">", "pointwise_ntp", "out_of_domain", "head > NTP (pointwise, out of domain)"),
    ("lsq", ">", "elo", "out_of_domain", "LSQ > Elo (out of domain)"),
    ("elo", ">", "winrate", "out_of_domain", "Elo > win-rate (out of domain)"),
    ("mcgrpo", ">=", "grpo", "out_of_domain", "MC-GRPO >= GRPO (out of domain)"),
    ("grpo", ">=", "sft_reasoning", "out_of_domain", "GRPO >= SFT with reasoning (out of domain)"),
    ("sft_reasoning", ">", "sft_no_reasoning", "out_of_domain", "SFT with reasoning > without (out of domain)"),
    ("sft_reasoning", ">", "sft_no_reasoning", "in_domain", "SFT with reasoning > without (in domain)"),
)


def group_means(records: Sequence[Mapping[str, Any]], groups: Mapping[str, str]) -> dict[tuple[str, int, str], float]:
    """``(variant, seed, group) -> mean SRCC`` over the group's splits (NaN if any split is N/A).

    >>> recs = [{"variant": "a", "seed": 0, "split": "x", "srcc": 0.2},
    ...         {"variant": "a", "seed": 0, "split": "y", "srcc": 0.4}]
    >>> group_means(recs, {"x": "out_of_domain", "y": "out_of_domain"})
    {('a', 0, 'out_of_domain'): 0.30000000000000004}
    """
    cells: dict[tuple[str, int, str], list[float]] = {}
    for r in records:
        group = groups.get(str(r["split"]))
        if group is None:
            continue
        value = math.nan if r.get("srcc") is None else float(r["srcc"])
        cells.setdefault((str(r["variant"]), int(r["seed"]), group), []).append(value)
    return {k: (math.nan if any(math.isnan(v) for v in vs) else sum(vs) / len(vs)) for k, vs in cells.items()}


def verdict(diffs: Sequence[float], relation: str) -> tuple[str, float, float]:
    """``(verdict, effect, spread)`` of paired per-seed differences ``a - b``.

    >>> verdict([0.3, 0.25, 0.35], ">")[0], verdict([0.01, -0.02, 0.02], ">")[0]
    ('held', 'not distinguishable')
    >>> verdict([-0.3, -0.25, -0.35], ">=")[0], verdict([0.0, -0.01, 0.01], ">=")[0]
    ('reversed', 'not contradicted')
    >>> verdict([float("nan"), 0.1], ">")[0]
    'undefined'
    """
    if not diffs or any(math.isnan(d) for d in diffs):
        return "undefined", math.nan, math.nan
    effect = statistics.fmean(diffs)
    spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    if effect < 0 and -effect > spread:
        return "reversed", effect, spread
    if effect > 0 and effect > spread:
        return "held", effect, spread
    return ("not contradicted" if relation == ">=" else "not distinguishable"), effect, spread


def check_claims(records: Sequence[Mapping[str, Any]], groups: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every claim of :data:`CLAIMS` with the seeds both variants have: verdict, effect, spread."""
    means = group_means(records, groups)
    out = []
    for a, relation, b, group, text in CLAIMS:
        seeds = sorted(
            {s for (v, s, g) in means if v == a and g == group} & {s for (v, s, g) in means if v == b and g == group}
        )
        diffs = [means[(a, s, group)] - means[(b, s, group)] for s in seeds]
        result, effect, spread = verdict(diffs, relation)
        out.append(
            {
                "claim": text,
                "a": a,
                "b": b,
                "group": group,
                "seeds": seeds,
                "verdict": result,
                "effect": effect,
                "spread": spread,
            }
        )
    return out


def claims_markdown(claims: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table of :func:`check_claims`' rows."""
    lines = [
        "| claim (paper) | effect: mean SRCC difference | seed spread (std) | seeds | verdict |",
        "|---|---|---|---|---|",
    ]
    for c in claims:
        effect = "N/A" if math.isnan(c["effect"]) else f"{c['effect']:+.3f}"
        spread = "N/A" if math.isnan(c["spread"]) else f"{c['spread']:.3f}"
        lines.append(f"| {c['claim']} | {effect} | {spread} | {len(c['seeds'])} | {c['verdict']} |")
    return "\n".join(lines) + "\n"
