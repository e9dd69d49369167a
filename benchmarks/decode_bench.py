"""Decode benchmark: clips/s, frames/s and peak RSS per backend for ``load_clip`` (8 + 64 frames).

Clip sets: the six real clips in ``../shared/data/videos`` (skipped with a message when absent) and
1080p / 4K clips this script encodes itself with PyAV libx264 into a temporary directory. Each
(backend, set) pair runs in its own subprocess so its peak RSS is attributable; a warm-up decode
(library loading, first-touch allocations) is not timed.

Usage::

    python benchmarks/decode_bench.py [--repeats 2] [--seconds 2] [--backends pyav decord torchcodec]

Writes ``benchmarks/results/decode_bench.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
REAL_DIR = REPO.parent / "shared" / "data" / "videos"
RESULTS = REPO / "benchmarks" / "results" / "decode_bench.json"
BACKENDS = ("pyav", "decord", "torchcodec")
SYNTHETIC = {"1080p": (1920, 1080), "4k": (3840, 2160)}


def encode_synthetic(path: Path, width: int, height: int, seconds: float, fps: int = 30) -> Path:
    """Write a moving-pattern libx264 clip (textured so the decoder does real work)."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23", "g": "60"}
        for i in range(int(seconds * fps)):
            frame = np.roll(texture, shift=(4 * i, 8 * i), axis=(0, 1))  # (H, W, 3) panning texture
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _rss_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(backend: str, clips: list[str], repeats: int) -> dict:
    """Time ``load_clip`` on ``clips`` with one backend (runs inside the subprocess)."""
    sys.path.insert(0, str(REPO))
    from datamodules.video import VideoDecodeError, load_clip

    baseline = _rss_mb("VmRSS")
    try:
        load_clip(clips[0], backend=backend)  # warm-up: library loading, first allocations
    except VideoDecodeError as err:
        return {"backend": backend, "error": err.reason}
    start, frames = time.perf_counter(), 0
    for _ in range(repeats):
        for path in clips:
            clip = load_clip(path, backend=backend)
            frames += clip.frames.shape[0] + clip.motion.shape[0]
    elapsed = time.perf_counter() - start
    n = repeats * len(clips)
    return {
        "backend": backend,
        "clips": n,
        "seconds": round(elapsed, 3),
        "clips_per_s": round(n / elapsed, 3),
        "frames_per_s": round(frames / elapsed, 1),
        "ms_per_clip": round(1000 * elapsed / n, 1),
        "rss_after_import_mb": round(baseline, 1),
        "peak_rss_mb": round(_rss_mb("VmHWM"), 1),
    }


def run_set(backend: str, clips: list[Path], repeats: int) -> dict:
    """Run :func:`worker` in a fresh interpreter so its peak RSS belongs to this backend alone."""
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        backend,
        "--repeats",
        str(repeats),
        *map(str, clips),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return {
            "backend": backend,
            "error": f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}",
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_table(results: dict[str, list[dict]]) -> None:
    """Print one row per (clip set, backend)."""
    print(f"{'set':<7}{'backend':<12}{'clips/s':>9}{'frames/s':>10}{'ms/clip':>9}{'peak RSS MB':>13}{'(import)':>10}")
    for name, rows in results.items():
        for r in rows:
            if "error" in r:
                print(f"{name:<7}{r['backend']:<12}  unavailable/failed: {r['error'][:70]}")
                continue
            print(
                f"{name:<7}{r['backend']:<12}{r['clips_per_s']:>9.2f}{r['frames_per_s']:>10.1f}"
                f"{r['ms_per_clip']:>9.1f}{r['peak_rss_mb']:>13.1f}{r['rss_after_import_mb']:>10.1f}"
            )


def main(argv: list[str] | None = None) -> None:
    """Build the clip sets, benchmark every backend on each, write JSON and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="passes over each clip set")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of the synthetic clips")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("clips", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.clips, args.repeats)))
        return
    sets: dict[str, list[Path]] = {}
    real = sorted(REAL_DIR.glob("*.mp4")) if REAL_DIR.is_dir() else []
    if real:
        sets["real"] = real
    else:
        print(f"real clips not found under {REAL_DIR}: skipping the real set")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (w, h) in SYNTHETIC.items():
            sets[name] = [encode_synthetic(Path(tmp) / f"{name}.mp4", w, h, args.seconds)]
        results = {name: [run_set(b, clips, args.repeats) for b in args.backends] for name, clips in sets.items()}
    report = {
        "command": "python benchmarks/decode_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()} {platform.processor() or ''} cpus={__import__('os').cpu_count()}",
        "workload": "load_clip defaults: 8 uniform frames (short side 224) + 64 dense frames (224x224)",
        "synthetic_seconds": args.seconds,
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print_table(results)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
