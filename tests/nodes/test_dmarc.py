"""DMARC at the end of DATA: the record, alignment and policy, against a real lab DNS, and
the mail server's 550 5.7.1 to an smtplib client on a real socket."""

from __future__ import annotations

import asyncio
import ipaddress
import smtplib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lab.nodes.config import DnsRecordConfig, ResolverConfig
from lab.nodes.mailserver.dmarc import (
    DmarcPolicy,
    DmarcResult,
    aligned,
    author_domain,
    evaluate_dmarc,
    parse_dmarc,
)
from lab.nodes.resolver import make_resolver
from lab.replies import S550_DMARC_REJECT
from lab.scenario.model import AuthPolicy
from tests.nodes.conftest import LabSMTP, StartServer, lab_dns_server, listener

NAMED = "10.213.2.10"  # in every SPF record below
STRANGER = "192.0.2.9"  # in none
SPF = f"v=spf1 ip4:{NAMED}/32 -all"


def record(name: str, value: str) -> DnsRecordConfig:
    return DnsRecordConfig.model_validate({"name": name, "type": "TXT", "value": value})


RECORDS = [
    record("shop.test.", SPF),
    record("_dmarc.shop.test.", "v=DMARC1; p=reject; sp=none; rua=mailto:d@shop.test"),
    record("bounce.shop.test.", SPF),
    record("strict.test.", SPF),
    record("bounce.strict.test.", SPF),
    record("_dmarc.strict.test.", "v=DMARC1; p=reject; aspf=s"),
    record("open.test.", SPF),
    record("_dmarc.open.test.", "v=DMARC1; p=none"),
    record("other.test.", SPF),
    record("_dmarc.broken.test.", "v=DMARC1; p=bogus"),
]


@pytest.fixture
async def lab_dns(tmp_path: Path) -> AsyncIterator[ResolverConfig]:
    async with lab_dns_server(tmp_path, ["test."], RECORDS) as resolver:
        yield resolver


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v=DMARC1; p=reject", DmarcPolicy("reject")),
        ("v=DMARC1;p=quarantine;sp=reject;aspf=s", DmarcPolicy("quarantine", "reject", "s")),
        ("v=DMARC1; p=REJECT; sp=nonsense", DmarcPolicy("reject")),
        ("v=DMARC1; rua=mailto:x@y", None),  # no p=
        ("v=DMARC1; p=bogus", None),
        ("v=spf1 -all", None),
        ("", None),
    ],
)
def test_parse(text: str, expected: DmarcPolicy | None) -> None:
    assert parse_dmarc(text) == expected


@pytest.mark.parametrize(
    ("identifier", "author", "mode", "expected"),
    [
        ("shop.test", "shop.test", "s", True),
        ("bounce.shop.test", "shop.test", "r", True),
        ("bounce.shop.test", "shop.test", "s", False),
        ("mailer.example", "shop.test", "r", False),
        ("SHOP.test.", "shop.test", "s", True),
    ],
)
def test_alignment(identifier: str, author: str, mode: str, expected: bool) -> None:
    assert aligned(identifier, author, mode) is expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (b"From: Orders <orders@Shop.Test>\r\nTo: b@x\r\n\r\nbody", "shop.test"),
        (b"To: b@x\r\n\r\nno From", None),
        (b"From: a@one.test, b@two.test\r\n\r\n", None),  # the author is ambiguous
    ],
)
def test_author_domain(headers: bytes, expected: str | None) -> None:
    assert author_domain(headers) == expected


@pytest.mark.parametrize(
    ("client", "sender", "author", "result", "rejects"),
    [
        (NAMED, "orders@shop.test", "shop.test", DmarcResult.PASS, False),
        (STRANGER, "orders@shop.test", "shop.test", DmarcResult.FAIL, True),
        (NAMED, "b@bounce.shop.test", "shop.test", DmarcResult.PASS, False),  # relaxed
        (NAMED, "b@bounce.strict.test", "strict.test", DmarcResult.FAIL, True),  # aspf=s
        (NAMED, "x@other.test", "shop.test", DmarcResult.FAIL, True),  # passes, not aligned
        (NAMED, "", "shop.test", DmarcResult.FAIL, True),  # a bounce: nothing to align
        (STRANGER, "x@news.shop.test", "news.shop.test", DmarcResult.FAIL, False),  # sp=none
        (STRANGER, "x@open.test", "open.test", DmarcResult.FAIL, False),  # p=none
        (STRANGER, "x@nodmarc.test", "nodmarc.test", DmarcResult.NONE, False),
        (STRANGER, "x@broken.test", "broken.test", DmarcResult.NONE, False),
    ],
)
async def test_evaluate(
    lab_dns: ResolverConfig,
    client: str,
    sender: str,
    author: str,
    result: DmarcResult,
    rejects: bool,
) -> None:
    verdict = await evaluate_dmarc(
        make_resolver(lab_dns), ipaddress.IPv4Address(client), sender, author
    )
    assert (verdict.result, verdict.rejects) == (result, rejects), verdict.explanation


def _send(port: int, client: str, author: str, *, login: bool = False) -> tuple[int, str]:
    """One message from `client` (PROXY header), From: orders@`author`; the DATA reply."""
    message = f"From: orders@{author}\r\nTo: alice@example.com\r\nSubject: t\r\n\r\nHi\r\n"
    with LabSMTP(port, proxy_source=client) as smtp:
        if login:
            smtp.login("alice", "s3cret-Alice")
        try:
            smtp.sendmail(f"orders@{author}", ["alice@example.com"], message)
        except smtplib.SMTPDataError as error:
            reply = error.smtp_error
            text = reply.decode() if isinstance(reply, bytes) else reply
            return error.smtp_code, f"{error.smtp_code} {text}"
    return 250, "250"


async def test_the_server_refuses_after_data_and_logs_why(
    mail_server: StartServer, lab_dns: ResolverConfig
) -> None:
    server = await mail_server(proxy_protocol=True, resolver=lab_dns, checks={"check_dmarc": True})
    port = server.port()
    code, text = await asyncio.to_thread(_send, port, STRANGER, "shop.test")
    assert (code, text) == (550, S550_DMARC_REJECT(domain="shop.test"))
    assert text == "550 5.7.1 rejected by DMARC policy for shop.test"
    assert await asyncio.to_thread(_send, port, NAMED, "shop.test") == (250, "250")
    assert len(server.store.messages("alice@example.com")) == 1  # only the aligned one
    refused = [
        event
        for event in server.events()
        if event.get("verb") == "data" and event.get("decision") == "dmarc-reject"
    ]
    assert len(refused) == 1
    assert "SPF fail for shop.test" in refused[0]["detail"]


async def test_an_authenticated_submission_is_not_checked(
    mail_server: StartServer, lab_dns: ResolverConfig
) -> None:
    server = await mail_server(
        proxy_protocol=True,
        resolver=lab_dns,
        checks={"check_dmarc": True},
        listeners=[listener(587, auth=AuthPolicy.OFFERED)],
    )
    reply = await asyncio.to_thread(_send, server.port(587), STRANGER, "shop.test", login=True)
    assert reply == (250, "250")
