"""Rationale annotation end to end on a tiny synthetic benchmark and a local stand-in server:
``annotate pairs`` (the SFT pair design) -> ``annotate run`` (concurrent, verified, resumable)
-> SFT ``fast_dev_run`` on the JSONL."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.annotate import load_template, read_pairs, read_records, verdict_sentence
from datamodules.annotate.cli import main
from datamodules.annotate.verify import REASONS
from datamodules.pairwise import BenchmarkSpec, PairwiseVideoDataModule
from datamodules.synthetic import generate_benchmark
from datamodules.video import load_clip

REPO = Path(__file__).resolve().parents[2]
SCRIPT = {
    0: ["wrong", "good"],
    1: ["leak", "leak", "leak"],
    2: ["500", "good"],
    3: ["429:1", "good"],
    4: ["400"],
    5: ["wrong", "wrong", "wrong"],
    6: ["long", "long", "long"],
}
STATUS = {
    0: ("accepted", None),
    1: ("rejected", "score_leak"),
    2: ("accepted", None),
    3: ("accepted", None),
    4: ("failed", "http_400"),
    5: ("rejected", "wrong_direction"),
    6: ("rejected", "too_long"),
}


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny synthetic benchmark (16 training clips in two rating sources)."""
    return generate_benchmark(tmp_path_factory.mktemp("syn"), seed=0, size="tiny", workers=1, progress=False)


def _pairs(bench: Path, out: Path, num: int, seed: int) -> int:
    return main(
        [
            "pairs",
            "--benchmark",
            "synthetic",
            "--label-file",
            str(bench),
            "--split",
            "train",
            "--num-pairs",
            str(num),
            "--seed",
            str(seed),
            "--out",
            str(out),
        ]
    )


def _run(pairs: Path, out: Path, url: str, *extra: str) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(
            [
                "run",
                "--pairs",
                str(pairs),
                "--out",
                str(out),
                "--base-url",
                url,
                "--model",
                "stand-in-model",
                "--video-root",
                str(pairs.parent / "syn"),
                "--backoff",
                "0.01",
                "--no-progress",
                *extra,
            ]
        )
    return code, buf.getvalue()


