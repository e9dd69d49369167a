"""`make ablations`: the paper's Table 2 on the synthetic benchmark, every row x seeds, on the CPU.

    python -m benchmarks.ablations                           # all rows x seeds 0 1 2 (resumable)
    python -m benchmarks.ablations --variants mcgrpo grpo --seeds 0
    python -m benchmarks.ablations --sft-steps 150 --grpo-steps 40   # the step budget per phase
    python -m benchmarks.ablations --parallel 3              # the seeds in 3 processes at once
    python -m benchmarks.ablations --tables-only             # table2.md again from the JSON
    python -m benchmarks.ablations --quick --out /tmp/abl    # minute-scale smoke (the test's)

Every row is trained and tested by plain ``run.py`` commands (printed as they run) stacking
``conf/ablations/<row>.yaml`` over ``conf/tiny.yaml`` (paper Sec. 4.3, App. B), with ``make
demo``'s recipe: its synthetic benchmark (``--size small --design crisp``, seed 0), the committed
pre-trained tiny SlowFast of ``conf/tiny.yaml`` and its SFT curriculum (each row's SFT starts from
a warm-up of the same row without rationales, ``TRAIN_JOBS``; ``--sft-steps`` counts each half):

* scoring target: pointwise / pairwise x NTP / head, each SFT then GRPO from that checkpoint
  with a 1:4 ratio of SFT to GRPO data (``--grpo-ratio``); the pairwise head row is MC-GRPO;
* score recovery: win-rate, Elo, LSQ of the SAME comparisons of the MC-GRPO model (one test
  run computes every aggregator);
* training recipe: SFT without / with reasoning (same data and steps), GRPO from the SFT with
  the head frozen and no auxiliary term, MC-GRPO.

Jobs live in ``<out>/seed<S>/<job>/`` (TensorBoard logs, checkpoints, ``eval/``) and are kept; a
job whose ``done.json`` exists is skipped, an unfinished one is started again. Outputs:
``benchmarks/results/ablations.json`` = ``{"records": [{"variant", "seed", "split", "srcc",
"plcc"}, ...]}`` (records of other variants/seeds already there are kept) and ``table2.md``
beside it (mean ± std over seeds, the paper's layout). Step counts default to the configs':
SFT ``trainer.max_steps`` of ``conf/tiny.yaml``, GRPO from the data ratio. Run with
``OMP_NUM_THREADS=1`` per process (set here for the child runs).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

if __package__ in (None, ""):  # `python benchmarks/ablations.py`: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import table2  # noqa: E402
from benchmarks.ablation_procs import ensure_data, run_job, run_seeds_in_parallel  # noqa: E402
from callbacks import tables  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
RESULTS = ROOT / "benchmarks" / "results" / "ablations.json"
#: Train jobs: name -> (phase, conf/ablations overlays stacked in order, job whose checkpoint it
#: starts from). SFT follows make demo's curriculum: every row's SFT starts from a warm-up of the
#: same row without rationales (``sft_no_reasoning.yaml`` stacked last), the same number of steps;
#: "SFT w/o Reasoning" continues that warm-up without rationales, so both recipe rows see the same
#: pairs and steps and differ only in the rationales of the second half.
TRAIN_JOBS: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "warmup_pointwise_ntp": ("sft", ("pointwise_ntp", "sft_no_reasoning"), None),
    "warmup_pointwise_head": ("sft", ("pointwise_head", "sft_no_reasoning"), None),
    "warmup_pairwise_ntp": ("sft", ("pairwise_ntp", "sft_no_reasoning"), None),
    "warmup": ("sft", ("sft_no_reasoning",), None),
    "sft_pointwise_ntp": ("sft", ("pointwise_ntp",), "warmup_pointwise_ntp"),
    "sft_pointwise_head": ("sft", ("pointwise_head",), "warmup_pointwise_head"),
    "sft_pairwise_ntp": ("sft", ("pairwise_ntp",), "warmup_pairwise_ntp"),
    "sft_reasoning": ("sft", ("sft_reasoning",), "warmup"),
    "sft_no_reasoning": ("sft", ("sft_no_reasoning",), "warmup"),
    "grpo_pointwise_ntp": ("mcgrpo", ("pointwise_ntp",), "sft_pointwise_ntp"),
    "grpo_pointwise_head": ("mcgrpo", ("pointwise_head",), "sft_pointwise_head"),
    "grpo_pairwise_ntp": ("mcgrpo", ("pairwise_ntp",), "sft_pairwise_ntp"),
    "grpo": ("mcgrpo", ("grpo_from_sft",), "sft_reasoning"),
    "mcgrpo": ("mcgrpo", ("mcgrpo",), "sft_reasoning"),
}
#: Table 2 rows: variant -> (section, label, train job tested, aggregator read from its results).
VARIANTS: dict[str, tuple[str, str, str, str]] = {
    "pointwise_ntp": (tables.SCORING, "Pointwise Score (NTP)", "grpo_pointwise_ntp", "direct"),
    "pointwise_head": (tables.SCORING, "Pointwise Score (head)", "grpo_pointwise_head", "direct"),
    "pairwise_ntp": (tables.SCORING, "Pairwise Margin (NTP)", "grpo_pairwise_ntp", "lsq"),
    "pairwise_head": (tables.SCORING, "Pairwise Margin (head)", "mcgrpo", "lsq"),
    "winrate": (tables.RECOVERY, tables.AGGREGATOR_LABELS["winrate"], "mcgrpo", "winrate"),
    "elo": (tables.RECOVERY, tables.AGGREGATOR_LABELS["elo"], "mcgrpo", "elo"),
    "lsq": (tables.RECOVERY, tables.AGGREGATOR_LABELS["lsq"], "mcgrpo", "lsq"),
    "sft_no_reasoning": (tables.RECIPE, "SFT w/o Reasoning", "sft_no_reasoning", "lsq"),
    "sft_reasoning": (tables.RECIPE, "SFT w/ Reasoning", "sft_reasoning", "lsq"),
    "grpo": (tables.RECIPE, "GRPO from SFT", "grpo", "lsq"),
    "mcgrpo": (tables.RECIPE, "MC-GRPO from SFT", "mcgrpo", "lsq"),
}


# ---------------------------------------------------------------------------- configs
def merged_config(*files: Path) -> dict[str, Any]:
    """The YAML files deep-merged in order (later wins; lists are replaced, as jsonargparse does).

    >>> merged_config()
    {}
    """
    out: dict[str, Any] = {}
    for file in files:
        _merge(out, yaml.safe_load(file.read_text(encoding="utf-8")) or {})
    return out


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def phase_config(phase: str, overlays: Sequence[str] = ()) -> dict[str, Any]:
    """What ``run.py`` stacks for a job: base, model, the phase file, tiny, the row's overlays."""
    files = [CONF / "base.yaml", CONF / "model.yaml", CONF / f"{phase}.yaml", CONF / "tiny.yaml"]
    return merged_config(*files, *(CONF / "ablations" / f"{o}.yaml" for o in overlays))


