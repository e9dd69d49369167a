"""An exclusive, self-describing lock on an evaluation journal (one writer per journal file).

``flock`` on a sidecar file that names its holder; the kernel drops it when the holder's process
ends however it ends, so a crashed run never blocks the next one. Used by
:class:`callbacks.journal.Journal`.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


class JournalLockedError(RuntimeError):
    """Another process is using the journal (the message names it)."""


def now() -> str:
    """UTC timestamp in ISO 8601 (second resolution)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class JournalLock:
    """Exclusive ``flock`` on a sidecar file that names its holder (pid, host, start, command).

    The kernel drops the lock when its process ends however it ends, so a lock file left by a
    killed run never blocks: only the flock decides, the file's text is for the message.

    Args:
        path: the sidecar lock file (created when absent, never deleted: deleting it would let a
            waiter lock an unlinked file while a newcomer locks a fresh one).
    """

    POLL_S = 0.1

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file: Any = None

    def acquire(self, timeout: float = 0.0, what: str = "") -> None:
        """Lock, waiting up to ``timeout`` seconds for the holder to finish.

        Raises:
            JournalLockedError: still held after ``timeout``; names the holder.
            ValueError: a negative ``timeout``.
        """
        if timeout < 0:
            raise ValueError(f"lock timeout must be >= 0 seconds, got {timeout}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self.holder()
                    handle.close()
                    raise JournalLockedError(self._busy_message(what or str(self.path), holder, timeout)) from None
                time.sleep(self.POLL_S)
        handle.truncate(0)
        handle.write(
            json.dumps(
                {"pid": os.getpid(), "host": socket.gethostname(), "since": now(), "command": " ".join(sys.argv)}
            )
        )
        handle.flush()
        self._file = handle

    def holder(self) -> dict[str, Any]:
        """What the lock file says about its holder (empty while it is being written)."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, json.JSONDecodeError):
            return {}

    @staticmethod
    def _busy_message(what: str, holder: dict[str, Any], timeout: float) -> str:
        waited = f"after waiting {timeout:g} s" if timeout > 0 else "(lock_timeout is 0)"
        who = {k: holder.get(k, "?") for k in ("pid", "host", "since", "command")}
        return (
            f"{what} is in use by another run {waited}: pid {who['pid']} on {who['host']} "
            f"since {who['since']}, command: {who['command']!r}. Wait for it to finish, "
            "give this run more lock_timeout, or another journal_dir."
        )

    def release(self) -> None:
        """Unlock (idempotent); the file stays."""
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
