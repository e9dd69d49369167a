"""The processes of ``benchmarks/ablations.py``: one job (resumable), the benchmark, seeds in parallel."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _single_threaded_env() -> dict[str, str]:
    """This environment with ``OMP_NUM_THREADS=1`` unless the caller set it: the jobs are single-threaded."""
    return {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def run_job(cmd: list[str], folder: Path) -> bool:
    """Run ``cmd`` once: skipped when ``folder/done.json`` exists, an unfinished folder is cleared.

    Returns whether it ran. The child's output goes to ``folder/run.log``; a failure raises
    ``RuntimeError`` with that file's tail.
    """
    done = folder / "done.json"
    if done.exists():
        print(f"[ablations] {folder.relative_to(folder.parents[1])}: done, skipped", flush=True)
        return False
    if folder.exists():
        for path in sorted(folder.rglob("*"), reverse=True):  # an unfinished run: start it again
            path.unlink() if path.is_file() or path.is_symlink() else path.rmdir()
    folder.mkdir(parents=True, exist_ok=True)
    print(f"[ablations] {' '.join(cmd[1:])}", flush=True)
    start = time.perf_counter()
    env = _single_threaded_env()
    with open(folder / "run.log", "w", encoding="utf-8") as log:
        code = subprocess.call(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if code != 0:
        tail = (folder / "run.log").read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"job failed (exit {code}) after {seconds:.0f}s: {folder}\n{tail}")
    done.write_text(json.dumps({"command": cmd[1:], "seconds": round(seconds, 1)}, indent=1))
    print(f"[ablations]   finished in {seconds:.0f}s", flush=True)
    return True


def ensure_data(data: Path, size: str) -> None:
    """Generate ``make demo``'s synthetic benchmark (seed 0, ``--design crisp``) into ``data``.

    The generator reuses a complete set made with the same settings and remakes any other, so a
    folder of an older design is not silently trained on.
    """
    print(f"[ablations] synthetic benchmark ({size}, crisp) -> {data}", flush=True)
    workers = "1" if size == "tiny" else "2"
    done = subprocess.run(
        [sys.executable, "-m", "datamodules.synthetic", "--out", str(data), "--seed", "0", "--size", size]
        + ["--design", "crisp", "--workers", workers],
        cwd=ROOT,
        stderr=subprocess.PIPE,  # the progress bar; its tail goes into the error
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"generating the synthetic benchmark into {data} failed: {done.stderr[-2000:]}")


def seed_command(args: argparse.Namespace, seed: int, steps: Mapping[str, int]) -> list[str]:
    """This script for one seed, with the parent's rows, steps and folders (``--parallel``)."""
    cmd = [sys.executable, "-m", "benchmarks.ablations", "--seeds", str(seed), "--variants", *args.variants]
    cmd += ["--out", str(args.out), "--results", str(args.out / f"seed{seed}" / "records.json")]
    cmd += ["--sft-steps", str(steps["sft"]), "--grpo-steps", str(steps["mcgrpo"])]
    cmd += ["--data", str(args.data)] if args.data else []
    cmd += ["--max-new-tokens", str(args.max_new_tokens)] if args.max_new_tokens else []
    return cmd + (["--quick"] if args.quick else [])


def run_seeds_in_parallel(args: argparse.Namespace, steps: Mapping[str, int]) -> None:
    """Every seed's jobs in a process of its own, ``args.parallel`` at a time (``OMP_NUM_THREADS=1``
    each: the jobs are single-threaded, so N seeds use N cores). Output: ``<out>/seed<S>/ablations.log``.
    Raises RuntimeError naming the failed seeds and their logs once every process has ended."""
    pending, running, failed = list(args.seeds), [], []
    env = _single_threaded_env()
    while pending or running:
        while pending and len(running) < args.parallel:
            seed = pending.pop(0)
            log_path = args.out / f"seed{seed}" / "ablations.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 -- closed when the process ends
            proc = subprocess.Popen(seed_command(args, seed, steps), cwd=ROOT, env=env, stdout=log, stderr=log)
            running.append((seed, proc, log, log_path))
            print(f"[ablations] seed {seed}: process {proc.pid}, log {log_path}", flush=True)
        time.sleep(1.0)
        for item in [r for r in running if r[1].poll() is not None]:
            running.remove(item)
            item[2].close()
            print(f"[ablations] seed {item[0]}: exit {item[1].returncode}", flush=True)
            if item[1].returncode:
                failed.append(f"seed {item[0]} (exit {item[1].returncode}, {item[3]})")
    if failed:
        raise RuntimeError("ablation seeds failed: " + "; ".join(failed))
