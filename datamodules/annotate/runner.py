"""Annotate many pairs concurrently: worker threads, verification with retries, durable records.

:func:`annotate_pairs` skips every pair already accounted for in the output JSONL (accepted,
rejected or failed; ``retry_failed`` re-sends the failed ones), then runs ``concurrency`` daemon
worker threads; each takes a pair, shows both videos, sends the prompt, verifies the reply
(:func:`~datamodules.annotate.verify.verify_reply`) and on a rejection asks again with the reason
appended, up to ``attempts`` replies. The main thread writes each finished record (flushed and
fsynced) and drives a tqdm bar with ETA, so Ctrl-C or a kill loses only the requests in flight.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from datamodules.annotate.client import ChatClient, RequestError
from datamodules.annotate.media import video_parts
from datamodules.annotate.pairs_csv import PairRow
from datamodules.annotate.prompt import InputMode, PromptTemplate, build_messages
from datamodules.annotate.records import RecordWriter, Summary, read_records, summarize
from datamodules.annotate.verify import verify_reply
from datamodules.video import VideoDecodeError

__all__ = ["RunSettings", "annotate_one", "annotate_pairs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSettings:
    """How pairs are annotated.

    Attributes:
        input: ``frames`` (8 JPEG frames per video) or ``video_url`` (the file).
        num_frames: frames per video in ``frames`` mode.
        frame_size: short side of the frames (``None``: native).
        attempts: replies per pair before it is recorded as rejected (the 2nd+ carry the reason).
        concurrency: requests in flight.
        video_root: folder the pairs' video names are relative to (``None``: as written).
        retry_failed: send again the pairs whose record is ``failed``.
    """

    input: InputMode = "frames"
    num_frames: int = 8
    frame_size: int | None = 448
    attempts: int = 3
    concurrency: int = 8
    video_root: str | None = None
    retry_failed: bool = False

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.concurrency < 1 or self.num_frames < 1:
            raise ValueError(
                f"attempts, concurrency and num_frames must be >= 1, got "
                f"{self.attempts}, {self.concurrency}, {self.num_frames}"
            )


def _record(
    pair: PairRow, client: ChatClient, template: PromptTemplate, settings: RunSettings, **fields: Any
) -> dict[str, Any]:
    """A JSONL record (schema: :mod:`datamodules.annotate.records`) with ``fields`` filled in."""
    rec = {
        "video_a": pair.video_a,
        "video_b": pair.video_b,
        "mos_a": pair.mos_a,
        "mos_b": pair.mos_b,
        "margin": pair.margin,
        "benchmark": pair.benchmark,
        "status": None,
        "reason": None,
        "detail": "",
        "rationale": "",
        "attempts": 0,
        "requests": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "model": client.model,
        "template": template.version,
        "template_sha": template.sha,
        "input": settings.input,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    rec.update(fields)
    return rec


def annotate_one(pair: PairRow, client: ChatClient, template: PromptTemplate, settings: RunSettings) -> dict[str, Any]:
    """Annotate one pair; its record is accepted, rejected (with reason) or failed (error)."""
    root = Path(settings.video_root) if settings.video_root else None
    try:
        parts = [
            video_parts(root / name if root else name, settings.input, settings.num_frames, settings.frame_size)
            for name in pair.key
        ]
    except VideoDecodeError as err:
        return _record(pair, client, template, settings, status="failed", reason="video", detail=str(err))
    usage = {"attempts": 0, "requests": 0, "prompt_tokens": 0, "completion_tokens": 0}
    check = None
    for _ in range(settings.attempts):
        rejection = None if check is None else (str(check.reason), check.detail)
        messages = build_messages(
            template, pair.mos_a, pair.mos_b, parts[0], parts[1], settings.input, settings.num_frames, rejection
        )
        try:
            reply = client.complete(messages)
        except RequestError as err:
            usage["requests"] += err.requests
            return _record(pair, client, template, settings, status="failed", reason=err.kind, detail=str(err), **usage)
        usage["attempts"] += 1
        usage["requests"] += reply.requests
        usage["prompt_tokens"] += reply.prompt_tokens
        usage["completion_tokens"] += reply.completion_tokens
        check = verify_reply(reply.text, pair.margin)
        if check.ok:
            return _record(pair, client, template, settings, status="accepted", rationale=check.rationale, **usage)
    assert check is not None  # RunSettings guarantees attempts >= 1
    return _record(
        pair,
        client,
        template,
        settings,
        status="rejected",
        reason=check.reason,
        detail=check.detail,
        rationale=check.rationale,
        **usage,
    )


def _annotate_safely(
    pair: PairRow, client: ChatClient, template: PromptTemplate, settings: RunSettings
) -> dict[str, Any]:
    """:func:`annotate_one`; an unexpected error becomes a ``failed`` record of reason ``error``."""
    try:
        return annotate_one(pair, client, template, settings)
    except Exception as err:  # one bad pair must not end an 18k-pair job
        log.exception("pair %s: unexpected error", pair.key)
        return _record(pair, client, template, settings, status="failed", reason="error", detail=repr(err))


def _worker(jobs: queue.Queue, results: queue.Queue, work: Callable[[PairRow], dict], stop: threading.Event) -> None:
    """Take pairs until none is left (or ``stop`` is set) and put their records."""
    while not stop.is_set():
        try:
            pair = jobs.get_nowait()
        except queue.Empty:
            return
        results.put(work(pair))


def _pending(pairs: Sequence[PairRow], done: dict, retry_failed: bool) -> list[PairRow]:
    return [p for p in pairs if p.key not in done or (retry_failed and done[p.key]["status"] == "failed")]


def annotate_pairs(
    pairs: Sequence[PairRow],
    out: str | Path,
    client: ChatClient,
    template: PromptTemplate,
    settings: RunSettings,
    progress: bool = True,
) -> tuple[Summary, Summary]:
    """Annotate the pairs of ``pairs`` not yet accounted for in ``out``.

    Returns:
        ``(all, this_run)``: the summary over all of ``pairs`` (from the file) and over the
        records written by this call.

    Raises:
        KeyboardInterrupt: after Ctrl-C; what was written stays written (in-flight requests
            are dropped).
    """
    todo = _pending(pairs, read_records(out), settings.retry_failed)
    jobs: queue.Queue = queue.Queue()
    results: queue.Queue = queue.Queue()
    for pair in todo:
        jobs.put(pair)
    work = lambda pair: _annotate_safely(pair, client, template, settings)  # noqa: E731
    for _ in range(min(settings.concurrency, len(todo))):
        threading.Thread(target=_worker, args=(jobs, results, work, client.stop), daemon=True).start()
    run = Summary(total=len(todo), pending=len(todo))
    with (
        RecordWriter(out) as sink,
        tqdm(total=len(todo), unit="pair", disable=not progress, desc="annotate", dynamic_ncols=True) as bar,
    ):
        try:
            for _ in range(len(todo)):
                rec = results.get()  # Ctrl-C interrupts this wait
                sink.write(rec)
                run.add(rec)
                run.pending -= 1
                bar.update(1)
                bar.set_postfix(
                    ok=run.accepted,
                    rejected=sum(run.rejected.values()),
                    failed=sum(run.failed.values()),
                    tokens=run.prompt_tokens + run.completion_tokens,
                    refresh=False,
                )
        except KeyboardInterrupt:
            client.stop.set()  # waiting workers give up; in-flight requests are dropped
            raise
    return summarize(read_records(out), [p.key for p in pairs]), run
