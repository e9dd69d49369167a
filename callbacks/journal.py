"""Append-only JSONL journal of evaluation comparisons: persistence only (no model, no ranks).

A journal's *identity* is everything that changes a comparison (:class:`JournalIdentity`: the
model's :meth:`comparison_identity`, benchmark, item list, sampler, seed, budget, symmetrize).
Its digest is part of the file name, so a run whose identity differs in anything opens a new
journal, and an identical run resumes the old one exactly. Layout of a journal file::

    {"type": "header", "digest": ..., "identity": {...}, "checkpoint_id": ..., "created": ...}
    {"type": "pair", "i": 3, "j": 17, "name_i": ..., "name_j": ..., "margin": 0.41,
     "rationale": ..., "margin_rev": null, "rationale_rev": null, "forced": false, ...}
    # margin = m(i, j) as answered (null = failed); margin_rev = m(j, i) when both orders were
    # asked (symmetrize); the margin used is then (margin - margin_rev) / 2. forced: the answer
    # hit the token budget and the template was closed by the system.
    {"type": "reverse", "i": 3, "j": 17, "margin_rev": -0.38, "rationale_rev": ..., ...}
    {"type": "bad", "index": 5, "name": ..., "reason": ...}
    {"type": "score", "index": 2, "name": ..., "score": 3.1, "rationale": ...}   # pointwise

Every record is written, flushed and ``fsync``-ed before the caller uses it, so a killed run
loses at most the line being written; a torn last line is ignored with a warning. While open,
a journal is locked (:class:`JournalLock`) so two runs never write the same file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from callbacks.journal_lock import JournalLock, JournalLockedError, now  # noqa: F401 (JournalLockedError: re-exported)

RECORD_TYPES = ("pair", "reverse", "bad", "score")
MARGIN_KEYS = ("margin", "margin_rev", "score")  # NaN -> null (JSON has no NaN)
Answer = tuple[float | None, str | None, bool]  # one model answer: (value, rationale, forced)


class JournalMismatchError(ValueError):
    """A journal file does not hold what its name says (edited, or not a VersusQ journal)."""


def slug(text: str) -> str:
    """File-name-safe version of an id.

    >>> slug("ckpt:last.ckpt:0:ab12")
    'ckpt_last.ckpt_0_ab12'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "unnamed"


def digest(value: Any, length: int = 16) -> str:
    """Content digest of a JSON-serialisable value (key order does not matter).

    >>> digest({"a": 1, "b": [2, 3]}) == digest({"b": [2, 3], "a": 1})
    True
    >>> len(digest(["a.mp4"], 12))
    12
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def items_digest(names: Sequence[str]) -> str:
    """Short content digest of an ordered list of video names.

    >>> items_digest(["a.mp4", "b.mp4"]) == items_digest(["b.mp4", "a.mp4"])
    False
    """
    return digest(list(names), 12)


def _finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN: failed margins are written as ``null``."""
    return None if value is None or not math.isfinite(float(value)) else float(value)


@dataclass(frozen=True)
class JournalIdentity:
    """Everything that changes a comparison; two runs share a journal only if all of it matches.

    Attributes:
        model: the model's ``comparison_identity()`` (weights' content hash, generation
            settings, readout, target, template version, ...), JSON-serialisable.
        benchmark, num_items, items_digest: which videos, in which order.
        sampler, seed, budget, symmetrize: which pairs are asked, and in which orders.
    """

    model: dict[str, Any]
    benchmark: str
    num_items: int
    items_digest: str
    sampler: str
    seed: int
    budget: int
    symmetrize: bool

    @property
    def digest(self) -> str:
        """16 hex digits over every field."""
        return digest(asdict(self))

    @property
    def file_name(self) -> str:
        """``<benchmark>-<digest>.jsonl``: another identity never lands on this file."""
        return f"{slug(self.benchmark)}-{self.digest}.jsonl"

    def differences(self, record: dict[str, Any]) -> list[str]:
        """Fields (``model.<key>`` for the model's) that differ from a header's identity."""
        other, mine = record.get("identity") or {}, asdict(self)
        diff = [k for k in mine if k != "model" and other.get(k) != mine[k]]
        theirs = other.get("model") or {}
        keys = sorted(set(self.model) | set(theirs))
        return diff + [f"model.{k}" for k in keys if theirs.get(k) != self.model.get(k)]


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
                    f"{path}: ignoring torn last line {number} (partial write when "
                    f"the previous run was killed): {line[:80]!r}",
                    RuntimeWarning,
                    stacklevel=2,
                )
                break
            raise ValueError(f"{path}: line {number} is not valid JSON ({err})") from err
    header = records.pop(0) if records and records[0].get("type") == "header" else None
    return header, records


