"""Shared pieces for the TUI tests: waiting on Pilot, and hand-made diagnosis engines.

The hand-made engines follow the `lab.diagnosis.events` contract exactly; they
make snapshots deterministic (no timings, no race with real probes). The real
flow tests use the real engine.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from textual.pilot import Pilot

from lab.diagnosis.events import Diagnosis, Probe, Remedy, Status, Step
from lab.runtime.base import Lab
from lab.scenario.model import MailSettings
from lab.smtp.transcript import Direction, TranscriptLine

WAIT = 20.0  # generous: a 2-core CI machine under load


async def wait_for(
    pilot: Pilot[object], predicate: Callable[[], bool], timeout: float = WAIT, what: str = ""
) -> None:
    """Let the app run until `predicate()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.05)


async def idle_engine(lab: Lab, settings: MailSettings) -> AsyncIterator[Step | Diagnosis]:
    """An engine that never produces anything (until cancelled): a still workbench."""
    await asyncio.Event().wait()
    yield  # pragma: no cover  (makes this an async generator)


@dataclass(frozen=True)
class Entry:
    """A catalog entry as training needs it."""

    id: str
    title: str
    probe: str | None = None
    tags: tuple[str, ...] = ()


CATALOG = (
    Entry("port-blocked-timeout", "Outbound port blocked (connect timeout)", "ports", ("network",)),
    Entry("connection-refused", "Port refused (connection refused)", "ports", ("network",)),
    Entry("dns-nxdomain", "Server name does not resolve", "resolve", ("dns",)),
    Entry("auth-required", "Server requires authentication", "mail", ("auth",)),
    Entry("tls-required", "Server requires STARTTLS", "mail", ("tls",)),
    Entry("unknown-user", "Recipient mailbox does not exist", "delivery", ("bounce",)),
)

FIX = {
    "port": 587,
    "security": "starttls",
    "auth": {"user": "alice@example.com", "password": "correct-horse"},
}

VERDICT = Diagnosis(
    entry="port-blocked-timeout",
    title="Outbound port 25 blocked",
    cause="The customer's ISP drops outgoing connections to port 25.",
    explanation="Your provider blocks port 25 to stop spam; use the submission port 587.",
    confirm="telnet mail.example.com 587 answers; 25 hangs.",
    remedy=Remedy("Send on port 587 with STARTTLS and your mailbox login.", FIX),
    failed_probe=Probe.PORTS,
    node="isp",
)


async def scripted_engine(lab: Lab, settings: MailSettings) -> AsyncIterator[Step | Diagnosis]:
    """Fixed steps for blocked-port-25, with fixed timings, then `VERDICT`: for stable snapshots."""
    yield Step(
        Probe.RESOLVE,
        Status.OK,
        "Resolve mail.example.com",
        "Asked the lab DNS for the server's address.",
        {"server": "mail.example.com", "addresses": ["10.213.1.11"]},
        "The name resolves: DNS is not the problem.",
        duration=0.01,
        node="dns",
    )
    yield Step(
        Probe.PORTS,
        Status.FAIL,
        "Connect to mail.example.com:25",
        "Opened TCP connections to 25, 465, 587 and 2525 at once.",
        {"25": "timeout after 3 s", "465": "open", "587": "open", "2525": "refused"},
        "Port 25 is silently dropped on the way; 587 answers: the ISP blocks port 25.",
        transcript=(
            TranscriptLine(0.0, Direction.NOTE, "connecting to 10.213.1.11:25"),
            TranscriptLine(3.0, Direction.NOTE, "connect timed out after 3 s"),
        ),
        duration=3.0,
        node="isp",
    )
    yield Step(
        Probe.BANNER,
        Status.SKIPPED,
        "Read the greeting",
        "Not tried: no connection on the configured port.",
        {},
        "Nothing to learn until a connection opens.",
    )
    yield VERDICT


def text_of(widget: object) -> str:
    """The plain text a `Static` shows, whatever renderable it holds."""
    from rich.console import Console
    from textual.widgets import Static

    assert isinstance(widget, Static)
    console = Console(width=200, record=True, file=io.StringIO(), color_system=None)
    console.print(widget.content)
    return console.export_text()
