"""A node's log of decisions (queries answered, replies given, retries): JSON lines on disk.

The same file is read by `smtplab logs`, the TUI and the tests, whichever
backend ran the node. It is bounded: a flood of clients must not fill the
disk. Once it reaches its size, one `log-truncated` event says so and later
events are counted, not written (the start of a lab's story is the part a
diagnosis needs).

Lines are written to the file once per turn of the event loop rather than
one write per event (a busy mx logs half a dozen events per message); an
event emitted outside a running loop is written at once. Each flush is one
`write` of whole lines to a file opened for appending, so several processes
may share one log (a mail server's workers, `mailserver/workers.py`): their
lines never split or overlap, and the bound counts what all of them wrote
(it may be overshot by what each wrote in its last turn).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"
EVENTS_MAX_BYTES = 64 * 1024 * 1024
_MARKER_ROOM = 512  # kept free below the bound for the `log-truncated` line
# One encoder for every line: `json.dumps(..., default=str)` builds a new one per call.
_ENCODE = json.JSONEncoder(default=str).encode


class EventLog:
    """Append-only JSON-lines log; one object per event with `ts`, `node`, `event`."""

    def __init__(
        self,
        data_dir: Path,
        node: str,
        *,
        echo: bool = False,
        max_bytes: int = EVENTS_MAX_BYTES,
    ) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / EVENTS_FILE
        self.node = node
        self.echo = echo
        self.max_bytes = max_bytes
        self.dropped = 0
        self._lock = threading.Lock()
        self._fd: int | None = os.open(
            self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
        )
        self._size = os.fstat(self._fd).st_size
        self._buffer: list[str] = []
        self._flush_pending = False

    def emit(self, event: str, **fields: Any) -> None:
        """Record one event; values must be JSON-serialisable (str() is used otherwise)."""
        record = {"ts": round(time.time(), 6), "node": self.node, "event": event, **fields}
        line = _ENCODE(record) + "\n"
        with self._lock:
            if self.dropped:
                self.dropped += 1
                return
            size = len(line)  # json.dumps escapes non-ASCII: characters are bytes
            if self._size + size > self.max_bytes - _MARKER_ROOM:
                self.dropped = 1
                marker = {"ts": record["ts"], "node": self.node, "event": "log-truncated"}
                line = json.dumps({**marker, "max_bytes": self.max_bytes}) + "\n"
                size = len(line)
            self._buffer.append(line)
            self._size += size
            self._schedule_flush()
        if self.echo:
            sys.stderr.write(line)

    def _schedule_flush(self) -> None:
        """Called with the lock held: flush at the loop's next turn, or now without a loop."""
        if self._flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_buffer()
            return
        self._flush_pending = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what was emitted so far to the file."""
        with self._lock:
            self._flush_pending = False
            self._write_buffer()

    def _write_buffer(self) -> None:
        """Called with the lock held: the buffered lines in one append."""
        if self._fd is None or not self._buffer:
            return
        data = "".join(self._buffer).encode("utf-8")
        self._buffer.clear()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        # Where the file ends now, other writers' lines included.
        self._size = os.lseek(self._fd, 0, os.SEEK_CUR)

    def close(self) -> None:
        """Flush and close the file."""
        with self._lock:
            self._write_buffer()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def read_events(data_dir: Path) -> list[dict[str, Any]]:
    """Every event a node recorded so far (a partially written last line is skipped)."""
    path = data_dir / EVENTS_FILE
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events
