"""Postfix's maillog read as the lab's delivery events (`lab.nodes.postfix.maillog`), from
lines Postfix 3.7 wrote in the backup-mx-queues scenario (docker's timestamps in front),
and what the diagnosis makes of them (`probes.delivery.delivery_from`)."""

from __future__ import annotations

from datetime import UTC, datetime

from lab.diagnosis.probes.delivery import failovers
from lab.nodes.postfix.maillog import delivery_events

RELAY_LOG = """\
2026-12-06T05:18:49.693341246Z Dec 06 05:18:49 mail postfix/smtpd[103]: A46772C0BE6: client=unknown[10.213.1.2], sasl_method=PLAIN, sasl_username=alice@example.com
2026-12-06T05:18:49.730100174Z Dec 06 05:18:49 mail postfix/cleanup[107]: A46772C0BE6: message-id=<e7707@pc1.office.lan>
2026-12-06T05:18:49.764386817Z Dec 06 05:18:49 mail postfix/qmgr[100]: A46772C0BE6: from=<alice@example.com>, size=1201, nrcpt=1 (queue active)
2026-12-06T05:18:51.816389784Z Dec 06 05:18:51 mail postfix/smtp[108]: connect to mx.example.net[10.213.1.12]:25: Connection timed out
2026-12-06T05:18:51.902956022Z Dec 06 05:18:51 mail postfix/smtp[108]: A46772C0BE6: to=<bob@example.net>, relay=mx2.example.net[10.213.1.13]:25, delay=2.3, delays=0.13/0.06/2/0.09, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as D3D7E2C04AA)
2026-12-06T05:18:51.902975067Z Dec 06 05:18:51 mail postfix/qmgr[100]: A46772C0BE6: removed
"""  # noqa: E501
BACKUP_LOG = """\
2026-12-06T05:18:51.881026571Z Dec 06 05:18:51 mx2 postfix/cleanup[106]: D3D7E2C04AA: message-id=<e7707@pc1.office.lan>
2026-12-06T05:18:54.061825150Z Dec 06 05:18:54 mx2 postfix/smtp[107]: connect to mx.example.net[10.213.1.12]:25: Connection timed out
2026-12-06T05:18:54.088256064Z Dec 06 05:18:54 mx2 postfix/smtp[107]: D3D7E2C04AA: to=<bob@example.net>, relay=none, delay=2.2, delays=0.07/0.17/2/0, dsn=4.4.1, status=deferred (connect to mx.example.net[10.213.1.12]:25: Connection timed out)
2026-12-06T05:19:05.004501332Z Dec 06 05:19:04 mx2 postfix/smtp[107]: D3D7E2C04AA: to=<bob@example.net>, relay=mx.example.net[10.213.1.12]:25, delay=13, delays=12/0/0.61/0.07, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as CF5612C0718)
"""  # noqa: E501
MX_LOG = """\
2026-12-06T05:19:04.874486707Z Dec 06 05:19:04 mx postfix/cleanup[192]: CF5612C0718: message-id=<e7707@pc1.office.lan>
2026-12-06T05:19:05.135746986Z Dec 06 05:19:05 mx postfix/virtual[193]: CF5612C0718: to=<bob@example.net>, relay=virtual, delay=0.28, delays=0.17/0.11/0/0.01, dsn=2.0.0, status=sent (delivered to maildir)
"""  # noqa: E501


def test_a_failover_is_a_failed_attempt_then_the_delivery() -> None:
    events = delivery_events(RELAY_LOG)
    assert [e["event"] for e in events] == [
        "queued",
        "delivery-attempt",
        "delivery-attempt",
        "delivered",
    ]
    queued, failed, through, delivered = events
    assert queued["message_id"] == "<e7707@pc1.office.lan>"
    assert {e["queue_id"] for e in events} == {"A46772C0BE6"}
    assert (failed["host"], failed["address"], failed["port"]) == (
        "mx.example.net",
        "10.213.1.12",
        25,
    )
    assert failed["results"] == {}
    assert failed["enhanced"] == "4.4.1"
    assert failed["text"] == "connect to mx.example.net[10.213.1.12]:25: Connection timed out"
    assert through["code"] == 250
    assert through["results"]["bob@example.net"]["outcome"] == "delivered"
    assert delivered["recipient"] == "bob@example.net"
    assert delivered["host"] == "mx2.example.net"
    assert queued["ts"] < failed["ts"] < through["ts"]
    at = datetime(2026, 12, 6, 5, 18, 51, 816390, tzinfo=UTC).timestamp()
    assert abs(failed["ts"] - at) < 1e-3  # docker's clock to the microsecond, not the syslog's
    # What the diagnosis reads from them: the relay went past mx to mx2 in one attempt.
    assert failovers(events) == ("connect to mx.example.net[10.213.1.12]:25: Connection timed out",)


def test_a_deferral_waits_the_failure_out() -> None:
    events = delivery_events(BACKUP_LOG)
    kinds = [e["event"] for e in events]
    assert kinds == ["queued", "delivery-attempt", "deferred", "delivery-attempt", "delivered"]
    deferred = events[2]
    assert deferred["status"] == "4.4.1"
    assert deferred["reason"] == "connect to mx.example.net[10.213.1.12]:25: Connection timed out"
    assert deferred["attempt"] == 1
    assert failovers(events) == ()  # deferred, then delivered later: nothing was gone past


def test_a_mailbox_delivery_is_no_queue_on_the_way() -> None:
    assert delivery_events(MX_LOG) == []


def test_bounces_and_expiry() -> None:
    log = (
        "2026-12-06T05:20:00.5Z Dec 06 05:20:00 mail postfix/smtp[9]: B1: to=<x@example.net>, "
        "relay=mx.example.net[10.0.0.2]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced "
        "(host mx.example.net[10.0.0.2] said: 550 5.1.1 <x@example.net>: Recipient address "
        "rejected: User unknown (in reply to RCPT TO command))\n"
        "2026-12-06T05:21:00Z Dec 06 05:21:00 mail postfix/qmgr[3]: C2: from=<a@example.com>, "
        "status=expired, returned to sender\n"
        "not a postfix line at all\n"
    )
    attempt, bounced, expired = delivery_events(log)
    assert attempt["code"] is None  # the text starts with "host ... said:", not the code
    assert attempt["results"]["x@example.net"]["outcome"] == "failed"
    assert (bounced["event"], bounced["status"]) == ("bounced", "5.1.1")
    assert "User unknown" in bounced["reason"]
    assert (expired["event"], expired["queue_id"]) == ("expired", "C2")
