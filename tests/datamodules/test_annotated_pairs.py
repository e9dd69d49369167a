"""SFT pairs from an annotation JSONL: only accepted, label-consistent, on-disk pairs; coverage."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules.annotate import verdict_sentence
from datamodules.annotated_pairs import annotated_pairs
from datamodules.benchmarks import VideoTable

MOS = [4.5, 2.0, 3.0, 3.1, 1.5, 4.0]  # v0 .. v5; sources: v0, v3 -> s2, the rest s1


def _table(missing: tuple[str, ...] = ()) -> VideoTable:
    names = [f"v{k}.mp4" for k in range(len(MOS))]
    mos = np.asarray(MOS)
    return VideoTable(
        "toy",
        names,
        names,
        mos,
        mos.copy(),
        ["train"] * len(MOS),
        list(missing),
        {"source": ["s2" if k in (0, 3) else "s1" for k in range(len(MOS))]},
    )


def _rec(a: int, b: int, status: str = "accepted", margin: float | None = None, **kw: object) -> dict:
    m = MOS[a] - MOS[b] if margin is None else margin
    return {
        "video_a": f"v{a}.mp4",
        "video_b": f"v{b}.mp4",
        "status": status,
        "rationale": f"Evidence {a} {b}. {verdict_sentence(m)}",
        **kw,
    }


def _records(*recs: dict) -> dict:
    return {(r["video_a"], r["video_b"]): r for r in recs}


def test_only_accepted_consistent_present_pairs_are_used_and_counted() -> None:
    records = _records(
        _rec(5, 1),
        _rec(2, 4),  # used
        _rec(1, 5, margin=+2.0),  # accepted, but its verdict says A better: labels say B
        _rec(4, 5, "rejected", reason="score_leak"),
        _rec(5, 2, "rejected", reason="wrong_direction"),
        _rec(2, 1, "failed", reason="http_500"),
        _rec(3, 0),
        _rec(0, 1),
        _rec(0, 9, margin=1.0),
    )  # v3 not on disk; crosses sources; not in table
    pairs, texts, cov = annotated_pairs(_table(missing=("v3.mp4",)), records, 10, 0, "source", "r.jsonl")
    assert sorted(zip(pairs.index_a.tolist(), pairs.index_b.tolist())) == [(2, 4), (5, 1)]
    assert np.allclose(pairs.margin, np.asarray(MOS)[pairs.index_a] - np.asarray(MOS)[pairs.index_b])
    assert all(t.startswith(f"Evidence {a} {b}.") for t, a, b in zip(texts, pairs.index_a, pairs.index_b))
    assert (cov.listed, cov.used, cov.disagree, cov.absent, cov.capped) == (7, 2, 1, 1, 0)
    assert dict(cov.rejected) == {"score_leak": 1, "wrong_direction": 1} and dict(cov.failed) == {"http_500": 1}
    msg = cov.message()
    assert "r.jsonl" in msg and "2 of its 7" in msg and "score_leak 1" in msg and "http_500 1" in msg


def test_num_pairs_caps_deterministically() -> None:
    records = _records(*[_rec(a, b) for a in (1, 2, 4, 5) for b in (1, 2, 4, 5) if a != b])
    first = annotated_pairs(_table(), records, 5, 7, "source", "r.jsonl")
    again = annotated_pairs(_table(), records, 5, 7, "source", "r.jsonl")
    assert len(first[0]) == 5 and first[2].capped == 7 and first[1] == again[1]
    assert annotated_pairs(_table(), records, 5, 8, "source", "r.jsonl")[1] != first[1]


def test_no_usable_record_is_an_error_naming_file_and_table() -> None:
    records = _records(_rec(4, 5, "rejected", reason="too_long"), _rec(2, 1, "failed", reason="video"))
    with pytest.raises(ValueError, match=r"r\.jsonl: no usable rationale .*'toy'.*too_long 1.*video 1"):
        annotated_pairs(_table(), records, 10, 0, "source", "r.jsonl")
    with pytest.raises(ValueError, match="0 annotated pairs"):
        annotated_pairs(_table(), {}, 10, 0, "source", "r.jsonl")