def items_per_step(config: Mapping[str, Any]) -> int:
    """Training items (pairs / videos / prompts) per optimiser step of a merged config.

    >>> items_per_step({"data": {"init_args": {"batch_size": 4}}, "trainer": {}})
    4
    """
    batch = int(config["data"]["init_args"]["batch_size"])
    return batch * int(config["trainer"].get("accumulate_grad_batches") or 1)


def default_steps(grpo_ratio: float) -> tuple[int, int]:
    """``(SFT steps, GRPO steps)`` of the configs: SFT's ``trainer.max_steps``; GRPO prompts =
    ``grpo_ratio`` x SFT items (paper App. B: ~1:4), at the GRPO phase's items per step."""
    sft, grpo = phase_config("sft"), phase_config("mcgrpo")
    sft_steps = int(sft["trainer"]["max_steps"])
    return sft_steps, max(1, round(grpo_ratio * sft_steps * items_per_step(sft) / items_per_step(grpo)))


def data_overrides(data: Path | None) -> list[str]:
    """``--data`` options moving the tiny overlay's sets to another synthetic folder (``None``: none).

    The sets themselves (names, splits, groups) stay ``conf/tiny.yaml``'s; only paths under its
    training folder move.
    """
    if data is None:
        return []
    init = phase_config("sft")["data"]["init_args"]
    home = Path(init["train_sets"][0]["label_file"]).parent
    args = []
    for key in ("train_sets", "val_sets", "test_sets"):
        specs = [
            {
                k: str(data / Path(v).relative_to(home)) if k in ("label_file", "video_root") and v else v
                for k, v in spec.items()
            }
            for spec in init[key]
        ]
        args.append(f"--data.init_args.{key}={json.dumps(specs)}")
    return args


def split_groups() -> dict[str, str]:
    """Test split name -> ``in_domain`` / ``out_of_domain`` (``conf/tiny.yaml``'s test sets)."""
    specs = phase_config("eval")["data"]["init_args"]["test_sets"]
    return {s["name"]: s.get("group", tables.IN_DOMAIN) for s in specs}


