"""Following an accepted message waits for relays whose log lags behind the mailbox.

A Postfix node's delivery lines reach the engine through docker's container log, which is
written asynchronously: read before its "status=sent" line arrives, the failover before it
is invisible and the verdict says "healthy". Here the log is a list that grows while the
probe waits; the same walk against real Postfix is `tests/runtime/test_postfix_parity.py`.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from lab.diagnosis.probes import delivery
from lab.diagnosis.probes.delivery import follow, unsettled
from lab.scenario.model import Outcome

QUEUED = {"event": "queued", "queue_id": "A1", "node": "relay"}
REFUSED = {
    "event": "delivery-attempt",
    "queue_id": "A1",
    "node": "relay",
    "code": None,
    "enhanced": "4.4.1",
    "host": "relay-a",
    "address": "10.0.0.2",
    "port": 25,
    "results": {},
}
SENT = {
    "event": "delivery-attempt",
    "queue_id": "A1",
    "node": "relay",
    "code": 250,
    "enhanced": "2.0.0",
    "host": "relay-b",
    "address": "10.0.0.3",
    "port": 25,
    "results": {"bob@example.net": {"code": 250}},
}
DELIVERED = {
    "event": "delivered",
    "queue_id": "A1",
    "node": "relay",
    "recipient": "bob@example.net",
}


@pytest.mark.parametrize(
    ("events", "waiting"),
    [
        ([], set()),
        ([QUEUED], {"A1"}),
        ([QUEUED, REFUSED], {"A1"}),
        ([QUEUED, REFUSED, SENT, DELIVERED], set()),
        ([QUEUED, {"event": "bounced", "queue_id": "A1"}], set()),
        ([QUEUED, {"event": "expired", "queue_id": "A1"}], set()),
        ([QUEUED, {"event": "deferred", "queue_id": "A1"}], {"A1"}),
        ([QUEUED, {**QUEUED, "queue_id": "B2"}, DELIVERED], {"B2"}),
    ],
)
def test_an_entry_is_unsettled_until_its_fate_is_logged(
    events: list[dict[str, Any]], waiting: set[str]
) -> None:
    assert unsettled(events) == waiting


class LaggingTarget:
    """The relay's log shows the last lines only after `lag` reads."""

    def __init__(self, outcome: Outcome, lag: int) -> None:
        self.outcome = outcome
        self.reads = 0
        self.lag = lag

    async def follow(self, settings: Any, send: Any) -> Any:
        return SimpleNamespace(outcome=self.outcome, recipients=(), text="delivered")

    def delivery_events(self, message_id: str) -> list[dict[str, Any]]:
        self.reads += 1
        return [QUEUED] if self.reads <= self.lag else [QUEUED, REFUSED, SENT, DELIVERED]


def _follow(target: LaggingTarget) -> Any:
    context = SimpleNamespace(target=target, settings=None, clock=time.monotonic)
    main = SimpleNamespace(handoff=lambda: None, message_id="<m@pc1>", address=None)
    return asyncio.run(follow(context, main))  # type: ignore[arg-type]


def test_a_delivered_message_waits_for_the_relay_log_and_sees_the_failover() -> None:
    target = LaggingTarget(Outcome.DELIVERED, lag=3)
    result = _follow(target)
    assert target.reads == 4
    assert result.attempts == 2
    assert result.failovers  # the refused bridgehead, gone past in the same attempt


def test_a_deferred_message_does_not_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery, "SETTLE_TIME", 30.0)
    target = LaggingTarget(Outcome.DEFERRED, lag=100)
    result = _follow(target)
    assert target.reads == 1
    assert result.attempts == 0


def test_the_wait_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery, "SETTLE_TIME", 0.3)
    target = LaggingTarget(Outcome.DELIVERED, lag=10_000)
    result = _follow(target)
    assert 2 <= target.reads < 10_000
    assert result.attempts == 0
