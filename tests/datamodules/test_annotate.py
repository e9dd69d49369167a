"""Tests for the CoT annotation prompt and client, against a fake local chat-completions server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest

from datamodules.annotate import (
    ChatClient,
    PairRow,
    annotate_pairs,
    build_prompt,
    leaks_scores,
    load_rationales,
    main,
    margin_descriptor,
    read_pairs,
)
from datamodules.synthetic import encode_mp4


class FakeServer:
    """Chat-completions server on 127.0.0.1 that replays scripted ``(status, reply)`` answers."""

    def __init__(self) -> None:
        self.script: list[tuple[int, str]] = []
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                server.headers.append(dict(self.headers))
                status, reply = server.script.pop(0) if server.script else (200, "A is sharp; B is soft.")
                payload = {"choices": [{"message": {"role": "assistant", "content": reply}}]}
                data = json.dumps(payload if status == 200 else {"error": reply}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


def test_descriptor_rules_and_prompt_fields() -> None:
    assert margin_descriptor(0.19) == "about the same"
    assert margin_descriptor(-0.59) == "slightly better"
    assert margin_descriptor(1.19) == "clearly better"
    assert margin_descriptor(1.2) == "substantially better"
    with pytest.raises(ValueError, match="NaN"):
        margin_descriptor(float("nan"))
    prompt = build_prompt(2.5, 3.75)
    assert "2.50" in prompt and "3.75" in prompt and "-1.25" in prompt
    assert "Video B is substantially better than Video A" in prompt
    assert "Evidence for Video A" in prompt and "Evidence for Video B" in prompt and "gap" in prompt
    assert "do not mention any score" in prompt


def test_leak_detection() -> None:
    assert leaks_scores("A reaches 4.1 on the scale", [4.12, 3.0])
    assert leaks_scores("Its MOS is higher", [4.12])
    assert not leaks_scores("A is sharp, B has 2 blocky areas.", [4.12, 3.0])


def test_annotate_retries_skips_leaks_and_resumes(server: FakeServer, tmp_path: Path) -> None:
    pairs = [PairRow("a.mp4", "b.mp4", 4.0, 2.5, 1.5), PairRow("c.mp4", "d.mp4", 3.0, 3.1, -0.1)]
    server.script = [(503, "busy"), (200, "<think>A is crisp.</think>"),  # retried after a 503
                     (200, "A scores 3.00 and B 3.10"), (200, "Both look alike, mild noise.")]
    client = ChatClient(server.url, "fake-model", api_key="k", backoff=0.01)
    out = tmp_path / "rationales.jsonl"
    assert annotate_pairs(pairs, out, client, media="none") == 2
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["rationale"] for r in records] == ["A is crisp.", "Both look alike, mild noise."]
    assert records[0]["descriptor"] == "substantially better" and records[1]["model"] == "fake-model"
    assert len(server.requests) == 4 and server.headers[0]["Authorization"] == "Bearer k"
    assert annotate_pairs(pairs, out, client, media="none") == 0  # resumed: nothing left to do
    assert len(server.requests) == 4
    assert load_rationales(out)[("c.mp4", "d.mp4")] == "Both look alike, mild noise."


def test_client_error_is_not_retried(server: FakeServer) -> None:
    server.script = [(400, "bad request")]
    with pytest.raises(RuntimeError, match="HTTP 400"):
        ChatClient(server.url, "m", backoff=0.01).complete([{"type": "text", "text": "hi"}])
    assert len(server.requests) == 1


def test_cli_sends_frames(server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    for name in ("x.mp4", "y.mp4"):
        encode_mp4(rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8), tmp_path / name, crf=20)
    (tmp_path / "pairs.csv").write_text("video_a,video_b,mos_a,mos_b\nx.mp4,y.mp4,1.5,4.0\n")
    monkeypatch.setenv("MY_KEY", "secret")
    out = tmp_path / "out.jsonl"
    code = main(["--pairs", str(tmp_path / "pairs.csv"), "--out", str(out), "--base-url", server.url,
                 "--model", "m", "--api-key-env", "MY_KEY", "--video-root", str(tmp_path),
                 "--frames", "2", "--backoff", "0.01"])
    assert code == 0 and load_rationales(out)[("x.mp4", "y.mp4")] == "A is sharp; B is soft."
    parts = server.requests[0]["messages"][0]["content"]
    images = [p for p in parts if p["type"] == "image_url"]
    assert len(images) == 4 and images[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert "Video B is substantially better than Video A" in parts[-1]["text"]
    assert server.headers[0]["Authorization"] == "Bearer secret"


def test_read_pairs_names_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("video_a,video_b,mos_a,mos_b\na,b,1,2\nc,d,oops,2\n")
    with pytest.raises(ValueError, match="row 3"):
        read_pairs(path)
    path.write_text("video_a,mos_a\na,1\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_pairs(path)