# ---------------------------------------------------------------------------- jobs
def job_dir(out: Path, seed: int, job: str) -> Path:
    """Folder of one job: TensorBoard ``version_0/`` (checkpoints, ``eval/``), journals, logs."""
    return out / f"seed{seed}" / job


def last_checkpoint(out: Path, seed: int, job: str) -> Path:
    """The ``last.ckpt`` a train job leaves."""
    return job_dir(out, seed, job) / "version_0" / "checkpoints" / "last.ckpt"


def _place(out: Path, seed: int, job: str) -> list[str]:
    return [
        f"--trainer.default_root_dir={job_dir(out, seed, job)}",
        f"--trainer.logger.init_args.save_dir={out / f'seed{seed}'}",
        f"--trainer.logger.init_args.name={job}",
        "--trainer.logger.init_args.version=0",
    ]


def fit_command(job: str, seed: int, out: Path, steps: int, extra: Sequence[str]) -> list[str]:
    """``run.py fit`` of a train job: the phase file, tiny, the row's overlays; ``steps`` optimiser
    steps over ``steps`` x items-per-step fresh pairs (pointwise rows cycle their videos)."""
    phase, overlays, parent = TRAIN_JOBS[job]
    items = steps * items_per_step(phase_config(phase, overlays))
    cmd = [
        sys.executable,
        str(ROOT / "run.py"),
        "fit",
        "--config",
        str(CONF / f"{phase}.yaml"),
        "--config",
        str(CONF / "tiny.yaml"),
        *(arg for o in overlays for arg in ("--config", str(CONF / "ablations" / f"{o}.yaml"))),
        f"--seed_everything={seed}",
        f"--model.init_args.seed={seed}",
        f"--data.init_args.pair_seed={seed}",
        f"--trainer.max_steps={steps}",
        "--trainer.max_epochs=-1",
        "--trainer.limit_val_batches=0",
        f"--data.init_args.num_train_pairs={items}",
        *_place(out, seed, job),
        *extra,
    ]
    if parent:
        cmd.append(f"--model.init_args.init_from={last_checkpoint(out, seed, parent)}")
    return cmd


def eval_command(job: str, seed: int, out: Path, extra: Sequence[str]) -> list[str]:
    """``run.py test`` of a train job's checkpoint: every aggregator on the same comparisons."""
    return [
        sys.executable,
        str(ROOT / "run.py"),
        "test",
        "--config",
        str(CONF / "eval.yaml"),
        "--config",
        str(CONF / "tiny.yaml"),
        f"--ckpt_path={last_checkpoint(out, seed, job)}",
        f"--seed_everything={seed}",
        *_place(out, seed, f"test_{job}"),
        *extra,
    ]


def train(job: str, seed: int, out: Path, steps: Mapping[str, int], extra: Sequence[str]) -> None:
    """Train ``job`` and, first, the job its checkpoint starts from."""
    phase, _, parent = TRAIN_JOBS[job]
    if parent:
        train(parent, seed, out, steps, extra)
    run_job(fit_command(job, seed, out, steps[phase], extra), job_dir(out, seed, job))


def records_of(out: Path, seed: int, variant: str) -> list[dict[str, Any]]:
    """One record per test split of a finished variant/seed (its test job's ``results.csv``)."""
    _, _, job, aggregator = VARIANTS[variant]
    csv_path = job_dir(out, seed, f"test_{job}") / "version_0" / "eval" / "results.csv"
    rows = [r for r in tables.read_csv(csv_path) if r["aggregator"] == aggregator]
    if not rows:
        raise ValueError(f"{csv_path}: no {aggregator!r} rows (variant {variant})")
    return [
        {
            "variant": variant,
            "seed": seed,
            "split": r["benchmark"],
            "srcc": _finite(r["srcc"]),
            "plcc": _finite(r["plcc"]),
        }
        for r in rows
    ]


def _finite(value: Any) -> float | None:
    x = float(value) if value not in (None, "") else math.nan
    return x if math.isfinite(x) else None


def run_matrix(
    variants: Sequence[str], seeds: Sequence[int], out: Path, steps: Mapping[str, int], extra: Sequence[str]
) -> list[dict[str, Any]]:
    """Train and test what ``variants`` x ``seeds`` need (finished jobs skipped); their records."""
    records = []
    for seed in seeds:
        for job in dict.fromkeys(VARIANTS[v][2] for v in variants):  # each tested job once
            train(job, seed, out, steps, extra)
            run_job(eval_command(job, seed, out, extra), job_dir(out, seed, f"test_{job}"))
        for variant in variants:
            records += records_of(out, seed, variant)
    return records


