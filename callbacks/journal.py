"""Append-only JSONL journal of evaluation comparisons (resume without repeating a pair).

Layout of a journal file::

    {"type": "header", "checkpoint_id": ..., "benchmark": ..., "num_items": N, "sampler": ...,
     "seed": ..., "budget": ..., "symmetrize": ..., "items_digest": ..., "created": ...}
    {"type": "pair", "i": 3, "j": 17, "name_i": ..., "name_j": ..., "margin": 0.41,
     "rationale": ..., "margin_rev": null, "rationale_rev": null, "checkpoint_id": ..., "time": ...}
    # margin = m(i, j) as answered (null = failed); margin_rev = m(j, i) when both orders were
    # asked (symmetrize); the margin used is then (margin - margin_rev) / 2
    {"type": "reverse", "i": 3, "j": 17, "margin_rev": -0.38, "rationale_rev": ..., ...}
    {"type": "bad", "index": 5, "name": ..., "reason": ...}
    {"type": "score", "index": 2, "name": ..., "score": 3.1, "rationale": ...}   # pointwise

Every record is written, flushed and ``fsync``-ed before the caller uses it, so a killed run
loses at most the line being written; a torn last line is ignored with a warning. A file whose
header differs from the current run (another checkpoint, benchmark, sampler, seed, budget or
video list) is refused with :class:`JournalMismatchError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.video import VideoDecodeError

RECORD_TYPES = ("pair", "reverse", "bad", "score")


class JournalMismatchError(ValueError):
    """The journal on disk was written by a different run (checkpoint, benchmark, settings)."""


def now() -> str:
    """UTC timestamp in ISO 8601 (second resolution)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def items_digest(names: Sequence[str]) -> str:
    """Short content digest of an ordered list of video names.

    >>> items_digest(["a.mp4", "b.mp4"]) == items_digest(["a.mp4", "b.mp4"])
    True
    >>> len(items_digest(["a.mp4"]))
    12
    """
    return hashlib.sha1("\n".join(names).encode()).hexdigest()[:12]


def _finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN: failed margins are written as ``null``."""
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


@dataclass
class JournalHeader:
    """What a journal belongs to; two runs share a journal only if every field matches."""

    checkpoint_id: str
    benchmark: str
    num_items: int
    sampler: str
    seed: int
    budget: int
    symmetrize: bool = False
    items_digest: str = ""
    created: str = field(default_factory=now)

    KEYS = (
        "checkpoint_id",
        "benchmark",
        "num_items",
        "sampler",
        "seed",
        "budget",
        "symmetrize",
        "items_digest",
    )

    def to_record(self) -> dict[str, Any]:
        """The header as the journal's first JSON line."""
        return {"type": "header", **asdict(self)}

    def mismatches(self, other: dict[str, Any]) -> list[str]:
        """Names of the identifying fields that differ from a header record read from disk."""
        mine = asdict(self)
        return [k for k in self.KEYS if other.get(k) != mine[k]]


@dataclass
class JournalState:
    """Everything a journal already holds, indexed for resuming."""

    pairs: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    reverse: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    bad: dict[int, str] = field(default_factory=dict)
    scores: dict[int, dict[str, Any]] = field(default_factory=dict)
    order: list[tuple[int, int]] = field(default_factory=list)

    def add(self, record: dict[str, Any]) -> None:
        """Index one record (``pair``, ``reverse``, ``bad`` or ``score``)."""
        kind = record.get("type")
        if kind == "pair":
            key = (int(record["i"]), int(record["j"]))
            if key not in self.pairs:
                self.order.append(key)
            self.pairs[key] = record
        elif kind == "reverse":
            self.reverse[(int(record["i"]), int(record["j"]))] = record
        elif kind == "bad":
            self.bad[int(record["index"])] = str(record.get("reason", ""))
        elif kind == "score":
            self.scores[int(record["index"])] = record
        else:
            raise ValueError(f"unknown journal record type {kind!r}; allowed: {RECORD_TYPES}")


def read_journal(path: str | os.PathLike) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Header and records of a journal file; a torn (unparsable) last line is dropped.

    Raises:
        ValueError: an unparsable line that is not the last one (the file is corrupt), naming
            the file and the line number.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):
                warnings.warn(
                    f"{path}: ignoring torn last line {number} (partial write when the "
                    f"previous run was killed): {line[:80]!r}",
                    RuntimeWarning,
                    stacklevel=2,
                )
                break
            raise ValueError(f"{path}: line {number} is not valid JSON ({err})") from err
    header = records.pop(0) if records and records[0].get("type") == "header" else None
    return header, records


