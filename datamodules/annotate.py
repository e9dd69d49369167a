"""Rationale (CoT) annotation for real benchmarks (paper, Appendix C).

A pair of videos with known MOS (already on the [1, 5] scale) is turned into a prompt for a strong
multimodal model behind an OpenAI-compatible ``/chat/completions`` endpoint. The prompt gives both
MOS values and the signed margin with its descriptor word (``margin_descriptor``) so the annotator
knows the answer, and asks for the paper's three-part rationale — evidence for Video A, evidence
for Video B, the gap — without ever stating a score. Replies that leak a MOS number are retried.

Results go to a JSONL file, one object per pair keyed by ``(video_a, video_b)``; a rerun skips
pairs already there, so an interrupted annotation resumes where it stopped.

CLI::

    python -m datamodules.annotate --pairs PAIRS.csv --out rationales.jsonl \\
        --base-url https://host/v1 --model NAME [--api-key-env OPENAI_API_KEY] [--video-root DIR]

``PAIRS.csv`` needs columns ``video_a, video_b, mos_a, mos_b`` (MOS on [1, 5]); ``margin`` is
optional (default ``mos_a - mos_b``).
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DRAW_THRESHOLD = 0.2
# (upper bound on |margin| on the [1, 5] scale, descriptor); the last bound is open.
DESCRIPTOR_RULES: tuple[tuple[float, str], ...] = (
    (DRAW_THRESHOLD, "about the same"),
    (0.6, "slightly better"),
    (1.2, "clearly better"),
    (float("inf"), "substantially better"),
)
MEDIA_MODES = ("frames", "video_url", "none")


def margin_descriptor(margin: float) -> str:
    """Descriptor word for a margin on the [1, 5] scale (Appendix C descriptor rules).

    >>> [margin_descriptor(m) for m in (0.1, -0.4, 0.9, -2.0)]
    ['about the same', 'slightly better', 'clearly better', 'substantially better']
    """
    if margin != margin:  # NaN
        raise ValueError("margin is NaN; a descriptor needs a finite margin")
    return next(word for bound, word in DESCRIPTOR_RULES if abs(margin) < bound)


def margin_sentence(margin: float) -> str:
    """The directional statement of a margin, e.g. ``"Video B is clearly better than Video A"``.

    >>> margin_sentence(0.7)
    'Video A is clearly better than Video B'
    >>> margin_sentence(-0.05)
    'Video A and Video B are about the same'
    """
    word = margin_descriptor(margin)
    if word == "about the same":
        return "Video A and Video B are about the same"
    better, worse = ("A", "B") if margin > 0 else ("B", "A")
    return f"Video {better} is {word} than Video {worse}"


PROMPT_TEMPLATE = """You are an expert in video quality assessment. You are shown two videos, \
Video A and Video B, for a side-by-side quality comparison.

Reference information (for you only, never quote it):
- Mean opinion score of Video A: {mos_a:.2f} on a 1-5 scale.
- Mean opinion score of Video B: {mos_b:.2f} on a 1-5 scale.
- Signed margin (A minus B): {margin:+.2f}, i.e. {sentence}.

Write a short comparison rationale (40-120 words) in three parts:
1. Evidence for Video A: concrete visual and temporal quality cues you can see (sharpness, noise,
   compression artefacts, colour and exposure, motion smoothness, flicker, stability).
2. Evidence for Video B: the same kind of cues for Video B.
3. The gap: which video is better and by how much, using the word "{descriptor}".