@pytest.fixture(scope="module")
def annotated(bench: Path, module_standin, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """12 designed pairs + one with a missing video, annotated with video_url input, 4 in flight."""
    work = tmp_path_factory.mktemp("annotate")
    shutil.copytree(bench.parent, work / "syn")
    pairs = work / "pairs.csv"
    assert _pairs(bench, pairs, 12, 0) == 0
    rows = read_pairs(pairs)
    with open(pairs, "a") as fh:
        fh.write(f"{rows[0].video_a},gone.mp4,3.0,2.0,1.0,synthetic\n")
    server = module_standin
    server.register(work / "syn", sorted({n for r in rows for n in r.key}))
    server.script.update({rows[k].key: plan for k, plan in SCRIPT.items()})
    server.delay = 0.2
    code, stdout = _run(pairs, work / "rationales.jsonl", server.url, "--input", "video_url", "--concurrency", "4")
    return SimpleNamespace(
        pairs=pairs, rows=rows, out=work / "rationales.jsonl", server=server, code=code, stdout=stdout, work=work
    )


def test_pairs_command_writes_the_sft_pair_design(bench: Path, tmp_path: Path) -> None:
    out = tmp_path / "pairs.csv"
    assert _pairs(bench, out, 12, 5) == 0
    rows = read_pairs(out)
    dm = PairwiseVideoDataModule(
        train_sets=[BenchmarkSpec(name="synthetic", benchmark="synthetic", label_file=str(bench), split="train")],
        num_train_pairs=12,
        pair_seed=5,
        reasoning=False,
    )
    dm.setup("fit")
    pl, table = dm._datasets["train"].datasets[0].pairs, dm._tables["synthetic"]
    assert [r.key for r in rows] == [
        (table.names[a], table.names[b]) for a, b in zip(pl.index_a.tolist(), pl.index_b.tolist())
    ]
    assert [r.margin for r in rows] == pl.margin.tolist()  # exact: MOS written at full precision
    assert all(1.0 <= r.mos_a <= 5.0 and 1.0 <= r.mos_b <= 5.0 for r in rows)
    again = tmp_path / "again.csv"
    assert _pairs(bench, again, 12, 5) == 0 and again.read_bytes() == out.read_bytes()
    assert _pairs(bench, again, 12, 6) == 0 and again.read_bytes() != out.read_bytes()


def test_run_accounts_for_every_pair_verified_and_concurrently(annotated: SimpleNamespace) -> None:
    ns, server = annotated, annotated.server
    records = read_records(ns.out)
    assert ns.code == 0 and set(records) == {r.key for r in read_pairs(ns.pairs)}
    for k, row in enumerate(ns.rows):
        rec = records[row.key]
        assert (rec["status"], rec["reason"]) == STATUS.get(k, ("accepted", None)), (k, rec)
        assert (rec["model"], rec["template"], rec["input"]) == ("stand-in-model", load_template().version, "video_url")
        if rec["status"] == "accepted":
            assert rec["rationale"].endswith(verdict_sentence(row.margin))
        if rec["status"] == "rejected":
            assert rec["reason"] in REASONS and rec["detail"] and rec["attempts"] == 3
    assert records[(ns.rows[0].video_a, "gone.mp4")]["reason"] == "video"
    assert 2 <= server.max_in_flight <= 4  # really concurrent, never more than asked
    assert records[ns.rows[0].key]["attempts"] == 2 and records[ns.rows[2].key]["requests"] == 2
    retry = [b for b in server.requests if server._pair(b) == ns.rows[0].key][1]
    assert "wrong_direction" in retry["messages"][-1]["content"][-1]["text"]  # reason sent back
    (t0, _, _), (t1, _, _) = [e for e in server.log if e[1] == ns.rows[3].key]
    assert t1 - t0 >= 1.0  # Retry-After: 1 honoured
    assert sum(r["requests"] for r in records.values()) == len(server.requests)
    tokens = [sum(r[k] for r in records.values()) for k in ("prompt_tokens", "completion_tokens")]
    assert tokens == [server.usage["prompt_tokens"], server.usage["completion_tokens"]]
    assert f"{tokens[0]} prompt + {tokens[1]} completion tokens" in ns.stdout
    assert "rejected 3 (score_leak 1, too_long 1, wrong_direction 1)" in ns.stdout
    assert "failed 2 (http_400 1, video 1)" in ns.stdout


def test_rerun_sends_nothing_and_a_torn_last_line_is_redone(annotated: SimpleNamespace, tmp_path: Path) -> None:
    ns, server = annotated, annotated.server
    out = tmp_path / "copy.jsonl"
    shutil.copy(ns.out, out)
    sent = len(server.requests)
    code, stdout = _run(ns.pairs, out, server.url, "--input", "video_url")
    assert code == 0 and len(server.requests) == sent and "this run : 0 pairs" in stdout
    key = ns.rows[7].key  # an accepted pair: its line is made the last one and torn in half
    lines = out.read_text().splitlines(keepends=True)
    mine = next(x for x in lines if tuple(json.loads(x)[k] for k in ("video_a", "video_b")) == key)
    out.write_text("".join(x for x in lines if x != mine) + mine[: len(mine) // 2])  # killed mid-write
    before = server.requests_for(key)
    code, _ = _run(ns.pairs, out, server.url, "--input", "video_url")
    assert code == 0 and read_records(out).keys() == read_records(ns.out).keys()
    assert server.requests_for(key) == before + 1 and len(server.requests) == sent + 1  # only it
    assert read_records(out)[key]["status"] == "accepted"
    code, _ = _run(ns.pairs, out, server.url, "--input", "video_url", "--retry-failed")
    assert read_records(out)[ns.rows[4].key]["status"] == "accepted"  # the HTTP 400 one, resent
    assert len(server.requests) == sent + 2  # the missing video fails again without a request


def test_frames_input_sends_the_projects_8_frames_as_jpeg(bench: Path, standin, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.csv"
    assert _pairs(bench, pairs, 1, 0) == 0
    shutil.copytree(bench.parent, tmp_path / "syn")
    code, _ = _run(pairs, tmp_path / "r.jsonl", standin.url, "--input", "frames", "--frame-size", "48")
    parts = standin.requests[0]["messages"][-1]["content"]
    kinds = [p["type"] for p in parts]
    assert code == 0 and kinds == ["text", *["image_url"] * 8, "text", *["image_url"] * 8, "text"]
    assert parts[0]["text"] == "Video A:" and parts[9]["text"] == "Video B:" and "8 frames" in parts[-1]["text"]
    row = read_pairs(pairs)[0]
    clip = load_clip(tmp_path / "syn" / row.video_a, num_frames=8, motion_frames=1, alpha=1, size=48)
    for k in range(8):
        url = parts[1 + k]["image_url"]["url"]
        assert url.startswith("data:image/jpeg;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        frame = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)  # (3, H, W)
        assert image.format == "JPEG" and frame.shape == clip.frames[k].shape
        assert min(frame.shape[1:]) == 48
        diffs = (clip.frames.float() - frame.float()).abs().mean(dim=(1, 2, 3))  # (8,)
        assert int(diffs.argmin()) == k and diffs[k] < 5.0  # frame k of the project's sampling


def test_sft_fast_dev_run_trains_on_the_accepted_rationales(annotated: SimpleNamespace, bench: Path) -> None:
    from run import main as run_main

    labels, data = annotated.work / "syn" / "labels.csv", annotated.work / "syn"
    sets = [
        f'--data.init_args.{key}=[{{"name": "syn_{split}", "label_file": "{labels}", '
        f'"video_root": "{data}", "split": "{split}"}}]'
        for key, split in (("train_sets", "train"), ("val_sets", "test"), ("test_sets", "ood_content"))
    ]
    cli = run_main(
        [
            "--config",
            str(REPO / "conf/sft.yaml"),
            "--config",
            str(REPO / "conf/tiny.yaml"),
            "--trainer.fast_dev_run=true",
            f"--trainer.default_root_dir={annotated.work / 'run'}",
            f"--data.init_args.rationale_file={annotated.out}",
            *sets,
        ],
        run=False,
    )
    before = {k: v.detach().clone() for k, v in cli.model.named_parameters() if v.requires_grad}
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 1 and math.isfinite(float(cli.trainer.callback_metrics["train/loss"]))
    after = dict(cli.model.named_parameters())
    assert any(not torch.equal(before[k], after[k]) for k in before)
    records = read_records(annotated.out)
    accepted = {k for k, r in records.items() if r["status"] == "accepted"}
    (cov,) = cli.datamodule.rationale_coverage
    assert cov.used == len(accepted) and cov.listed == len(records) - 1  # gone.mp4 is no row
    ds = cli.datamodule._datasets["train"].datasets[0]
    table = ds.table
    used = {(table.names[a], table.names[b]) for a, b in zip(ds.pairs.index_a, ds.pairs.index_b)}
    assert used == accepted and ds.rationales == [records[k]["rationale"] for k in sorted(used)]


def test_ctrl_c_keeps_every_written_record_and_the_rerun_finishes(
    annotated: SimpleNamespace, standin, tmp_path: Path
) -> None:
    rows = read_pairs(annotated.pairs)
    standin.register(annotated.work / "syn", sorted({n for r in rows for n in r.key} - {"gone.mp4"}))
    standin.delay = 1.0  # per request: time for SIGINT to land between records even on a loaded machine
    out = tmp_path / "r.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "datamodules.annotate",
        "run",
        "--pairs",
        str(annotated.pairs),
        "--out",
        str(out),
        "--base-url",
        standin.url,
        "--model",
        "m",
        "--video-root",
        str(annotated.work / "syn"),
        "--input",
        "video_url",
        "--concurrency",
        "2",
        "--no-progress",
    ]
    # A child inherits an ignored SIGINT, and Python then installs no KeyboardInterrupt handler: a
    # library earlier in the session may leave SIGINT ignored in pytest, so the child restores it.
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while (not out.exists() or len(out.read_text().splitlines()) < 3) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130, (signal.getsignal(signal.SIGINT), proc.stderr.read().decode()[-2000:])
    done = read_records(out)  # every line written before Ctrl-C is a whole record
    assert 3 <= len(done) < len(rows)
    counts = {key: standin.requests_for(key) for key in done}
    code, _ = _run(annotated.pairs, out, standin.url, "--input", "video_url")
    assert code == 0 and set(read_records(out)) == {r.key for r in rows}
    assert {key: standin.requests_for(key) for key in done} == counts  # none of them sent again