class Journal:
    """An open journal: resumes what is on disk, appends new records durably.

    Args:
        path: the JSONL file (created with its header when absent).
        header: what the current run is; a file with a different header is refused.
        enabled: ``False`` on non-zero ranks (they never touch the file).
        state: the state read by rank 0 (broadcast); when given the file is not read.

    Raises:
        JournalMismatchError: the file belongs to another checkpoint/benchmark/setting.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        header: JournalHeader,
        enabled: bool = True,
        state: JournalState | None = None,
    ) -> None:
        self.path = Path(path)
        self.header = header
        self.enabled = enabled
        self.state = JournalState() if state is None else state
        if state is not None:
            return
        if self.path.exists() and self.path.stat().st_size > 0:
            self._resume()
        elif enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write([header.to_record()], mode="w")

    def _resume(self) -> None:
        disk, records = read_journal(self.path)
        if disk is None:
            raise JournalMismatchError(
                f"{self.path}: no header line; not a VersusQ journal "
                "(delete it or choose another journal_dir)"
            )
        diff = self.header.mismatches(disk)
        if diff:
            found = ", ".join(f"{k}={disk.get(k)!r}" for k in diff)
            want = ", ".join(f"{k}={getattr(self.header, k)!r}" for k in diff)
            raise JournalMismatchError(
                f"refusing journal {self.path}: it was written for checkpoint "
                f"{disk.get('checkpoint_id')!r} on benchmark {disk.get('benchmark')!r}, this run is "
                f"checkpoint {self.header.checkpoint_id!r} on benchmark {self.header.benchmark!r} "
                f"(differs in {found}; expected {want}). Delete the file or set another "
                "journal_dir/output_dir."
            )
        for record in records:
            self.state.add(record)
        if self.enabled and self.path.read_bytes()[-1:] not in (b"\n", b""):
            self._truncate_torn()

    def _truncate_torn(self) -> None:
        """Cut the torn tail so the next append starts on a fresh line."""
        data = self.path.read_bytes()
        keep = data.rfind(b"\n") + 1
        with open(self.path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())

    def _write(self, records: Iterable[dict[str, Any]], mode: str = "a") -> None:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        with open(self.path, mode, encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Index records and (rank 0) write them durably before the caller uses them."""
        clean = [
            {
                k: (_finite_or_none(v) if k in ("margin", "margin_rev", "score") else v)
                for k, v in r.items()
            }
            for r in records
        ]
        if self.enabled and clean:
            self._write(clean)
        for record in clean:
            self.state.add(record)

    def pair_record(
        self,
        i: int,
        j: int,
        names: Sequence[str],
        margin: float,
        rationale: str,
        margin_rev: float | None = None,
        rationale_rev: str | None = None,
    ) -> dict[str, Any]:
        """A ``pair`` record for items ``i``, ``j`` of this journal's benchmark."""
        return {
            "type": "pair",
            "benchmark": self.header.benchmark,
            "i": int(i),
            "j": int(j),
            "name_i": names[i],
            "name_j": names[j],
            "margin": margin,
            "rationale": rationale,
            "margin_rev": margin_rev,
            "rationale_rev": rationale_rev,
            "checkpoint_id": self.header.checkpoint_id,
            "time": now(),
        }


def margin_of(record: dict[str, Any], key: str = "margin") -> float:
    """A margin stored in a record, NaN for ``null`` (a failed comparison)."""
    value = record.get(key)
    return float("nan") if value is None else float(value)


def used_margin(record: dict[str, Any], symmetrize: bool) -> float:
    """The margin a ``pair`` record contributes to the graph.

    With ``symmetrize`` both orders were asked and the antisymmetric part is used.

    >>> used_margin({"margin": 0.6, "margin_rev": -0.2}, True)
    0.4
    >>> used_margin({"margin": 0.6, "margin_rev": None}, False)
    0.6
    """
    forward = margin_of(record)
    if not symmetrize:
        return forward
    return (forward - margin_of(record, "margin_rev")) / 2.0


