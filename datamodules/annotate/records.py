"""The rationale JSONL file: one record per annotated pair, its reader, writer and summary.

Every pair sent to the annotator ends as exactly one record (the latest line for a pair wins)::

    {"video_a": "yfcc-batch1/725.mp4", "video_b": "...", "mos_a": 4.34, "mos_b": 3.1,
     "margin": 1.24, "benchmark": "lsvq_train",
     "status": "accepted" | "rejected" | "failed",
     "reason": null | <verify reason, e.g. "wrong_direction"> | <failure kind, e.g. "http_500">,
     "detail": "...", "rationale": "...",            # rejected: the last reply, for auditing
     "attempts": 2, "requests": 3, "prompt_tokens": 12345, "completion_tokens": 456,
     "model": "...", "template": "pairwise-cot-v1", "template_sha": "...", "input": "frames",
     "time": "2026-01-01T00:00:00+00:00"}

Only ``accepted`` records reach training (:mod:`datamodules.annotated_pairs`). Each line is
written with one ``write`` then flushed and fsynced, so a kill loses at most the requests in
flight and can tear only the last line; the reader skips a torn last line and the writer cuts it
off before appending.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["STATUSES", "Key", "pair_key", "read_records", "RecordWriter", "Summary", "summarize"]

log = logging.getLogger(__name__)

STATUSES = ("accepted", "rejected", "failed")
Key = tuple[str, str]
_REQUIRED = ("video_a", "video_b", "status")


def pair_key(record: dict[str, Any]) -> Key:
    """``(video_a, video_b)``: Video A is the one shown first."""
    return str(record["video_a"]), str(record["video_b"])


def _parse(line: str) -> dict[str, Any]:
    rec = json.loads(line)
    if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in _REQUIRED if k not in rec]
    if missing:
        raise ValueError(
            f"missing keys {missing} (a datamodules.annotate record has {list(_REQUIRED)}, 'rationale', ...)"
        )
    if rec["status"] not in STATUSES:
        raise ValueError(f"status {rec['status']!r} is not one of {list(STATUSES)}")
    if rec["status"] == "accepted" and not str(rec.get("rationale") or "").strip():
        raise ValueError("an accepted record has an empty 'rationale'")
    return rec


def read_records(path: str | Path) -> dict[Key, dict[str, Any]]:
    """The latest record of every pair in ``path`` (``{}`` when the file does not exist).

    Raises:
        ValueError: a line other than the last is not a valid record (file and line named).
    """
    path = Path(path)
    if not path.exists():
        return {}
    lines = path.read_text(encoding="utf-8").split("\n")
    torn_tail = lines[-1] != ""  # the file does not end with a newline: the last write was cut
    out: dict[Key, dict[str, Any]] = {}
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = _parse(line)
        except (json.JSONDecodeError, ValueError) as err:
            if torn_tail and line_no == len(lines):
                log.warning("%s:%d: skipped a torn last line (interrupted write)", path, line_no)
                continue
            raise ValueError(f"{path}:{line_no}: not a rationale record: {err}") from None
        out[pair_key(rec)] = rec
    return out


class RecordWriter:
    """Append records to a JSONL file, each flushed and fsynced before :meth:`write` returns.

    On open, a torn last line (no trailing newline) is cut off so the next record starts a line.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh: Any = None

    def __enter__(self) -> RecordWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > 0:
            data = self.path.read_bytes()
            if not data.endswith(b"\n"):
                self._repair_tail(data)
        self._fh = open(self.path, "a", encoding="utf-8")
        return self

    def _repair_tail(self, data: bytes) -> None:
        """End the file with a newline: keep a complete last record, cut a torn one."""
        cut = data.rfind(b"\n") + 1
        try:
            _parse(data[cut:].decode("utf-8"))
        except (UnicodeDecodeError, ValueError):  # JSONDecodeError is a ValueError
            with open(self.path, "r+b") as fh:
                fh.truncate(cut)
            log.warning("%s: cut off a torn last line (interrupted write)", self.path)
            return
        with open(self.path, "ab") as fh:
            fh.write(b"\n")

    def write(self, record: dict[str, Any]) -> None:
        """Append one record durably."""
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def __exit__(self, *exc: object) -> None:
        self._fh.close()


@dataclass
class Summary:
    """Counts over the records of a set of pairs.

    Attributes:
        total: pairs asked about.
        accepted: pairs with an accepted rationale.
        rejected: rejected pairs by reason.
        failed: failed pairs by error kind.
        pending: pairs with no record yet (an interrupted run).
        prompt_tokens: prompt tokens the annotator reported (``usage``), all attempts.
        completion_tokens: completion tokens, all attempts.
        requests: HTTP requests sent, retries included.
    """

    total: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    pending: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0

    def add(self, rec: dict[str, Any]) -> None:
        """Count one record (``pending`` is left to the caller)."""
        if rec["status"] == "accepted":
            self.accepted += 1
        else:
            counts = self.rejected if rec["status"] == "rejected" else self.failed
            counts[str(rec.get("reason"))] += 1
        self.prompt_tokens += int(rec.get("prompt_tokens") or 0)
        self.completion_tokens += int(rec.get("completion_tokens") or 0)
        self.requests += int(rec.get("requests") or 0)

    def __str__(self) -> str:
        def by_reason(counts: Counter) -> str:
            parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            return f"{sum(counts.values())}" + (f" ({parts})" if parts else "")

        return (
            f"{self.total} pairs: accepted {self.accepted}, rejected "
            f"{by_reason(self.rejected)}, failed {by_reason(self.failed)}, pending "
            f"{self.pending}; {self.requests} requests, {self.prompt_tokens} prompt + "
            f"{self.completion_tokens} completion tokens"
        )


def summarize(records: dict[Key, dict[str, Any]], keys: Iterable[Key] | None = None) -> Summary:
    """Summary of ``records`` restricted to ``keys`` (default: all of them).

    >>> recs = {("a", "b"): {"status": "accepted", "prompt_tokens": 10, "requests": 1},
    ...         ("c", "d"): {"status": "rejected", "reason": "score_leak", "requests": 3}}
    >>> s = summarize(recs, [("a", "b"), ("c", "d"), ("e", "f")])
    >>> s.accepted, dict(s.rejected), s.pending, s.prompt_tokens, s.requests
    (1, {'score_leak': 1}, 1, 10, 4)
    """
    keys = list(records) if keys is None else list(keys)
    out = Summary(total=len(keys))
    for key in keys:
        rec = records.get(key)
        if rec is None:
            out.pending += 1
        else:
            out.add(rec)
    return out
