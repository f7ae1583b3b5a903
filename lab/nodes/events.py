"""A node's log of decisions (queries answered, replies given, retries): JSON lines on disk.

The same file is read by `smtplab logs`, the TUI and the tests, whichever
backend ran the node.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"


class EventLog:
    """Append-only JSON-lines log; one object per event with `ts`, `node`, `event`."""

    def __init__(self, data_dir: Path, node: str, *, echo: bool = False) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / EVENTS_FILE
        self.node = node
        self.echo = echo
        self._lock = threading.Lock()
        self._file = self.path.open("a", encoding="utf-8", buffering=1)

    def emit(self, event: str, **fields: Any) -> None:
        """Record one event; values must be JSON-serialisable (str() is used otherwise)."""
        record = {"ts": round(time.time(), 6), "node": self.node, "event": event, **fields}
        line = json.dumps(record, default=str)
        with self._lock:
            self._file.write(line + "\n")
        if self.echo:
            sys.stderr.write(line + "\n")

    def close(self) -> None:
        """Flush and close the file."""
        with self._lock:
            self._file.close()


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
