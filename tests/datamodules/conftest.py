"""A local OpenAI-compatible stand-in for the annotation tests (``standin`` fixture).

It serves ``POST /v1/chat/completions`` on 127.0.0.1 from a ``ThreadingHTTPServer`` (so
concurrent requests really overlap) and answers like a scripted annotator: it reads the verdict
sentence the prompt demands and replies with a good rationale, one arguing the wrong way, one
leaking a score, or an HTTP error -- per pair and per attempt, as the test scripts it. In
``video_url`` mode it knows which pair a request is about from the videos' bytes.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

GOOD_BODY = (
    "Video A shows fine texture on the foliage, steady exposure and smooth panning with "
    "little visible noise. Video B has soft edges, some blocking in the sky and flicker in "
    "the darker regions, and its motion stutters during the pan. The gap comes from detail, "
    "compression artefacts and temporal stability rather than from the content itself."
)
LEAK_BODY = GOOD_BODY + " Video A would get 4.2/5 from most viewers."
_VERDICT = re.compile(r"^Overall, .*\.$", re.MULTILINE)


def _flip(verdict: str) -> str:
    if "about the same" in verdict:
        return "Overall, Video A is clearly better than Video B."
    return verdict.replace("Video A", "Video X").replace("Video B", "Video A").replace("Video X", "Video B")


class StandIn:
    """Scripted chat-completions server; see the module docstring.

    Attributes:
        script: ``(video_a, video_b) -> [behaviour per request]``, then ``default``; requests
            that show no known video count under the key ``None``.
            Behaviours: ``good``, ``wrong``, ``leak``, ``long``, ``429`` (``429:S`` sends
            ``Retry-After: S``), ``500``, ``400``, ``sleep:S`` (a good reply after S seconds).
        names: base64 of a video file -> its name (identifies pairs in ``video_url`` mode).
        delay: seconds every request takes (to make overlap observable).
        requests: every request body, in arrival order.
        log: ``(arrival time, pair key or None, behaviour)`` per request.
        max_in_flight: most requests served at the same time.
        usage: prompt / completion tokens reported in 200 replies (totals).
    """

    def __init__(self) -> None:
        self.script: dict[tuple[str, str], list[str]] = {}
        self.default = "good"
        self.names: dict[str, str] = {}
        self.delay = 0.0
        self.requests: list[dict] = []
        self.log: list[tuple[float, tuple[str, str] | None, str]] = []
        self.max_in_flight = 0
        self.usage: Counter = Counter()
        self._seen: Counter = Counter()
        self._in_flight = 0
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def register(self, folder: Path, names: list[str]) -> None:
        """Remember the bytes of ``folder / name`` for each name (``video_url`` mode)."""
        for name in names:
            self.names[base64.b64encode((folder / name).read_bytes()).decode()] = name

    def requests_for(self, key: tuple[str, str]) -> int:
        return sum(1 for _, k, _ in self.log if k == key)

    def _pair(self, body: dict) -> tuple[str, str] | None:
        urls = [
            p["video_url"]["url"].split(",", 1)[1]
            for m in body["messages"]
            if isinstance(m["content"], list)
            for p in m["content"]
            if p["type"] == "video_url"
        ]
        names = [self.names.get(u) for u in urls]
        return (names[0], names[1]) if len(names) == 2 and None not in names else None

    def _behaviour(self, body: dict) -> tuple[tuple[str, str] | None, str]:
        key = self._pair(body)
        with self._lock:
            n = self._seen[key]
            self._seen[key] += 1
            self.requests.append(body)
            plan = self.script.get(key, [])  # type: ignore[arg-type]
            todo = plan[n] if n < len(plan) else self.default
            self.log.append((time.monotonic(), key, todo))
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        return key, todo

    def _answer(self, body: dict, todo: str) -> tuple[int, dict, dict]:
        """(status, headers, payload) for one request."""
        if todo.split(":")[0] in ("429", "500", "400"):
            headers = {"Retry-After": todo.split(":")[1]} if ":" in todo else {}
            return int(todo.split(":")[0]), headers, {"error": {"message": f"scripted {todo}"}}
        if todo.startswith("sleep:"):
            time.sleep(float(todo.split(":")[1]))
        texts = [
            p["text"]
            for m in body["messages"]
            if isinstance(m["content"], list)
            for p in m["content"]
            if p["type"] == "text"
        ]
        verdict = _VERDICT.search("\n".join(texts)).group(0)
        body_text = {"leak": LEAK_BODY, "long": GOOD_BODY * 6}.get(todo, GOOD_BODY)
        reply = f"{body_text} {_flip(verdict) if todo == 'wrong' else verdict}"
        usage = {"prompt_tokens": sum(len(t.split()) for t in texts) + 100, "completion_tokens": len(reply.split())}
        with self._lock:
            self.usage.update(usage)
        return 200, {}, {"choices": [{"message": {"role": "assistant", "content": reply}}], "usage": usage}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                _, todo = server._behaviour(body)
                try:
                    time.sleep(server.delay)
                    status, headers, payload = server._answer(body, todo)
                finally:
                    with server._lock:
                        server._in_flight -= 1
                data = json.dumps(payload).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    return

            def log_message(self, *args: object) -> None:
                return

        return Handler


def _serve() -> Iterator[StandIn]:
    server = StandIn()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def standin() -> Iterator[StandIn]:
    """A fresh stand-in server, shut down after the test."""
    yield from _serve()


@pytest.fixture(scope="module")
def module_standin() -> Iterator[StandIn]:
    """One stand-in server shared by a module's tests."""
    yield from _serve()


@pytest.fixture
def good_body() -> str:
    """A rationale body (no verdict) that passes every check."""
    return GOOD_BODY