def merge_records(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``new`` replaces ``old``'s records of the same (variant, seed); sorted by row, seed, split.

    >>> merge_records([{"variant": "elo", "seed": 0, "split": "a"}], [{"variant": "lsq", "seed": 0,
    ...               "split": "a"}])[0]["variant"]
    'elo'
    """
    fresh = {(r["variant"], r["seed"]) for r in new}
    kept = [dict(r) for r in old if (r["variant"], r["seed"]) not in fresh] + [dict(r) for r in new]
    order = list(VARIANTS)
    return sorted(kept, key=lambda r: (order.index(r["variant"]), r["seed"], r["split"]))


# ---------------------------------------------------------------------------- table
def table2_markdown(records: Sequence[Mapping[str, Any]], groups: Mapping[str, str]) -> str:
    """The paper's Table 2 layout from ablation records (``benchmarks/table2.py``), rows ``VARIANTS``."""
    return table2.markdown(records, groups, VARIANTS)


def write_outputs(records: Sequence[Mapping[str, Any]], results: Path) -> Path:
    """``results`` (JSON records) and ``table2.md`` beside it (with the claims); the table's path."""
    return table2.write(records, results, split_groups(), VARIANTS)


# ---------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options (``--quick`` changes the defaults to a minute-scale smoke run)."""
    p = argparse.ArgumentParser(description="Table 2 ablations on the synthetic benchmark (CPU).")
    p.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=None,
        help="rows to run (default: all; --quick: sft_no_reasoning)",
    )
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="default 0 1 2 (--quick: 0)")
    p.add_argument("--sft-steps", type=int, default=None, help="default: conf/tiny.yaml trainer.max_steps")
    p.add_argument("--grpo-steps", type=int, default=None, help="default: --grpo-ratio x SFT items")
    p.add_argument("--grpo-ratio", type=float, default=4.0, help="GRPO prompts per SFT item (App. B: ~4)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="rationale budget (default: the configs')")
    p.add_argument("--out", type=Path, default=None, help="job folders (default outputs/ablations)")
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="synthetic benchmark folder (default: conf/tiny.yaml's; --quick: <out>/data, tiny size)",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=None,
        help=f"records JSON (default {RESULTS.relative_to(ROOT)}; --quick: <out>/ablations.json)",
    )
    p.add_argument("--parallel", type=int, default=1, help="seeds run at once, one process each (1 thread)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 steps per phase, tiny data, 16 tokens")
    p.add_argument("--tables-only", action="store_true", help="rebuild table2.md from the records JSON")
    args = p.parse_args(argv)
    quick = args.quick
    args.out = (args.out or ROOT / "outputs" / ("ablations_quick" if quick else "ablations")).resolve()
    args.results = args.results or (args.out / "ablations.json" if quick else RESULTS)
    args.variants = args.variants or (["sft_no_reasoning"] if quick else list(VARIANTS))
    args.seeds = args.seeds if args.seeds is not None else ([0] if quick else [0, 1, 2])
    if quick:
        args.data = args.data or args.out / "data"
        args.sft_steps, args.grpo_steps = args.sft_steps or 2, args.grpo_steps or 2
        args.max_new_tokens = args.max_new_tokens or 16
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the requested rows x seeds (resumable), then write the records JSON and table2.md."""
    args = parse_args(argv)
    old = json.loads(args.results.read_text())["records"] if args.results.is_file() else []
    if args.tables_only:
        print(f"[ablations] {write_outputs(old, args.results)} from {len(old)} records")
        return 0
    sft_steps, grpo_steps = default_steps(args.grpo_ratio)
    steps = {"sft": args.sft_steps or sft_steps, "mcgrpo": args.grpo_steps or grpo_steps}
    home = Path(phase_config("sft")["data"]["init_args"]["train_sets"][0]["label_file"]).parent
    data = args.data.resolve() if args.data else None
    ensure_data(data or ROOT / home, "tiny" if args.quick else "small")
    extra = data_overrides(data)
    if args.max_new_tokens:
        extra.append(f"--model.init_args.max_new_tokens={args.max_new_tokens}")
    print(
        f"[ablations] variants {args.variants} x seeds {args.seeds}; steps per phase {steps}; jobs under {args.out}",
        flush=True,
    )
    start = time.perf_counter()
    if args.parallel > 1 and len(args.seeds) > 1:
        run_seeds_in_parallel(args, steps)  # then run_matrix finds every job done and collects
    records = merge_records(old, run_matrix(args.variants, args.seeds, args.out, steps, extra))
    table = write_outputs(records, args.results)
    print(table.read_text(encoding="utf-8"))
    print(f"[ablations] {args.results} ({len(records)} records), {table}; {time.perf_counter() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
