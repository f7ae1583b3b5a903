"""Docker labs this process started and has not taken down: removed at interpreter exit
(a per-process `atexit` hook), so that an interrupted run leaves nothing behind."""

from __future__ import annotations

import atexit
import contextlib
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.runtime.docker.lab import DockerLab

_LIVE: dict[str, DockerLab] = {}
_LIVE_LOCK = threading.Lock()


def track(lab: DockerLab) -> None:
    """Remove `lab` at exit unless it is taken down (or `forget`ten) before."""
    with _LIVE_LOCK:
        _LIVE[lab.id] = lab


def forget(lab_id: str) -> None:
    """No longer remove lab `lab_id` at exit (it is down, or detached)."""
    with _LIVE_LOCK:
        _LIVE.pop(lab_id, None)


@atexit.register
def _down_live_labs() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE.values())
    for lab in live:
        with contextlib.suppress(Exception):
            lab.down_sync()
