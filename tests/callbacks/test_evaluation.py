"""ComparisonGraphEvaluation with the MOS-oracle fake model and datamodule of ``conftest.py``."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lightning.pytorch.loggers import TensorBoardLogger

import ranking
from callbacks.evaluation import ComparisonGraphEvaluation
from callbacks.journal import JournalLockedError, read_journal


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _journals(root: Path) -> list[Path]:
    return sorted((root / "journals").glob("*.jsonl"))


def test_mos_oracle_recovers_ranking_and_writes_tables(tmp_path: Path, fakes: Any, run_eval: Any) -> None:
    dm = fakes.DataModule({"lsvq_test": (fakes.mos(), "in_domain"), "konvid": (fakes.mos(seed=1), "ood")})
    cb = run_eval(tmp_path, fakes.Oracle(dm.truth()), dm)
    metrics = cb.trainer.callback_metrics
    assert metrics["test/lsvq_test/lsq_srcc"] > 0.95
    assert metrics["test/konvid/lsq_plcc"] > 0.95
    assert metrics["test/konvid/elo_srcc"] > 0.8
    assert metrics["test/konvid/forced_frac"] == 0.0
    assert "test/avg_in_domain/lsq_srcc" in metrics and "test/avg_out_of_domain/bt_srcc" in metrics
    rows = _rows(tmp_path / "out" / "results.csv")
    assert {r["aggregator"] for r in rows} == {"lsq", "elo", "winrate", "bt"}
    assert all(int(r["n_pairs"]) == 5 * fakes.N and r["n_forced"] == "0" for r in rows)  # 5N
    table1 = (tmp_path / "out" / "table1.md").read_text()
    header = table1.splitlines()[2]
    assert header.split("|")[2:6] == [" LSVQ-Test ", " Avg. ", " KoNViD ", " Avg. "]
    assert table1.index("**SRCC**") < table1.index("**PLCC**")
    t2 = (tmp_path / "out" / "table2_recovery.md").read_text()
    assert t2.index("Win-rate") < t2.index("Elo") < t2.index("Least-squares")
    assert (tmp_path / "out" / "journal_lsvq_test.jsonl").is_file()
    assert json.loads((tmp_path / "out" / "run_info.json").read_text())["checkpoint_id"] == "ckpt:fake:0"


def test_bad_videos_are_listed_and_run_completes(tmp_path: Path, fakes: Any, run_eval: Any) -> None:
    dm = fakes.DataModule({"konvid": (fakes.mos(), "out_of_domain")}, decode_bad={7}, encode_bad={11})
    model = fakes.Oracle(dm.truth())
    cb = run_eval(tmp_path, model, dm)
    bad = {int(r["index"]): r["reason"] for r in _rows(tmp_path / "out" / "bad_videos.csv")}
    assert set(bad) == {7, 11} and "truncated file" in bad[7] and "zero-length" in bad[11]
    assert not {7, 11} & {i for pair in model.asked for i in pair}  # never sent to the model
    outcome = cb.outcomes["konvid"]
    assert not outcome.valid[[7, 11]].any() and outcome.valid.sum() == fakes.N - 2
    assert cb.trainer.callback_metrics["test/konvid/lsq_srcc"] > 0.95


def test_decode_failure_inside_the_graph_is_dropped(tmp_path: Path, fakes: Any, run_eval: Any) -> None:
    dm = fakes.DataModule({"konvid": (fakes.mos(), "out_of_domain")}, late_bad={3})
    cb = run_eval(tmp_path, fakes.Oracle(dm.truth()), dm)
    outcome = cb.outcomes["konvid"]
    assert 3 in outcome.bad and "truncated" in outcome.bad[3]
    assert 3 not in outcome.pairs[np.isfinite(outcome.margins)]  # no usable comparison
    _, records = read_journal(_journals(tmp_path)[0])
    assert [r["index"] for r in records if r["type"] == "bad"] == [3]  # one bad record


def test_resume_after_kill_repeats_no_pair_and_matches_uninterrupted(tmp_path: Path, fakes: Any, run_eval: Any) -> None:
    dm = fakes.DataModule({"konvid": (fakes.mos(), "out_of_domain")})
    first = fakes.Oracle(dm.truth(), fail_after=5)
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_eval(tmp_path / "run", first, dm)
    (journal,) = _journals(tmp_path / "run")
    with open(journal, "a") as f:
        f.write('{"type": "pair", "i": 1')  # torn line of the kill
    second = fakes.Oracle(dm.truth())
    with pytest.warns(RuntimeWarning, match="torn"):
        cb = run_eval(tmp_path / "run", second, dm)
    assert _journals(tmp_path / "run") == [journal]  # the same journal was resumed
    assert len(first.asked) == 5 * 16 and not set(first.asked) & set(second.asked)
    assert len(first.asked) + len(second.asked) == 5 * fakes.N + cb.antisymmetry_pairs
    fresh = run_eval(tmp_path / "fresh", fakes.Oracle(dm.truth()), dm)
    np.testing.assert_allclose(cb.outcomes["konvid"].scores["lsq"], fresh.outcomes["konvid"].scores["lsq"])


CHANGES = [
    ("model", {"max_new_tokens": 200}),
    ("model", {"readout": "ntp"}),
    ("model", {"weights": True}),
    ("callback", {"sampler": "random"}),
    ("callback", {"budget_per_item": 4.0}),
    ("callback", {"seed": 1}),
    ("callback", {"symmetrize": True}),
]


@pytest.mark.parametrize(("where", "change"), CHANGES, ids=[next(iter(c)) for _, c in CHANGES])
def test_any_change_to_a_comparison_starts_a_new_journal(
    tmp_path: Path, fakes: Any, run_eval: Any, where: str, change: dict[str, Any]
) -> None:
    """Same checkpoint path, another setting: the old comparisons are neither reused nor shown."""
    dm = fakes.DataModule({"konvid": (fakes.mos(), "out_of_domain")})
    run_eval(tmp_path, fakes.Oracle(dm.truth()), dm, antisymmetry_pairs=0)
    (old,) = _journals(tmp_path)
    model_kw = {k: v for k, v in change.items() if where == "model" and k != "weights"}
    model = fakes.Oracle(dm.truth(), **model_kw)  # same checkpoint_id "ckpt:fake:0"
    if "weights" in change:  # retrained, written to the same checkpoint path
        model.layer.weight.data += 1.0
    cb_kw = change if where == "callback" else {}
    cb = run_eval(tmp_path, model, dm, antisymmetry_pairs=0, **cb_kw)
    new = [p for p in _journals(tmp_path) if p != old]
    assert len(new) == 1 and read_journal(old)[1] != []  # the old journal is left as it was
    budget = int(round(cb_kw.get("budget_per_item", 5.0) * fakes.N))
    orders = 2 if cb_kw.get("symmetrize") else 1
    assert len(model.asked) == orders * budget  # every comparison asked under the new setting
    _, records = read_journal(tmp_path / "out" / "journal_konvid.jsonl")
    tag = model._tag()
    assert [r for r in records if r["type"] == "pair"] and all(
        r["rationale"].endswith(tag) for r in records if r["type"] == "pair"
    )
    assert len(cb.outcomes["konvid"].pairs) == budget


def test_header_records_the_full_identity(tmp_path: Path, fakes: Any, run_eval: Any) -> None:
    dm = fakes.DataModule({"konvid": (fakes.mos(12), "out_of_domain")})
    model = fakes.Oracle(dm.truth())
    run_eval(tmp_path, model, dm, seed=3)
    (path,) = _journals(tmp_path)  # default root: <default_root_dir>/journals
    header, _ = read_journal(path)
    assert header is not None and header["identity"]["model"] == model.comparison_identity()
    assert {
        k: header["identity"][k] for k in ("benchmark", "num_items", "sampler", "seed", "budget", "symmetrize")
    } == {"benchmark": "konvid", "num_items": 12, "sampler": "appendix_a", "seed": 3, "budget": 60, "symmetrize": False}
    assert path.name == f"konvid-{header['digest']}.jsonl"


def test_model_without_comparison_identity_uses_its_checkpoint_id(tmp_path: Path, fakes: Any, run_eval: Any) -> None:
    dm = fakes.DataModule({"konvid": (fakes.mos(12), "out_of_domain")})
    run_eval(tmp_path, fakes.NoIdentityOracle(dm.truth()), dm)
    other = fakes.NoIdentityOracle(dm.truth(), checkpoint="ckpt:other:1")
    run_eval(tmp_path, other, dm)
    headers = [read_journal(p)[0] for p in _journals(tmp_path)]
    assert sorted(h["identity"]["model"]["checkpoint_id"] for h in headers) == ["ckpt:fake:0", "ckpt:other:1"]
    assert len(other.asked) == 60 + 32  # a new journal: 5N pairs + the antisymmetry re-asks


def test_second_run_on_a_journal_in_use_is_refused_naming_the_other(
    tmp_path: Path, fakes: Any, run_eval: Any, hold_lock: Any
) -> None:
    """Two runs at once on one journal: the second stops (asking nothing) and names the first;
    with a ``lock_timeout`` it waits for the first to finish and then resumes its work."""
    dm = fakes.DataModule({"konvid": (fakes.mos(12), "out_of_domain")})
    run_eval(tmp_path, fakes.Oracle(dm.truth()), dm)
    (journal,) = _journals(tmp_path)
    before = journal.read_text()
    proc = hold_lock(journal.with_name(journal.name + ".lock"))  # a run still in progress
    second = fakes.Oracle(dm.truth())
    with pytest.raises(JournalLockedError, match=f"in use by another run.*pid {proc.pid}"):
        run_eval(tmp_path, second, dm)
    assert second.asked == [] and journal.read_text() == before
    proc.kill()
    proc.wait()
    hold_lock(journal.with_name(journal.name + ".lock"), seconds=1.0)  # ends in 1 s
    start = time.monotonic()
    third = fakes.Oracle(dm.truth())
    run_eval(tmp_path, third, dm, lock_timeout=120)
    assert time.monotonic() - start > 0.5 and third.asked == []  # waited, then resumed all
    assert journal.read_text() == before


@pytest.mark.parametrize(("bias", "expected"), [(0.0, 0.0), (0.3, 0.6)])
def test_antisymmetry_metric(tmp_path: Path, fakes: Any, run_eval: Any, bias: float, expected: float) -> None:
    dm = fakes.DataModule({"konvid": (fakes.mos(), "out_of_domain")})
    cb = run_eval(tmp_path, fakes.Oracle(dm.truth(), bias=bias, noise=0.0), dm, antisymmetry_pairs=10)
    assert cb.trainer.callback_metrics["test/konvid/antisymmetry"] == pytest.approx(expected, abs=1e-6)


def test_symmetrize_removes_position_bias(tmp_path: Path, fakes: Any, run_eval: Any) -> None:
    dm = fakes.DataModule({"konvid": (fakes.mos(), "out_of_domain")})
    cb = run_eval(tmp_path, fakes.Oracle(dm.truth(), bias=0.5, noise=0.0), dm, symmetrize=True)
    o = cb.outcomes["konvid"]
    truth = dm.tables["konvid"].mos
    np.testing.assert_allclose(o.margins, truth[o.pairs[:, 0]] - truth[o.pairs[:, 1]], atol=1e-5)
    assert o.antisymmetry == pytest.approx(1.0, abs=1e-5)


def test_forced_answers_are_journaled_and_counted(tmp_path: Path, fakes: Any, run_eval: Any) -> None:
    dm = fakes.DataModule({"konvid": (fakes.mos(), "out_of_domain")})
    cb = run_eval(tmp_path, fakes.Oracle(dm.truth(), forced_every=3), dm)
    o = cb.outcomes["konvid"]
    expected = int(((o.pairs[:, 0] + o.pairs[:, 1]) % 3 == 0).sum())
    assert 0 < expected < len(o.pairs)
    _, records = read_journal(_journals(tmp_path)[0])
    pairs = [r for r in records if r["type"] == "pair"]
    assert sum(r["forced"] for r in pairs) == expected
    assert all(r["forced"] == ((r["i"] + r["j"]) % 3 == 0) for r in pairs)
    assert {r["n_forced"] for r in _rows(tmp_path / "out" / "results.csv")} == {str(expected)}
    assert cb.trainer.callback_metrics["test/konvid/forced_frac"] == pytest.approx(expected / len(o.pairs))


def test_pointwise_model_correlates_scores_directly(tmp_path: Path, fakes: Any, run_eval: Any) -> None:
    dm = fakes.DataModule({"konvid": (fakes.mos(), "out_of_domain")}, late_bad={2})
    cb = run_eval(tmp_path, fakes.Oracle(dm.truth(), target="pointwise"), dm)
    assert cb.trainer.callback_metrics["test/konvid/direct_srcc"] > 0.95
    assert {r["aggregator"] for r in _rows(tmp_path / "out" / "results.csv")} == {"direct"}
    assert 2 in cb.outcomes["konvid"].bad
    _, records = read_journal(_journals(tmp_path)[0])
    assert sum(r["type"] == "score" for r in records) == fakes.N
    assert [r["index"] for r in records if r["type"] == "bad"] == [2]


def test_predict_writes_leaderboard_with_anchor_mapping(tmp_path: Path, fakes: Any, run_eval: Any) -> None:
    mos = fakes.mos(12)
    raw = np.full(12, np.nan)
    raw[:4] = 20.0 * mos[:4] + 3.0  # four anchors on the user's 0-100-like scale
    dm = fakes.DataModule({"predict": (mos, "predict")}, late_bad={5}, mos_raw=raw)
    with pytest.warns(UserWarning, match="no --ckpt_path"):
        run_eval(tmp_path, fakes.Oracle(dm.truth(), noise=0.0), dm, stage="predict")
    rows = _rows(tmp_path / "out" / "leaderboard.csv")
    assert list(rows[0])[:7] == ["rank", "video", "score", "stderr", "ci_low", "ci_high", "n_comparisons"]
    assert len(rows) == 11 and [int(r["rank"]) for r in rows] == list(range(1, 12))
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    mapped = {r["video"]: float(r["score_mapped"]) for r in rows}
    names = dm.tables["predict"].names
    for i in (0, 6, 11):  # anchors and non-anchors land on the user's scale
        assert mapped[names[i]] == pytest.approx(20.0 * mos[i] + 3.0, abs=1e-3)
    assert [r["video"] for r in _rows(tmp_path / "out" / "bad_videos.csv")] == [names[5]]
    _, records = read_journal(tmp_path / "out" / "comparisons.jsonl")
    assert all({"name_i", "name_j", "margin", "rationale", "forced"} <= set(r) for r in records if r["type"] == "pair")


def test_predict_leaderboard_reuses_the_lsq_solution(
    tmp_path: Path, fakes: Any, run_eval: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    solve = ranking.lsq.lsq_solve

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(int(args[2]))
        return solve(*args, **kwargs)

    monkeypatch.setattr(ranking.aggregate, "lsq_solve", counting)
    monkeypatch.setattr(ranking.sampler_base, "lsq_solve", lambda *a, **k: solve(*a, **k))
    dm = fakes.DataModule({"predict": (fakes.mos(12), "predict")})
    cb = run_eval(tmp_path, fakes.Oracle(dm.truth()), dm, stage="predict")
    assert calls == [12]  # one solve on the final graph; the leaderboard only adds errors
    rows = _rows(tmp_path / "out" / "leaderboard.csv")
    lsq = cb.outcomes["predict"].scores["lsq"]
    assert {r["video"]: float(r["score"]) for r in rows} == pytest.approx(
        {n: round(float(s), 6) for n, s in zip(dm.tables["predict"].names, lsq)}
    )


def test_default_callback_does_each_stage_job(tmp_path: Path, fakes: Any, run_eval: Any) -> None:
    """``ComparisonGraphEvaluation()`` as the module adds it: test -> tables, antisymmetry and
    curves; predict -> leaderboard, no re-asked pairs, no curves."""
    dm = fakes.DataModule({"konvid": (fakes.mos(), "out_of_domain")})
    tested = run_eval(tmp_path / "t", fakes.Oracle(dm.truth()), dm, callback=ComparisonGraphEvaluation())
    out = tmp_path / "t" / "eval"  # no logger: <default_root_dir>/eval
    assert {r["aggregator"] for r in _rows(out / "results.csv")} == {"lsq", "elo", "winrate", "bt"}
    assert (out / "table1.md").is_file() and (out / "table2_recovery.md").is_file()
    assert "test/konvid/antisymmetry" in tested.trainer.callback_metrics
    assert len(json.loads((out / "convergence.json").read_text())["konvid"]["edges"]) == 20
    pdm = fakes.DataModule({"predict": (fakes.mos(), "predict")})
    model = fakes.Oracle(pdm.truth())
    run_eval(tmp_path / "p", model, pdm, stage="predict", callback=ComparisonGraphEvaluation())
    assert len(_rows(tmp_path / "p" / "leaderboard.csv")) == fakes.N
    assert len(model.asked) == 5 * fakes.N  # no antisymmetry re-asks at predict
    assert not (tmp_path / "p" / "convergence.json").exists()
    assert "val" not in ComparisonGraphEvaluation().stages  # validation stays opt-in


def test_fig4_png_json_and_tensorboard(tmp_path: Path, fakes: Any, run_eval: Any) -> None:
    """Fig. 4: ``convergence.json`` with each aggregator's stability point, a non-empty PNG per
    benchmark, and TensorBoard images and curves (step = number of comparisons)."""
    dm = fakes.DataModule({"konvid": (fakes.mos(), "out_of_domain")})
    logger = TensorBoardLogger(str(tmp_path), name="tb")
    run_eval(tmp_path, fakes.Oracle(dm.truth()), dm, logger=logger, convergence_steps=5)
    curves = json.loads((tmp_path / "out" / "convergence.json").read_text())["konvid"]
    assert set(curves["curves"]) == {"lsq", "elo", "winrate", "bt"} and len(curves["edges"]) == 5
    for agg, metrics in curves["curves"].items():
        for metric, values in metrics.items():
            k = ranking.stable_index(values, 0.005)
            expected = curves["edges"][k] if k < len(values) else None
            assert curves["stable_at"][agg][metric] == expected
    png = (tmp_path / "out" / "fig4_konvid.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(logger.log_dir)), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"test/konvid/convergence", "test/konvid/scatter"} <= set(tags["images"])
    assert any("rationales" in t for t in tags["tensors"])
    lsq = acc.Scalars("test/konvid/convergence/lsq_srcc")
    assert [e.step for e in lsq] == curves["edges"]
    assert [e.value for e in lsq] == pytest.approx(curves["curves"]["lsq"]["srcc"], abs=1e-6)


def test_fig4_cli_rebuilds_the_pngs_from_a_finished_run(tmp_path: Path, fakes: Any, run_eval: Any) -> None:
    from callbacks import figures

    dm = fakes.DataModule({"konvid": (fakes.mos(), "out_of_domain"), "yt gaming": (fakes.mos(seed=2), "out_of_domain")})
    run = tmp_path / "version_0"
    run_eval(tmp_path, fakes.Oracle(dm.truth()), dm, convergence_steps=4, output_dir=str(run / "eval"))
    for png in (run / "eval").glob("fig4_*.png"):
        png.unlink()  # only convergence.json (and the journals) are left
    assert figures.main(["fig4", str(run), "--out", str(tmp_path / "rebuilt")]) == 0
    rebuilt = sorted(p.name for p in (tmp_path / "rebuilt").glob("*.png"))
    assert rebuilt == ["fig4_konvid.png", "fig4_yt_gaming.png"]
    assert all((tmp_path / "rebuilt" / p).stat().st_size > 10_000 for p in rebuilt)
    assert figures.main(["fig4", str(run / "eval" / "convergence.json")]) == 0  # beside it
    assert (run / "eval" / "fig4_konvid.png").is_file()
    with pytest.raises(FileNotFoundError, match="val_convergence.json"):
        figures.main(["fig4", str(run), "--stage", "val"])
    (tmp_path / "bad.json").write_text('{"konvid": {"edges": [1]}}')
    with pytest.raises(ValueError, match="bad.json.*lacks"):
        figures.main(["fig4", str(tmp_path / "bad.json")])


def test_strict_appendix_a_sampler_through_the_callback(tmp_path: Path, fakes: Any, run_eval: Any) -> None:
    dm = fakes.DataModule({"konvid": (fakes.mos(), "out_of_domain")})
    cb = run_eval(tmp_path, fakes.Oracle(dm.truth()), dm, sampler="appendix_a")
    header, _ = read_journal(_journals(tmp_path)[0])
    assert header is not None and header["identity"]["sampler"] == "appendix_a"
    assert len(cb.outcomes["konvid"].pairs) == 5 * fakes.N
    assert cb.trainer.callback_metrics["test/konvid/lsq_srcc"] > 0.95


@pytest.mark.parametrize(("key", "value"), [("sampler", "papr"), ("aggregators", ["lsq", "mean"]), ("stages", ["tst"])])
def test_bad_choices_are_rejected_at_parse_time_and_at_run_time(key: str, value: Any) -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(ComparisonGraphEvaluation, "cb")
    assert list(parser.parse_args([]).cb.stages) == ["test", "predict"]
    with pytest.raises(Exception, match=key):  # jsonargparse's error names the key
        parser.parse_args([f"--cb.{key}={json.dumps(value)}"])
    with pytest.raises(ValueError, match="allowed"):
        ComparisonGraphEvaluation(**{key: value})


def test_model_identity_must_be_json(fakes: Any) -> None:
    from callbacks.evaluation import model_identity

    model = fakes.Oracle({})
    assert model_identity(model) == model.comparison_identity()
    assert model_identity(fakes.NoIdentityOracle({})) == {"checkpoint_id": "ckpt:fake:0"}
    model.comparison_identity = lambda: {"weights": object()}  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="MosOracle.comparison_identity.*JSON"):
        model_identity(model)


def test_default_sampler_is_appendix_a_for_evaluation_and_robust_for_leaderboards() -> None:
    default = ComparisonGraphEvaluation()
    assert [default.sampler_for(s) for s in ("val", "test", "predict")] == ["appendix_a", "appendix_a", "robust"]
    chosen = ComparisonGraphEvaluation(sampler="random")
    assert {chosen.sampler_for(s) for s in ("val", "test", "predict")} == {"random"}
