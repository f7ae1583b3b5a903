"""The route scenarios on the local backend: what the servers on the way logged and where the
message went (bridgehead failover, a backup MX that queues, a backup MX that bounces later),
and the schema they need (`down: {until: ...}`, `relay_domains`, `relay_recipients`)."""

from __future__ import annotations

import asyncio
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from lab.diagnosis.probes.delivery import failovers
from lab.nodes.mailserver.dsn import parse_dsn
from lab.runs import Fate, run_once
from lab.runtime.base import Lab
from lab.scenario.loader import load_scenario
from lab.scenario.model import Outcome, Scenario
from lab.topology import resolve
from tests.test_scenarios_local import lab, scenario_lab

__all__ = ["lab"]  # the fixture, shared with the catalog's own local tests

SCENARIOS = Path(__file__).parents[1] / "scenarios"


def of(lab: Lab, node: str, event: str) -> list[dict[str, Any]]:
    return [e for e in lab.events(node) if e.get("event") == event]


async def logged(lab: Lab, node: str, event: str) -> list[dict[str, Any]]:
    """The events once there is one: the mailbox can hold the message a moment before the
    server that handed it over has read the 250 and logged it."""
    for _ in range(100):
        if found := of(lab, node, event):
            return found
        await asyncio.sleep(0.05)
    return []


def address(lab: Lab, node: str) -> str:
    return str(lab.topology.nodes[node].address)


@scenario_lab("bridgehead-failover")
async def test_the_relay_logs_the_dead_bridgehead_then_delivers_through_the_other(
    lab: Lab,
) -> None:
    report = await run_once(lab)
    assert report.outcome is Outcome.DELIVERED
    assert [(f.address, f.fate, f.node) for f in report.recipients] == [
        ("bob@example.net", Fate.DELIVERED, "mx")
    ]
    (route,) = of(lab, "relay", "route")
    assert route["method"] == "connector"
    assert route["pattern"] == "*"
    dead, alive = address(lab, "relay-a"), address(lab, "relay-b")
    assert route["hops"] == [f"outbound.filter.example[{a}]:25" for a in (dead, alive)]
    attempts = of(lab, "relay", "delivery-attempt")
    first, last = attempts[0], attempts[-1]
    assert first["address"] == dead
    assert first["results"] == {}
    assert first["text"] == f"connect to outbound.filter.example[{dead}]:25: Connection timed out"
    assert last["address"] == alive
    assert last["code"] == 250
    assert last["results"]["bob@example.net"]["outcome"] == "delivered"
    # The failover happened inside one queue attempt: nothing was deferred.
    assert of(lab, "relay", "deferred") == []
    (delivered,) = of(lab, "relay", "delivered")
    assert delivered["host"] == f"outbound.filter.example[{alive}]:25"
    assert of(lab, "relay-b", "queued")
    assert of(lab, "relay-a", "queued") == []
    assert failovers(lab.events("relay")) == (first["text"],)


@scenario_lab("backup-mx-queues")
async def test_the_backup_mx_queues_until_the_primary_comes_back(lab: Lab) -> None:
    report = await run_once(lab)
    assert report.outcome is Outcome.DELIVERED
    (stored,) = lab.mailbox("mx", "bob@example.net")
    received = message_from_bytes(stored).get_all("Received") or []
    assert any("by mx2.example.net" in header for header in received)
    # The customer's relay went past the dead primary to the backup in one attempt...
    relay_attempts = of(lab, "relay", "delivery-attempt")
    assert [a["host"] for a in relay_attempts] == ["mx.example.net", "mx2.example.net"]
    assert of(lab, "relay", "deferred") == []
    # ...and the backup retried the primary until it answered: deferrals, then delivery.
    deferred = of(lab, "mx2", "deferred")
    assert deferred, "the primary was back before the backup's first attempt"
    assert all("connect to mx.example.net" in d["reason"] for d in deferred)
    (delivered,) = await logged(lab, "mx2", "delivered")
    assert delivered["host"].startswith("mx.example.net[")
    assert delivered["ts"] > deferred[-1]["ts"]
    # 30 world minutes at 120x: the primary is off for the first 15 lab seconds.
    assert lab.topology.nodes["mx"].back_after == pytest.approx(15.0)


