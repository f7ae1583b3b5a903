"""Records of local labs that outlive one command: what `smtplab up` leaves for `labs`/`down`.

A local lab lives as long as its `smtplab up` process. That process writes
`<state>/labs/<lab id>.json` naming itself by pid *and* start time
(`labels.process_token`), so that a pid the kernel has since given to some
other program is never taken for the lab's owner: such a record is dead, its
process is never signalled, and its directory (TLS private keys, mail) can go.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.runtime.labels import owner_alive, process_token

RECORD_SUFFIX = ".json"
# `LocalBackend.up` makes lab directories with this prefix; only such a directory is
# ever deleted on a record's word (a record is a file anyone could have edited).
LAB_DIR_PREFIX = "smtplab-"


@dataclass(frozen=True)
class LocalLabRecord:
    """One `smtplab up` lab as its record describes it."""

    path: Path
    id: str
    scenario: str
    owner: str | None  # "<pid>:<start ticks>"; None in records of older versions
    user: str
    data: Path | None
    keep_data: bool  # `up --state DIR`: the directory is the user's, never deleted

    @property
    def pid(self) -> int | None:
        """The owner's pid as recorded."""
        text = (self.owner or "").partition(":")[0]
        return int(text) if text.isdigit() else None

    @property
    def alive(self) -> bool:
        """Whether the very process that wrote the record still runs (pid and start time)."""
        return self.owner is not None and owner_alive(self.owner)

    @property
    def owner_text(self) -> str:
        """Who owns the lab, for `labs` and `down --all`."""
        if self.alive:
            return f"smtplab up (pid {self.pid}, user {self.user})"
        return f"dead (was pid {self.pid or '?'}, user {self.user})"


def write_record(
    directory: Path, lab_id: str, scenario: str, data: Path, *, keep_data: bool
) -> Path:
    """Record this process as the owner of local lab `lab_id`; the record's path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{lab_id}{RECORD_SUFFIX}"
    path.write_text(
        json.dumps(
            {
                "id": lab_id,
                "backend": "local",
                "scenario": scenario,
                "owner": process_token(),
                "user": getpass.getuser(),
                "data": str(data),
                "keep_data": keep_data,
            }
        ),
        encoding="utf-8",
    )
    return path


def read_records(directory: Path) -> dict[str, LocalLabRecord]:
    """Every readable record by lab id (files that are not records are skipped)."""
    records = {}
    for path in sorted(directory.glob(f"*{RECORD_SUFFIX}")):
        try:
            raw: Any = json.loads(path.read_text(encoding="utf-8"))
            data = raw.get("data")
            records[path.stem] = LocalLabRecord(
                path=path,
                id=path.stem,
                scenario=str(raw.get("scenario", "?")),
                owner=raw.get("owner") if isinstance(raw.get("owner"), str) else None,
                user=str(raw.get("user", "?")),
                data=Path(data) if isinstance(data, str) and data else None,
                keep_data=bool(raw.get("keep_data", False)),
            )
        except (OSError, ValueError, AttributeError):
            continue
    return records


def stop(record: LocalLabRecord) -> bool:
    """SIGTERM the lab's `smtplab up` process if it is still the recorded one; whether it was.

    Its own shutdown then removes the record and the lab's files.
    """
    if not record.alive or record.pid is None:
        return False
    os.kill(record.pid, signal.SIGTERM)
    return True


def remove_dead(record: LocalLabRecord) -> Path | None:
    """Remove a dead lab's record and its directory; the directory removed, if any.

    The directory goes only when it is one `LocalBackend` made (a `smtplab-*`
    directory that is not a symlink) and not a `--state` directory.
    """
    removed = None
    data = record.data
    if (
        data is not None
        and not record.keep_data
        and data.name.startswith(LAB_DIR_PREFIX)
        and data.is_dir()
        and not data.is_symlink()
    ):
        shutil.rmtree(data, ignore_errors=True)
        removed = data
    record.path.unlink(missing_ok=True)
    return removed