class Journal:
    """An open journal: locks the file, resumes what is on disk, appends records durably.

    Use as a context manager (or call :meth:`close`): the lock is released on exit, also when
    the run fails.

    Args:
        path: the JSONL file (created with its header when absent); normally
            ``root / identity.file_name``.
        identity: what the current run is.
        checkpoint_id: display label of the weights, written into the header and pair records.
        enabled: ``False`` on non-zero ranks (they never touch or lock the file).
        state: the state rank 0 read (broadcast to the other ranks, which do not read).
        lock_timeout: seconds to wait for another run holding the journal (0: do not wait).

    Raises:
        JournalLockedError: another process holds the journal, naming it.
        JournalMismatchError: the file's header is not ``identity`` (edited or foreign file).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        identity: JournalIdentity,
        checkpoint_id: str = "",
        enabled: bool = True,
        state: JournalState | None = None,
        lock_timeout: float = 0.0,
    ) -> None:
        self.path, self.identity, self.enabled = Path(path), identity, enabled
        self.checkpoint_id = checkpoint_id
        self.state = JournalState() if state is None else state
        self.lock: JournalLock | None = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = JournalLock(self.path.with_name(self.path.name + ".lock"))
        self.lock.acquire(lock_timeout, what=f"journal {self.path}")
        try:
            if state is None and self.path.exists() and self.path.stat().st_size > 0:
                self._resume()
            elif state is None:
                self._write([self._header()], mode="w")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release the lock (idempotent)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _header(self) -> dict[str, Any]:
        return {
            "type": "header",
            "digest": self.identity.digest,
            "identity": asdict(self.identity),
            "checkpoint_id": self.checkpoint_id,
            "created": now(),
        }

    def _resume(self) -> None:
        disk, records = read_journal(self.path)
        mine = self.identity.digest  # recomputed from the stored identity: edits are caught
        if disk is None or {disk.get("digest"), digest(disk.get("identity"))} != {mine}:
            diff = self.identity.differences(disk or {})
            raise JournalMismatchError(
                f"refusing journal {self.path}: its header does not match this run "
                f"(differs in {diff or 'the digest'}); the file was edited or is not a VersusQ "
                "journal of this run. Move it away or set another journal_dir."
            )
        for record in records:
            self.state.add(record)
        data = self.path.read_bytes()
        if data[-1:] not in (b"\n", b""):  # cut a torn tail: the next append starts a line
            with open(self.path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
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
        clean = [{k: (_finite_or_none(v) if k in MARGIN_KEYS else v) for k, v in r.items()} for r in records]
        if self.enabled and clean:
            self._write(clean)
        for record in clean:
            self.state.add(record)

    # ------------------------------------------------------------------ the record formats
    def pair_record(
        self, i: int, j: int, names: Sequence[str], answer: Answer, reverse: Answer | None = None
    ) -> dict[str, Any]:
        """A ``pair`` record: items ``i``, ``j`` and the answer(s) ``(margin, text, forced)``."""
        rev = reverse if reverse is not None else (None, None, False)
        return {
            "type": "pair",
            "benchmark": self.identity.benchmark,
            "i": int(i),
            "j": int(j),
            "name_i": names[i],
            "name_j": names[j],
            "margin": answer[0],
            "rationale": answer[1],
            "margin_rev": rev[0],
            "rationale_rev": rev[1],
            "forced": bool(answer[2] or rev[2]),
            "checkpoint_id": self.checkpoint_id,
            "time": now(),
        }

    def reverse_record(self, i: int, j: int, answer: Answer) -> dict[str, Any]:
        """A ``reverse`` record: ``m(j, i)`` asked for the position-bias check of pair ``(i, j)``."""
        return {
            "type": "reverse",
            "benchmark": self.identity.benchmark,
            "i": int(i),
            "j": int(j),
            "margin_rev": answer[0],
            "rationale_rev": answer[1],
            "forced": bool(answer[2]),
            "checkpoint_id": self.checkpoint_id,
        }

    @staticmethod
    def bad_record(index: int, name: str, reason: str) -> dict[str, Any]:
        """A ``bad`` record: a video that cannot be compared, and why."""
        return {"type": "bad", "index": int(index), "name": name, "reason": reason}

    @staticmethod
    def score_record(index: int, name: str, answer: Answer) -> dict[str, Any]:
        """A ``score`` record of the pointwise ablation."""
        value, text, forced = answer
        return {
            "type": "score",
            "index": int(index),
            "name": name,
            "score": value,
            "rationale": text,
            "forced": bool(forced),
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
