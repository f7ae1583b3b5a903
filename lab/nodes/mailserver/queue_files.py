"""The relay's queue on disk: two files per entry, written so that a crash loses nothing.

Every entry is `<data_dir>/queue/<id>.eml` (the message bytes) and
`<id>.json` (its `QueueEntry` record). Both are written to a temporary name,
fsynced and renamed, and the directory is fsynced, so an entry `enqueue`
returned exists after a crash; the metadata file is written last, so a
message file without one is a half-finished enqueue that nobody
acknowledged, and `load` removes it. Every method blocks: the queue runs
them in a worker thread so that disk I/O stays off the event loop.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

from lab.nodes.events import EventLog
from lab.nodes.mailserver.queue_entry import QueueEntry

QUEUE_DIR = "queue"
META_SUFFIX = ".json"
DATA_SUFFIX = ".eml"
TMP_SUFFIX = ".tmp"


def new_queue_id() -> str:
    """A fresh queue id; time first so that a directory listing is in arrival order,
    like Postfix ids."""
    return f"{time.time_ns() // 1000:X}{secrets.token_hex(2).upper()}"


class QueueFiles:
    """The queue directory of one relay.

    Args:
        directory: where the entries live (created on the first write).
        events: where unreadable entries found by `load` are reported.
    """

    def __init__(self, directory: Path, events: EventLog) -> None:
        self.directory = directory
        self._events = events

    def _path(self, queue_id: str, suffix: str) -> Path:
        return self.directory / f"{queue_id}{suffix}"

    def write_new(self, entry: QueueEntry, data: bytes) -> None:
        """Write a new entry durably: the message, then its metadata, then the directory."""
        self.directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(self._path(entry.id, DATA_SUFFIX), data)
        _atomic_write(self._path(entry.id, META_SUFFIX), _dump(entry))
        _fsync_directory(self.directory)

    def write_meta(self, entry: QueueEntry) -> None:
        """Replace an entry's metadata (after an attempt)."""
        _atomic_write(self._path(entry.id, META_SUFFIX), _dump(entry))

    def read_data(self, queue_id: str) -> bytes:
        """The message bytes of an entry."""
        return self._path(queue_id, DATA_SUFFIX).read_bytes()

    def unlink(self, queue_id: str) -> None:
        """Remove an entry's files."""
        # Metadata first: without it the message file is an orphan that `load` cleans up.
        self._path(queue_id, META_SUFFIX).unlink(missing_ok=True)
        self._path(queue_id, DATA_SUFFIX).unlink(missing_ok=True)
        _fsync_directory(self.directory)

    def load(self) -> list[QueueEntry]:
        """The entries a previous run left, oldest first; leftovers of crashed writes go."""
        if not self.directory.is_dir():
            return []
        entries: list[QueueEntry] = []
        for path in sorted(self.directory.iterdir()):
            if path.name.endswith(TMP_SUFFIX):
                path.unlink(missing_ok=True)  # a write that never reached its rename
            elif path.suffix == DATA_SUFFIX and not path.with_suffix(META_SUFFIX).exists():
                path.unlink(missing_ok=True)  # an enqueue that crashed before it returned
            elif path.suffix == META_SUFFIX:
                try:
                    entry = QueueEntry.from_json(json.loads(path.read_text(encoding="utf-8")))
                except (ValueError, KeyError, TypeError) as error:
                    self._events.emit("queue-corrupt", file=path.name, error=str(error))
                    continue
                if not path.with_suffix(DATA_SUFFIX).exists():
                    self._events.emit("queue-corrupt", file=path.name, error="message missing")
                    continue
                entries.append(entry)
        return sorted(entries, key=lambda e: (e.queued_at, e.id))


def _dump(entry: QueueEntry) -> bytes:
    return json.dumps(entry.to_json(), indent=1).encode("utf-8")


def _atomic_write(path: Path, data: bytes) -> None:
    """tmp + fsync + rename: a reader sees the old file or the new one, never half of it."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with tmp.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    tmp.replace(path)


def _fsync_directory(directory: Path) -> None:
    """Make the renames themselves durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