def gather_objects(trainer: Any, obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (no distributed call in a single process)."""
    if trainer.world_size <= 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * trainer.world_size
    dist.all_gather_object(out, obj)
    return out


def load_clips(
    datamodule: Any, benchmark: str, items: Sequence[int]
) -> tuple[dict[int, Any], dict[int, str]]:
    """Clips of ``items`` via ``datamodule.get_clip``; undecodable ones go to the error dict."""
    clips: dict[int, Any] = {}
    errors: dict[int, str] = {}
    for i in items:
        try:
            clips[int(i)] = datamodule.get_clip(benchmark, int(i))
        except (VideoDecodeError, FileNotFoundError) as err:
            errors[int(i)] = str(err)
    return clips, errors


class JournaledOracle:
    """``oracle(pairs (k, 2)) -> margins (k,)`` for :func:`ranking.run_comparisons`.

    Pairs already in the journal are served from it (a resumed run replays the sampler's
    choices without asking the model again); new pairs are sharded over ranks, answered by
    ``pl_module.predict_margin`` in ``PairBatch``es of ``batch_size``, gathered, journaled,
    and only then returned. A video whose clip fails to decode is dropped from the sampler and
    its pairs get a NaN margin.
    """

    def __init__(
        self,
        trainer: Any,
        pl_module: Any,
        datamodule: Any,
        journal: Journal,
        names: Sequence[str],
        sampler: Any,
        batch_size: int,
        symmetrize: bool,
    ) -> None:
        self.trainer, self.pl_module, self.datamodule = trainer, pl_module, datamodule
        self.journal, self.names, self.sampler = journal, list(names), sampler
        self.batch_size, self.symmetrize = batch_size, symmetrize
        self.bad: dict[int, str] = dict(journal.state.bad)
        self.served: set[tuple[int, int]] = set()
        self.model_calls = 0

    @property
    def benchmark(self) -> str:
        return self.journal.header.benchmark

    def record_bad(self, bad: dict[int, str]) -> None:
        """Journal bad videos found outside the oracle (the encode pass)."""
        new = {i: r for i, r in bad.items() if i not in self.journal.state.bad}
        self.bad.update(bad)
        self.journal.append(
            [
                {"type": "bad", "index": int(i), "name": self.names[i], "reason": r}
                for i, r in sorted(new.items())
            ]
        )

    def __call__(self, pairs: np.ndarray) -> np.ndarray:
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        keys = [(int(a), int(b)) for a, b in pairs]
        touched = sorted({i for key in keys for i in key} & set(self.bad))
        if touched:  # replay: drop known-bad items at the batch where they were met
            self.sampler.drop(touched)
        new = [k for k in keys if k not in self.journal.state.pairs]
        if new:
            self._ask(np.asarray(new, dtype=np.int64))
        self.served.update(keys)
        return np.array([used_margin(self.journal.state.pairs[k], self.symmetrize) for k in keys])

    def _ask(self, pairs: np.ndarray) -> None:
        queries = np.concatenate([pairs, pairs[:, ::-1]]) if self.symmetrize else pairs
        answers, bad = self.answer(queries)
        fresh = {i: r for i, r in bad.items() if i not in self.bad}
        records = [
            {"type": "bad", "index": i, "name": self.names[i], "reason": r}
            for i, r in sorted(fresh.items())
        ]
        k = len(pairs)
        for t, (i, j) in enumerate(pairs.tolist()):
            rev = answers[t + k] if self.symmetrize else (None, None)
            records.append(
                self.journal.pair_record(
                    i, j, self.names, answers[t][0], answers[t][1], rev[0], rev[1]
                )
            )
        self.journal.append(records)  # durable before any use
        self.bad.update(fresh)
        if fresh:
            self.sampler.drop(sorted(fresh))

    def answer(self, queries: np.ndarray) -> tuple[list[tuple[float, str]], dict[int, str]]:
        """Model margins for ordered pairs, this rank's share computed and all shares gathered."""
        rank, world = self.trainer.global_rank, self.trainer.world_size
        mine = np.arange(len(queries))[rank::world]
        local, bad = self._answer_local(queries[mine])
        answers: list[tuple[float, str]] = [(float("nan"), "")] * len(queries)
        merged: dict[int, str] = {}
        for idx, part, part_bad in gather_objects(self.trainer, (mine.tolist(), local, bad)):
            for t, value in zip(idx, part):
                answers[t] = value
            merged.update(part_bad)
        return answers, merged

    def _answer_local(self, queries: np.ndarray) -> tuple[list[tuple[float, str]], dict[int, str]]:
        items = sorted({int(x) for x in queries.ravel()} - set(self.bad))
        clips, errors = load_clips(self.datamodule, self.benchmark, items)
        bad = {**self.bad, **errors}
        out: list[tuple[float, str]] = []
        for a, b in queries.tolist():
            skip = bad.get(a) or bad.get(b)
            out.append((float("nan"), f"skipped: {skip}") if skip else (float("nan"), ""))
        ok = [t for t, (a, b) in enumerate(queries.tolist()) if a in clips and b in clips]
        for start in range(0, len(ok), self.batch_size):
            rows = ok[start : start + self.batch_size]
            margins, texts = self.pl_module.predict_margin(self._pair_batch(queries[rows], clips))
            self.model_calls += 1
            for t, value, text in zip(rows, margins.detach().float().cpu().tolist(), texts):
                out[t] = (float(value), str(text))
        return out, errors

    def _pair_batch(self, pairs: np.ndarray, clips: dict[int, Any]) -> Any:
        import torch

        from datamodules.pairwise import PairBatch

        return PairBatch(
            clips_a=[clips[int(a)] for a in pairs[:, 0]],
            clips_b=[clips[int(b)] for b in pairs[:, 1]],
            margin=None,
            rationale=None,
            benchmark=[self.benchmark] * len(pairs),
            index_a=torch.as_tensor(pairs[:, 0], dtype=torch.long),
            index_b=torch.as_tensor(pairs[:, 1], dtype=torch.long),
        )

    def with_leftovers(
        self, pairs: np.ndarray, margins: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Append journaled pairs the (changed) sampler never proposed: answered work is kept."""
        left = [k for k in self.journal.state.order if k not in self.served]
        if not left:
            return pairs, margins
        warnings.warn(
            f"{self.journal.path}: {len(left)} journaled pairs were not proposed again "
            "(batch size or sampler changed since the run was interrupted); they are "
            "used as they are",
            RuntimeWarning,
            stacklevel=2,
        )
        extra = np.asarray(left, dtype=np.int64)
        values = [used_margin(self.journal.state.pairs[k], self.symmetrize) for k in left]
        return np.concatenate([pairs, extra]), np.concatenate([margins, values])

    def antisymmetry(self, pairs: np.ndarray, margins: np.ndarray, sample: int, seed: int) -> float:
        """Mean ``|m(i,j) + m(j,i)|`` (position bias) over both-order pairs.

        With ``symmetrize`` every pair has both orders; otherwise ``sample`` answered pairs are
        asked again reversed (journaled as ``reverse`` records, never asked twice).
        """
        state = self.journal.state
        if self.symmetrize:
            both = [(margin_of(r), margin_of(r, "margin_rev")) for r in state.pairs.values()]
        else:
            keys = [(int(a), int(b)) for (a, b), m in zip(pairs, margins) if np.isfinite(m)]
            rng = np.random.default_rng(seed)
            pick = (
                sorted(rng.choice(len(keys), size=min(sample, len(keys)), replace=False))
                if keys and sample > 0
                else []
            )
            chosen = [keys[t] for t in pick]
            self._ask_reverse([k for k in chosen if k not in state.reverse])
            both = [
                (margin_of(state.pairs[k]), margin_of(state.reverse[k], "margin_rev"))
                for k in chosen
            ]
        errs = [abs(f + r) for f, r in both if np.isfinite(f) and np.isfinite(r)]
        return float(np.mean(errs)) if errs else float("nan")

    def _ask_reverse(self, keys: list[tuple[int, int]]) -> None:
        for start in range(0, len(keys), self.batch_size):
            chunk = keys[start : start + self.batch_size]
            answers, _ = self.answer(np.asarray(chunk, dtype=np.int64)[:, ::-1])
            self.journal.append(
                [
                    {
                        "type": "reverse",
                        "benchmark": self.benchmark,
                        "i": i,
                        "j": j,
                        "margin_rev": m,
                        "rationale_rev": r,
                        "checkpoint_id": self.journal.header.checkpoint_id,
                    }
                    for (i, j), (m, r) in zip(chunk, answers)
                ]
            )

    def examples(self, count: int) -> list[tuple[str, str, float, str]]:
        """A few answered comparisons ``(video_i, video_j, margin, rationale)`` to show."""
        out = []
        for (i, j), r in self.journal.state.pairs.items():
            if len(out) >= count:
                break
            if r.get("margin") is not None:
                out.append(
                    (self.names[i], self.names[j], float(r["margin"]), r.get("rationale") or "")
                )
        return out
