"""Journal: identity, durable append, resume, torn last line, and the lock between processes."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from callbacks.journal import (
    Journal,
    JournalIdentity,
    JournalLock,
    JournalLockedError,
    JournalMismatchError,
    read_journal,
    used_margin,
)

NAMES = [f"v{i}.mp4" for i in range(5)]
IDENTITY = JournalIdentity(
    model={"weights": "ab12", "max_new_tokens": 64},
    benchmark="konvid",
    num_items=5,
    items_digest="abc",
    sampler="robust",
    seed=0,
    budget=25,
    symmetrize=False,
)


def _open(tmp_path: Path, identity: JournalIdentity = IDENTITY, **kw: object) -> Journal:
    return Journal(tmp_path / identity.file_name, identity, "ckpt:a:0", **kw)  # type: ignore


def test_append_then_resume_restores_every_record(tmp_path: Path) -> None:
    with _open(tmp_path) as j:
        j.append(
            [
                j.pair_record(0, 1, NAMES, (0.5, "A sharper", False)),
                j.pair_record(2, 3, NAMES, (float("nan"), "skipped", False)),
                Journal.bad_record(4, NAMES[4], "truncated"),
            ]
        )
    lines = j.path.read_text().splitlines()
    assert json.loads(lines[0])["type"] == "header" and len(lines) == 4
    assert json.loads(lines[2])["margin"] is None  # NaN is written as null (valid JSON)
    with _open(tmp_path) as again:
        assert list(again.state.pairs) == [(0, 1), (2, 3)] and again.state.bad == {4: "truncated"}
        assert again.state.pairs[(0, 1)]["name_j"] == "v1.mp4"
        assert math.isnan(used_margin(again.state.pairs[(2, 3)], False))


def test_torn_last_line_is_ignored_and_next_append_is_clean(tmp_path: Path) -> None:
    with _open(tmp_path) as j:
        j.append([j.pair_record(0, 1, NAMES, (0.5, "x", False))])
    with open(j.path, "a") as f:
        f.write('{"type": "pair", "i": 2, "j"')
    with pytest.warns(RuntimeWarning, match="torn last line"), _open(tmp_path) as resumed:
        assert list(resumed.state.pairs) == [(0, 1)]
        resumed.append([resumed.pair_record(2, 3, NAMES, (-0.1, "y", True))])
    header, records = read_journal(j.path)  # no warning: the torn tail was cut
    assert header is not None and [(r["i"], r["j"]) for r in records] == [(0, 1), (2, 3)]
    assert [r["forced"] for r in records] == [False, True]


def test_corrupt_middle_line_is_an_error_naming_the_line(tmp_path: Path) -> None:
    with _open(tmp_path) as j:
        pass
    with open(j.path, "a") as f:
        f.write('garbage\n{"type": "bad", "index": 1, "reason": "r"}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_journal(j.path)


@pytest.mark.parametrize(
    "change",
    [
        {"model": {"weights": "ff00", "max_new_tokens": 64}},
        {"model": {"weights": "ab12", "max_new_tokens": 200}},
        {"benchmark": "live_vqc"},
        {"num_items": 6},
        {"items_digest": "zzz"},
        {"sampler": "active"},
        {"seed": 3},
        {"budget": 30},
        {"symmetrize": True},
    ],
)
def test_every_identity_field_changes_the_file(change: dict[str, object]) -> None:
    other = replace(IDENTITY, **change)  # type: ignore[arg-type]
    assert other.digest != IDENTITY.digest and other.file_name != IDENTITY.file_name
    assert other.differences({"identity": json.loads(json.dumps(IDENTITY.__dict__))})


def test_identity_digest_ignores_key_order() -> None:
    same = replace(IDENTITY, model={"max_new_tokens": 64, "weights": "ab12"})
    assert same.digest == IDENTITY.digest


def test_edited_header_is_refused_naming_file_and_fields(tmp_path: Path) -> None:
    with _open(tmp_path) as j:
        pass
    header = json.loads(j.path.read_text())
    header["identity"]["seed"] = 9
    j.path.write_text(json.dumps(header) + "\n")
    with pytest.raises(JournalMismatchError) as err:
        _open(tmp_path)
    assert str(j.path) in str(err.value) and "seed" in str(err.value)


def test_symmetrized_margin_uses_both_orders() -> None:
    record = {"margin": 1.0, "margin_rev": -0.6}
    assert used_margin(record, True) == pytest.approx(0.8)
    assert used_margin(record, False) == 1.0


def test_disabled_journal_never_writes_nor_locks(tmp_path: Path) -> None:
    with _open(tmp_path, enabled=False) as j, _open(tmp_path, enabled=False) as k:
        j.append([j.pair_record(0, 1, NAMES, (0.5, "x", False))])
        assert k.lock is None
    assert not j.path.exists() and (0, 1) in j.state.pairs
    assert not j.path.with_name(j.path.name + ".lock").exists()


def test_open_journal_is_locked_and_released_on_close_and_on_error(tmp_path: Path) -> None:
    first = _open(tmp_path)
    with pytest.raises(JournalLockedError, match=f"pid {os.getpid()}"):
        _open(tmp_path)
    first.close()
    with pytest.raises(RuntimeError, match="boom"), _open(tmp_path):
        raise RuntimeError("boom")
    _open(tmp_path).close()  # released by the failed block


def test_stale_lock_file_of_a_dead_process_does_not_block(tmp_path: Path) -> None:
    lock = tmp_path / (IDENTITY.file_name + ".lock")
    lock.write_text(json.dumps({"pid": 999999999, "host": "gone", "since": "2020-01-01", "command": "run.py predict"}))
    with _open(tmp_path) as j:
        assert j.lock is not None and j.lock.holder()["pid"] == os.getpid()


def test_journal_held_by_another_process_is_refused_naming_it(tmp_path: Path, hold_lock: Any) -> None:
    lock_file = tmp_path / (IDENTITY.file_name + ".lock")
    proc = hold_lock(lock_file)
    with pytest.raises(JournalLockedError) as err:
        _open(tmp_path)
    text = str(err.value)
    assert f"pid {proc.pid}" in text and str(lock_file) in text and "since 20" in text
    assert str(tmp_path / IDENTITY.file_name) in text
    assert not (tmp_path / IDENTITY.file_name).exists()  # nothing written by the refused run
    proc.kill()
    proc.wait()
    _open(tmp_path).close()  # the kill released the lock: a dead holder never blocks


def test_lock_timeout_waits_for_the_other_process(tmp_path: Path, hold_lock: Any) -> None:
    lock_file = tmp_path / "x.lock"
    proc = hold_lock(lock_file)
    start = time.monotonic()
    with pytest.raises(JournalLockedError, match="after waiting 0.3 s"):
        JournalLock(lock_file).acquire(timeout=0.3)
    assert time.monotonic() - start >= 0.3
    proc.kill()  # the holder ends while we wait
    waiter = JournalLock(lock_file)
    waiter.acquire(timeout=60)
    assert waiter.holder()["pid"] == os.getpid()
    waiter.release()
    proc.wait()
    with pytest.raises(ValueError, match=">= 0"):
        JournalLock(lock_file).acquire(timeout=-1)