@scenario_lab("backup-mx-backscatter")
async def test_the_backup_mx_says_250_and_its_bounce_comes_later(lab: Lab) -> None:
    report = await run_once(lab)
    # The customer's own server took the address; so did the backup MX behind it.
    rcpt = [line.text for line in report.send.transcript.lines if line.text.startswith("250 2.1.5")]
    assert rcpt == ["250 2.1.5 Recipient <bbo@example.net> OK"]
    (decision,) = [
        e
        for e in of(lab, "mx2", "command")
        if e.get("verb") == "rcpt" and e.get("address") == "bbo@example.net"
    ]
    assert (decision["decision"], decision["code"]) == ("relay", 250)
    assert report.outcome is Outcome.BOUNCED
    assert (report.code, report.enhanced) == (550, "5.1.1")
    assert report.bounce is not None
    dsn = parse_dsn(report.bounce)
    assert dsn.reporting_mta == "mx2.example.net"
    (recipient,) = dsn.recipients
    assert recipient.remote_mta == "mx.example.net"
    (fate,) = report.recipients
    assert fate.node == "relay"
    assert fate.reporting_mta == "mx2.example.net"
    # The bounce went to the sender's mailbox at her own provider.
    assert lab.mailbox("relay", "alice@example.com")


# --- the schema ----------------------------------------------------------------------------


def _with(name: str, node: str, **fields: Any) -> Scenario:
    data = load_scenario(SCENARIOS / f"{name}.yaml").model_dump(mode="json", exclude_unset=True)
    data["nodes"][node].update(fields)
    return Scenario.model_validate(data)


def test_a_downtime_is_world_time_compressed_like_queue_retries() -> None:
    scenario = _with("backup-mx-queues", "mx", down={"until": "1h"})
    topology = resolve(scenario, data_root=Path("/tmp/unused"))
    plan = topology.nodes["mx"]
    assert plan.running
    assert plan.back_after == pytest.approx(3600 / 120)
    switched_off = resolve(_with("backup-mx-queues", "mx", down=True), data_root=Path("/x"))
    assert not switched_off.nodes["mx"].running
    assert switched_off.nodes["mx"].back_after is None


@pytest.mark.parametrize(
    ("node", "fields", "fragment"),
    [
        ("mx", {"down": {"until": "0s"}}, "greater than 0"),
        ("mx", {"down": {"for": "10m"}}, "for"),
        ("mx2", {"relay_recipients": ["bob@example.org"]}, "not in a domain of relay_domains"),
    ],
)
def test_bad_route_fields_are_refused(node: str, fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        _with("backup-mx-queues", node, **fields)


def test_failovers_are_failed_connections_gone_past_not_waited_out() -> None:
    def attempt(queue_id: str, text: str, *, ok: bool) -> dict[str, Any]:
        return {
            "event": "delivery-attempt",
            "queue_id": queue_id,
            "enhanced": "2.0.0" if ok else "4.4.1",
            "text": text,
            "results": {"bob@example.net": {"outcome": "delivered"}} if ok else {},
        }

    went_past = [attempt("A", "connect to a: timed out", ok=False), attempt("A", "ok", ok=True)]
    waited = [
        attempt("B", "connect to b: timed out", ok=False),
        {"event": "deferred", "queue_id": "B", "reason": "connect to b: timed out"},
        attempt("B", "ok", ok=True),
    ]
    assert failovers(went_past) == ("connect to a: timed out",)
    assert failovers(waited) == ()
    assert failovers(waited + went_past) == ("connect to a: timed out",)
