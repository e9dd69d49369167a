"""Annotation parts: label words, the acceptance rule, the template file, the JSONL, the client.

The end-to-end path (pairs -> concurrent run -> SFT) is in ``test_annotate_e2e.py``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from datamodules.annotate import margin_descriptor, verdict_sentence, verify_reply
from datamodules.annotate.client import ChatClient, RequestError
from datamodules.annotate.descriptors import quality_levels
from datamodules.annotate.pairs_csv import PairRow, read_pairs, write_pairs
from datamodules.annotate.prompt import build_messages, load_template
from datamodules.annotate.records import RecordWriter, read_records, summarize
from datamodules.annotate.verify import WORD_BOUNDS, find_leak

HI = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def _rec(a: str, b: str, status: str = "accepted", **kw: object) -> dict:
    return {"video_a": a, "video_b": b, "status": status, "rationale": "A is sharp.", **kw}


def test_descriptor_rules_and_levels() -> None:
    assert [margin_descriptor(m) for m in (0.19, -0.59, 1.19, 1.2)] == [
        "about the same",
        "slightly better",
        "clearly better",
        "substantially better",
    ]
    with pytest.raises(ValueError, match="NaN"):
        margin_descriptor(float("nan"))
    assert verdict_sentence(-0.1) == "Overall, Video A and Video B are about the same."
    assert quality_levels(1.2, 4.8) == ("bad", "excellent")
    with pytest.raises(ValueError, match=r"\[1, 5\]"):
        quality_levels(0.5, 3.0)


@pytest.mark.parametrize(
    ("margin", "verdict", "ok", "reason"),
    [
        (0.9, "Overall, Video A is clearly better than Video B.", True, None),
        (0.9, "Overall, Video B is clearly better than Video A.", False, "wrong_direction"),
        (0.9, "Overall, Video A is slightly better than Video B.", False, "wrong_degree"),
        (0.9, "Overall, Video A and Video B are about the same.", False, "wrong_direction"),
        (-0.1, "Overall, Video A and Video B are about the same.", True, None),
        (-0.1, "Overall, Video B is slightly better than Video A.", False, "wrong_direction"),
        (-2.0, "**Overall, video b is substantially better than video a**", True, None),
        (0.9, "So A wins.", False, "no_verdict"),
    ],
)
def test_verdict_decides_direction_and_degree(
    good_body: str, margin: float, verdict: str, ok: bool, reason: str | None
) -> None:
    check = verify_reply(f"{good_body} {verdict}", margin)
    assert (check.ok, check.reason) == (ok, reason)
    if ok:  # the verdict is kept, in its canonical form, as the last sentence
        assert check.rationale == f"{good_body} {verdict_sentence(margin)}"


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("Its MOS is higher.", "score_leak"),
        ("It reaches 4.2 on the scale.", "score_leak"),
        ("I would give it 4/5.", "score_leak"),
        ("Roughly 3 out of 5.", "score_leak"),
        ("About 20% more blur.", "score_leak"),
        ("It earned a score of four.", "score_leak"),
        ("A 4-star picture quality.", "score_leak"),
        ("The quality level 3 shows.", "score_leak"),
        ("As the reference information says, B is soft.", "mentions_reference"),
        ("The ground truth favours A.", "mentions_reference"),
        ("In short, Video B is better than Video A.", "wrong_direction"),
        ("Video A looks much worse than Video B.", "wrong_direction"),
    ],
)
def test_body_is_checked_for_leaks_reference_and_contradiction(good_body: str, extra: str, reason: str) -> None:
    text = f"{good_body} {extra} Overall, Video A is clearly better than Video B."
    check = verify_reply(text, 0.9)
    assert not check.ok and check.reason == reason and check.detail


@pytest.mark.parametrize(
    "extra",
    [
        "Video B is not better than Video A in any respect.",  # negated claim
        "Video B has better colour than Video A, though.",  # an attribute, not the overall winner
        "Video A shows 2 blocky areas at 1080p and 30 frames of pan.",  # counts are not scores
        "On-screen text labels stay legible and viewers would notice the flicker.",
    ],
)
def test_legitimate_text_is_accepted(good_body: str, extra: str) -> None:
    check = verify_reply(f"{good_body} {extra} Overall, Video A is clearly better than Video B.", 0.9)
    assert check.ok, check


def test_length_bounds_tags_and_thinking(good_body: str) -> None:
    verdict = " Overall, Video A is clearly better than Video B."
    assert verify_reply("", 0.9).reason == "empty"
    assert verify_reply("Sharp." + verdict, 0.9).reason == "too_short"
    long = verify_reply(good_body * 6 + verdict, 0.9)
    assert long.reason == "too_long" and f"{WORD_BOUNDS[1]}" in long.detail
    tagged = verify_reply(f"<think>{good_body}{verdict}</think><answer>", 0.9)
    assert tagged.ok and "<" not in tagged.rationale
    thought = verify_reply(f"<think>MOS 4.3 vs 2.1, easy.</think>{good_body}{verdict}", 0.9)
    assert thought.ok and "4.3" not in thought.rationale  # private thinking is dropped


def test_find_leak_names_what_leaked() -> None:
    assert find_leak("scores 3.42 here") == "a decimal number: '3.42'"
    assert find_leak("Video A is sharp; Video B is blurry.") is None


def test_template_file_is_versioned_checked_and_gives_no_numbers(tmp_path: Path) -> None:
    template = load_template()
    assert template.version == "pairwise-cot-v1" and re.fullmatch(r"[0-9a-f]{12}", template.sha)
    assert "missing" in Path(template.path).read_text().lower()  # says the paper's text is absent
    prompt = template.render(4.3712, 2.0654, "frames", 8)
    assert "Overall, Video A is substantially better than Video B." in prompt
    assert "good" in prompt and "poor" in prompt and "8 frames" in prompt
    assert not re.search(r"\d\.\d|4\.37|2\.07|2\.31", prompt)  # neither MOS nor margin
    assert "video file" in template.render(3.0, 3.1, "video_url")
    with pytest.raises(ValueError, match="allowed"):
        template.render(3.0, 3.1, "gif")
    bad = tmp_path / "bad.txt"
    bad.write_text(Path(template.path).read_text().replace("{verdict}", "{verdcit}"))
    with pytest.raises(ValueError, match=r"bad\.txt.*verdcit"):
        load_template(bad)
    bad.write_text("=== user ===\n{verdict}{video_note}\n")
    with pytest.raises(ValueError, match="version"):
        load_template(bad)


def test_messages_show_a_then_b_and_carry_the_rejection() -> None:
    template = load_template()
    a, b = [{"type": "image_url", "image_url": {"url": "A"}}], [{"type": "image_url", "image_url": {"url": "B"}}]
    msgs = build_messages(template, 2.0, 4.0, a, b, rejection=("score_leak", "a decimal number"))
    assert msgs[0]["role"] == "system"
    parts = msgs[1]["content"]
    assert [p.get("text") or p["image_url"]["url"] for p in parts[:4]] == ["Video A:", "A", "Video B:", "B"]
    assert "score_leak" in parts[-1]["text"] and "Overall" in parts[-2]["text"]


def test_records_latest_wins_torn_tail_tolerated_and_repaired(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    with RecordWriter(out) as sink:
        sink.write(_rec("a", "b", "failed", reason="http_500"))
        sink.write(_rec("a", "b"))
        sink.write(_rec("c", "d", "rejected", reason="score_leak"))
    with open(out, "a") as fh:
        fh.write('{"video_a": "e", "video_b": "f", "sta')  # killed mid-write
    recs = read_records(out)
    assert set(recs) == {("a", "b"), ("c", "d")} and recs[("a", "b")]["status"] == "accepted"
    with RecordWriter(out) as sink:  # cuts the torn line before appending
        sink.write(_rec("e", "f"))
    assert [json.loads(x)["video_a"] for x in out.read_text().splitlines()] == ["a", "a", "c", "e"]
    with open(out, "a") as fh:
        fh.write(json.dumps(_rec("g", "h")))  # complete, only the newline is missing
    with RecordWriter(out) as sink:
        sink.write(_rec("i", "j"))
    assert ("g", "h") in read_records(out) and ("i", "j") in read_records(out)
    summary = summarize(read_records(out), [("a", "b"), ("c", "d"), ("x", "y")])
    assert (summary.accepted, dict(summary.rejected), summary.pending) == (1, {"score_leak": 1}, 1)


def test_records_reject_bad_lines_with_file_and_line(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    out.write_text(json.dumps(_rec("a", "b")) + "\nnot json\n" + json.dumps(_rec("c", "d")) + "\n")
    with pytest.raises(ValueError, match=r"r\.jsonl:2"):
        read_records(out)
    out.write_text(json.dumps({"video_a": "a", "video_b": "b", "rationale": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"r\.jsonl:1.*status"):
        read_records(out)
    out.write_text(json.dumps(_rec("a", "b", rationale=" ")) + "\n")
    with pytest.raises(ValueError, match="empty 'rationale'"):
        read_records(out)


def test_pairs_csv_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    rows = [PairRow("a.mp4", "b.mp4", 4.1, 2.3, "x"), PairRow("c.mp4", "a.mp4", 1.0, 5.0, "x")]
    write_pairs(path, rows)
    assert read_pairs(path) == rows and read_pairs(path)[0].margin == 4.1 - 2.3
    four, five = "video_a,video_b,mos_a,mos_b\n", "video_a,video_b,mos_a,mos_b,margin\n"
    for text, match in [
        (four + "a,b,1,2\nc,d,oops,2\n", "row 3"),
        (four + "a,b,1,7\n", r"row 2.*\[1, 5\]"),
        (five + "a,b,1,2,0.5\n", "row 2: margin"),
        (four + "a,a,1,2\n", "two different"),
        (four + "a,b,1,2\na,b,3,3\n", "row 3.*row 2"),
    ]:
        path.write_text(text)
        with pytest.raises(ValueError, match=match):
            read_pairs(path)
    path.write_text("video_a,mos_a\na,1\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_pairs(path)


def test_client_retries_transient_errors_only(standin) -> None:
    client = ChatClient(standin.url, "m", api_key="k", backoff=0.01, max_retries=3)
    standin.default = "500"
    with pytest.raises(RequestError, match="HTTP 500.*after 4 tries") as err:
        client.complete(HI)
    assert err.value.kind == "http_500" and err.value.requests == 4 and len(standin.requests) == 4
    standin.default = "400"
    with pytest.raises(RequestError, match="HTTP 400") as err:
        client.complete(HI)
    assert err.value.kind == "http_400" and len(standin.requests) == 5  # not retried


def test_client_honours_retry_after_and_reports_usage(standin) -> None:
    client = ChatClient(standin.url, "m", backoff=0.01)
    standin.script[None] = ["429:1"]  # type: ignore[index]  # no video in the request: key None
    messages = [{"role": "user", "content": [{"type": "text", "text": verdict_sentence(0.9)}]}]
    start = time.monotonic()
    reply = client.complete(messages)
    (t0, _, first), (t1, _, second) = standin.log
    assert (first, second) == ("429:1", "good") and t1 - t0 >= 1.0
    assert reply.requests == 2 and time.monotonic() - start >= 1.0
    assert reply.prompt_tokens == standin.usage["prompt_tokens"] > 0
    assert reply.completion_tokens == len(reply.text.split())


def test_client_times_out_and_retries(standin) -> None:
    client = ChatClient(standin.url, "m", backoff=0.01, timeout=0.3, max_retries=1)
    standin.default = "sleep:1.0"
    with pytest.raises(RequestError, match="timeout") as err:
        client.complete([{"role": "user", "content": [{"type": "text", "text": verdict_sentence(1)}]}])
    assert err.value.kind == "timeout" and err.value.requests == 2