Rules: your rationale must agree with the margin above; do not mention any score, number, MOS or
margin value; do not say you were given reference information; plain prose, no lists, no tags."""


def build_prompt(mos_a: float, mos_b: float, margin: float | None = None) -> str:
    """The annotation prompt for one pair (text part; the videos are attached separately).

    Args:
        mos_a: MOS of Video A on the [1, 5] scale.
        mos_b: MOS of Video B on the [1, 5] scale.
        margin: signed margin ``mos_a - mos_b`` (computed when omitted).

    Returns:
        The prompt text.
    """
    margin = mos_a - mos_b if margin is None else margin
    return PROMPT_TEMPLATE.format(mos_a=mos_a, mos_b=mos_b, margin=margin,
                                  sentence=margin_sentence(margin),
                                  descriptor=margin_descriptor(margin))


def leaks_scores(text: str, values: Iterable[float]) -> bool:
    """True when ``text`` states one of ``values`` (at 1-2 decimals) or talks about MOS.

    >>> leaks_scores("Video A scores 3.42 while B is soft", [3.417, 2.0])
    True
    >>> leaks_scores("Video A is sharp; Video B is blurry.", [3.417, 2.0])
    False
    """
    numbers = {f"{v:.{d}f}" for v in values for d in (1, 2)} | {f"{abs(v):.2f}" for v in values}
    found = set(re.findall(r"\d+\.\d+", text))
    return bool(found & numbers) or re.search(r"\bMOS\b|mean opinion", text, re.IGNORECASE) is not None


def clean_rationale(text: str) -> str:
    """Strip ``<think>`` tags, list markers and extra whitespace from a model reply.

    >>> clean_rationale("<think>1. A is sharp.\\n2. B is soft.</think>")
    'A is sharp. B is soft.'
    """
    text = re.sub(r"</?(think|answer)>", " ", text)
    text = re.sub(r"(^|\n)\s*(\d+[.)]|[-*•])\s+", r"\1", text)
    return " ".join(text.split())


def video_parts(path: str | Path, media: str, frames: int = 4) -> list[dict]:
    """Chat-content parts that show one video to the model.

    Args:
        path: video file.
        media: ``"frames"`` (JPEG frames as ``image_url`` parts), ``"video_url"`` (the mp4 as a
            base64 data URL, as vLLM/Qwen servers accept) or ``"none"`` (text only).
        frames: number of uniformly sampled frames for ``"frames"``.

    Returns:
        A list of OpenAI chat content parts.
    """
    if media not in MEDIA_MODES:
        raise ValueError(f"unknown media mode {media!r}; allowed: {list(MEDIA_MODES)}")
    if media == "none":
        return []
    if media == "video_url":
        data = base64.b64encode(Path(path).read_bytes()).decode()
        return [{"type": "video_url", "video_url": {"url": f"data:video/mp4;base64,{data}"}}]
    return [{"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{jpeg}"}}
            for jpeg in _sample_jpegs(path, frames)]


def _sample_jpegs(path: str | Path, count: int) -> list[str]:
    """Decode ``count`` uniformly spaced frames of a video as base64 JPEG strings."""
    import av  # local: only the "frames" media mode needs a decoder

    with av.open(str(path)) as container:
        images = [frame.to_image() for frame in container.decode(video=0)]
    if not images:
        raise ValueError(f"{path}: no decodable video frames")
    picks = [images[round(i * (len(images) - 1) / max(count - 1, 1))] for i in range(count)]
    out = []
    for image in picks:
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=90)
        out.append(base64.b64encode(buf.getvalue()).decode())
    return out


@dataclass
class ChatClient:
    """Minimal OpenAI-compatible chat-completions client (stdlib only) with retries.

    Attributes:
        base_url: endpoint root, e.g. ``https://host/v1`` (``/chat/completions`` is appended).
        model: model name sent in the request.
        api_key: bearer token (empty: no ``Authorization`` header).
        max_retries: retries after the first attempt on 429/5xx/network errors.
        backoff: first retry delay in seconds; doubles each retry.
        timeout: per-request timeout in seconds.
        temperature: sampling temperature.
    """

    base_url: str
    model: str
    api_key: str = ""
    max_retries: int = 4
    backoff: float = 2.0
    timeout: float = 120.0
    temperature: float = 0.7

    def complete(self, content: list[dict]) -> str:
        """Send one user message (a list of content parts) and return the reply text."""
        body = json.dumps({"model": self.model, "temperature": self.temperature,
                           "messages": [{"role": "user", "content": content}]}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = self.base_url.rstrip("/") + "/chat/completions"
        for attempt in range(self.max_retries + 1):
            try:
                request = urllib.request.Request(url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return _reply_text(json.load(response), url)
            except urllib.error.HTTPError as err:
                if err.code != 429 and err.code < 500 or attempt == self.max_retries:
                    raise RuntimeError(f"{url}: HTTP {err.code}: {err.read()[:300]!r}") from err
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                if attempt == self.max_retries:
                    raise RuntimeError(f"{url}: request failed: {err}") from err
            time.sleep(self.backoff * 2**attempt)
        raise RuntimeError(f"{url}: no reply after {self.max_retries + 1} attempts")


def _reply_text(payload: dict, url: str) -> str:
    """The first choice's message text of a chat-completions response."""
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as err:
        raise RuntimeError(f"{url}: malformed chat-completions response: {str(payload)[:300]}") from err
    if isinstance(content, list):  # some servers return content parts
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


@dataclass
class PairRow:
    """One pair to annotate (MOS on [1, 5])."""

    video_a: str
    video_b: str
    mos_a: float
    mos_b: float
    margin: float


