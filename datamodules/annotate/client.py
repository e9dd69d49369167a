"""A stdlib client for an OpenAI-compatible ``/chat/completions`` endpoint, with backoff.

Transient failures -- HTTP 408/409/425/429 and 5xx, timeouts, dropped connections -- are retried
up to ``max_retries`` times. The wait honours a ``Retry-After`` header (seconds or an HTTP date)
plus a little jitter; without one it is exponential with "equal jitter" (half fixed, half random),
so many threads that failed together do not retry together. Other 4xx answers and malformed
replies are not retried. Every failure surfaces as :class:`RequestError` whose ``kind``
(``http_<code>``, ``timeout``, ``connection``, ``malformed_response``) becomes the record's reason.

The client is stateless apart from its settings, so one instance serves all worker threads.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ChatClient", "Reply", "RequestError", "RETRY_STATUS", "retry_after_seconds"]

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class RequestError(RuntimeError):
    """A request that failed for good; ``kind`` names the failure, ``requests`` counts tries."""

    def __init__(self, kind: str, message: str, requests: int) -> None:
        super().__init__(message)
        self.kind, self.requests = kind, requests


@dataclass(frozen=True)
class Reply:
    """A chat-completions answer: the first choice's text and the ``usage`` token counts."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    requests: int  # HTTP requests this reply took (1 + retries)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value (``None`` if absent or unreadable).

    >>> retry_after_seconds("3"), retry_after_seconds(None), retry_after_seconds("soon")
    (3.0, None, None)
    >>> retry_after_seconds("Thu, 01 Jan 1970 00:01:00 GMT", now=30.0)
    30.0
    """
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def _reply(payload: Any, url: str, requests: int) -> Reply:
    """Text and usage of a chat-completions response body."""
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise RequestError(
            "malformed_response", f"{url}: no choices[0].message.content in {str(payload)[:300]}", requests
        ) from None
    if isinstance(content, list):  # some servers answer with content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    usage = payload.get("usage") or {}
    return Reply(
        str(content or ""), int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), requests
    )


@dataclass
class ChatClient:
    """OpenAI-compatible chat-completions client (stdlib ``urllib``), safe to share across threads.

    Attributes:
        base_url: endpoint root, e.g. ``http://localhost:8000/v1`` (``/chat/completions`` appended).
        model: model name sent with each request (and recorded with each rationale).
        api_key: bearer token (empty: no ``Authorization`` header).
        temperature: sampling temperature (> 0 so that a retried pair gets a different reply).
        max_tokens: completion cap per request.
        timeout: seconds per HTTP request.
        max_retries: retries after the first try, for transient failures only.
        backoff: base wait in seconds (doubles per retry, capped by ``max_backoff``).
        max_backoff: longest wait between tries, ``Retry-After`` included.
        stop: once set (Ctrl-C), waits between retries end at once with a ``RequestError``.
    """

    base_url: str
    model: str
    api_key: str = ""
    temperature: float = 0.7
    max_tokens: int = 1024
    timeout: float = 300.0
    max_retries: int = 6
    backoff: float = 2.0
    max_backoff: float = 300.0
    stop: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.max_backoff, retry_after + random.uniform(0.0, self.backoff))
        step = min(self.max_backoff, self.backoff * 2**attempt)
        return step / 2 + random.uniform(0.0, step / 2)

    def _send(self, body: bytes) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())

    def complete(self, messages: list[dict[str, Any]]) -> Reply:
        """Send one conversation; retry transient failures; return the reply.

        Raises:
            RequestError: a non-retryable answer, retries used up, or :attr:`stop` set.
        """
        body = json.dumps(
            {"model": self.model, "messages": messages, "temperature": self.temperature, "max_tokens": self.max_tokens}
        ).encode()
        attempt = 0
        while True:
            retry_after = None
            try:
                return _reply(self._send(body), self.url, attempt + 1)
            except urllib.error.HTTPError as err:
                kind = f"http_{err.code}"
                message = f"{self.url}: HTTP {err.code}: {err.read()[:300]!r}"
                if err.code not in RETRY_STATUS:
                    raise RequestError(kind, message, attempt + 1) from None
                retry_after = retry_after_seconds(err.headers.get("Retry-After"))
            except json.JSONDecodeError as err:
                raise RequestError("malformed_response", f"{self.url}: reply is not JSON: {err}", attempt + 1) from None
            except (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError) as err:
                reason = getattr(err, "reason", err)
                kind = "timeout" if isinstance(reason, TimeoutError) else "connection"
                message = f"{self.url}: {kind}: {reason}"
            if attempt == self.max_retries or self.stop.wait(self._delay(attempt, retry_after)):
                raise RequestError(kind, f"{message} (after {attempt + 1} tries)", attempt + 1)
            attempt += 1
