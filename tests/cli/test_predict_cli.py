"""``python run.py predict`` end to end with the tiny model on generated clips (+ one corrupt file).

Both tests run the real CLI on CPU (tiny Qwen3-VL-architecture model, no download), ~25 s each;
they are part of the default suite because kill-and-resume is a contract users rely on.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = ["--config", "conf/predict.yaml", "--config", "conf/tiny.yaml"]  # base.yaml: by default


def _write_clips(folder: Path, count: int) -> Path:
    """``count`` small libx264 clips of increasing noise, plus ``broken.mp4`` (not a video)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        rng = np.random.default_rng(k)
        with av.open(str(folder / f"clip{k}.mp4"), "w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            for i in range(20):
                img = np.full((48, 64, 3), 30 * k % 255, np.uint8)
                img[..., 1] = 10 * i
                img = np.clip(img + rng.integers(0, 20 * k + 1, img.shape), 0, 255)
                frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    return folder


def _pairs(journal: Path) -> list[tuple[int, int]]:
    lines = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
    return [(r["i"], r["j"]) for r in lines if r.get("type") == "pair"]


def test_predict_cli_writes_leaderboard_and_lists_bad_video(tmp_path: Path) -> None:
    import run

    videos = _write_clips(tmp_path / "videos", 4)
    with pytest.warns(UserWarning, match="no --ckpt_path"):
        run.main(
            ["predict", *CONFIGS, "--data.videos", str(videos), "--trainer.default_root_dir", str(tmp_path / "run")]
        )
    out = tmp_path / "run"
    with open(out / "bad_videos.csv") as f:
        bad = {r["video"]: r["reason"] for r in csv.DictReader(f)}
    assert "broken.mp4" in bad and "broken.mp4" in bad["broken.mp4"]
    with open(out / "leaderboard.csv") as f:
        header = next(csv.reader(f))
    assert header[:7] == ["rank", "video", "score", "stderr", "ci_low", "ci_high", "n_comparisons"]
    pairs = _pairs(out / "comparisons.jsonl")
    assert len(pairs) == 6 == len(set(pairs))  # 4 decodable clips: every pair once


def test_predict_killed_and_rerun_repeats_no_comparison(tmp_path: Path) -> None:
    videos = _write_clips(tmp_path / "videos", 8)  # 28 pairs in rounds of 8 (conf/predict.yaml)
    cmd = [sys.executable, "run.py", "predict", *CONFIGS, "--data.videos", str(videos)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [*cmd, "--trainer.default_root_dir", str(run_dir)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    journal = None
    while time.time() < deadline and proc.poll() is None:
        found = list((run_dir / "journals").rglob("*.jsonl")) if run_dir.exists() else []
        if found and len(_pairs(found[0])) >= 8:
            journal = found[0]
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.2)
    proc.wait(60)
    assert journal is not None, "the run finished or stalled before it could be killed"
    before = _pairs(journal)
    rerun = subprocess.run(
        [*cmd, "--trainer.default_root_dir", str(run_dir)],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    after = _pairs(journal)
    assert after[: len(before)] == before and len(after) == len(set(after))
    subprocess.run(
        [*cmd, "--trainer.default_root_dir", str(tmp_path / "fresh")],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    written = sorted(p.name for p in run_dir.iterdir())
    assert (run_dir / "leaderboard.csv").is_file(), (
        f"rerun wrote {written}:\n{rerun.stdout[-3000:]}\n{rerun.stderr[-3000:]}"
    )
    assert (run_dir / "leaderboard.csv").read_text() == (tmp_path / "fresh" / "leaderboard.csv").read_text()
