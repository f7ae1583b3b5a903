"""`smtplab up --state DIR` on the local backend: the relay's queue outlives the lab.

A lab started again on the same directory resumes what the relay had queued
(here: mail for a server that is down), instead of losing it with a temp dir.
"""

from __future__ import annotations

from pathlib import Path

from lab.catalog import load
from lab.nodes.mailserver.queue_files import META_SUFFIX, QUEUE_DIR
from lab.runtime.local import LocalBackend


async def test_a_lab_restarted_on_its_state_dir_resumes_the_relay_queue(tmp_path: Path) -> None:
    scenario = load("destination-down")
    state = tmp_path / "state"
    backend = LocalBackend(state_dir=state)
    lab = await backend.up(backend.plan(scenario))
    try:
        result = await lab.send(scenario.client[1].settings)
        assert result.code == 250, result.text
    finally:
        await lab.down()
    queued = sorted((state / "relay" / QUEUE_DIR).glob(f"*{META_SUFFIX}"))
    assert len(queued) == 1  # kept on disk after the lab went down

    lab = await backend.up(backend.plan(scenario))
    try:
        loaded = [e for e in lab.events("relay") if e["event"] == "queue-loaded"]
        assert [event["queue_ids"] for event in loaded] == [[queued[0].stem]]
    finally:
        await lab.down()
    assert state.is_dir()  # the user's directory is never deleted