def read_pairs(path: str | Path) -> list[PairRow]:
    """Read a pairs CSV (``video_a, video_b, mos_a, mos_b[, margin]``); errors name the row."""
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"video_a", "video_b", "mos_a", "mos_b"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for line, rec in enumerate(reader, start=2):
            try:
                mos_a, mos_b = float(rec["mos_a"]), float(rec["mos_b"])
                margin = float(rec["margin"]) if rec.get("margin") not in (None, "") else mos_a - mos_b
            except ValueError as err:
                raise ValueError(f"{path}, row {line}: {err}") from err
            if margin != margin:
                raise ValueError(f"{path}, row {line}: margin is NaN")
            rows.append(PairRow(rec["video_a"], rec["video_b"], mos_a, mos_b, margin))
    return rows


def load_rationales(path: str | Path) -> dict[tuple[str, str], str]:
    """Rationales already in a JSONL file, keyed by ``(video_a, video_b)``; {} if absent."""
    path = Path(path)
    if not path.exists():
        return {}
    done = {}
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                rec = json.loads(line)
                done[(rec["video_a"], rec["video_b"])] = rec["rationale"]
            except (json.JSONDecodeError, KeyError) as err:
                log.warning("%s, line %d: skipped unreadable record (%s)", path, line_no, err)
    return done


def annotate_pairs(pairs: Sequence[PairRow], out: str | Path, client: ChatClient,
                   video_root: str | Path | None = None, media: str = "frames",
                   frames: int = 4, attempts: int = 3) -> int:
    """Annotate the pairs not yet in ``out``; each result is appended (and flushed) at once.

    Args:
        pairs: pairs to annotate.
        out: JSONL file; existing ``(video_a, video_b)`` keys are skipped.
        client: chat client.
        video_root: folder the pair's video names are relative to (None: as given).
        media: how videos are attached (see ``video_parts``).
        frames: frames per video for ``media="frames"``.
        attempts: tries per pair when the reply is empty or leaks a score.

    Returns:
        The number of pairs newly annotated.
    """
    done = load_rationales(out)
    root = Path(video_root) if video_root is not None else None
    written = 0
    with open(out, "a") as sink:
        for pair in pairs:
            if (pair.video_a, pair.video_b) in done:
                continue
            rationale = _annotate_one(pair, client, root, media, frames, attempts)
            if rationale is None:
                continue
            record = {"video_a": pair.video_a, "video_b": pair.video_b, "mos_a": pair.mos_a,
                      "mos_b": pair.mos_b, "margin": pair.margin,
                      "descriptor": margin_descriptor(pair.margin), "rationale": rationale,
                      "model": client.model}
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            done[(pair.video_a, pair.video_b)] = rationale
            written += 1
    return written


def _annotate_one(pair: PairRow, client: ChatClient, root: Path | None, media: str,
                  frames: int, attempts: int) -> str | None:
    """One pair's rationale, or None (logged) when every attempt was empty or leaked a score."""
    resolve = (lambda name: root / name) if root is not None else Path
    content = [{"type": "text", "text": "Video A:"}, *video_parts(resolve(pair.video_a), media, frames),
               {"type": "text", "text": "Video B:"}, *video_parts(resolve(pair.video_b), media, frames),
               {"type": "text", "text": build_prompt(pair.mos_a, pair.mos_b, pair.margin)}]
    for attempt in range(1, attempts + 1):
        text = clean_rationale(client.complete(content))
        if text and not leaks_scores(text, (pair.mos_a, pair.mos_b, pair.margin)):
            return text
        log.warning("pair (%s, %s): attempt %d gave an empty or score-leaking reply",
                    pair.video_a, pair.video_b, attempt)
    log.error("pair (%s, %s): skipped after %d attempts", pair.video_a, pair.video_b, attempts)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", required=True, help="CSV with video_a, video_b, mos_a, mos_b[, margin]")
    parser.add_argument("--out", required=True, help="JSONL output (appended, resumable)")
    parser.add_argument("--base-url", required=True, help="OpenAI-compatible endpoint root, e.g. .../v1")
    parser.add_argument("--model", required=True)
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY", help="env var holding the API key")
    parser.add_argument("--video-root", default=None, help="folder the video names are relative to")
    parser.add_argument("--media", default="frames", choices=MEDIA_MODES)
    parser.add_argument("--frames", type=int, default=4, help="frames per video for --media frames")
    parser.add_argument("--retries", type=int, default=4)
    parser.add_argument("--backoff", type=float, default=2.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    client = ChatClient(args.base_url, args.model, os.environ.get(args.api_key_env, ""),
                        max_retries=args.retries, backoff=args.backoff)
    pairs = read_pairs(args.pairs)
    written = annotate_pairs(pairs, args.out, client, args.video_root, args.media, args.frames)
    total = len(load_rationales(args.out))
    print(f"annotated {written} new pairs; {total}/{len(pairs)} pairs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
