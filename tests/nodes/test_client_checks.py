"""The DNS checks of the client and the sender, against a real lab DNS on real sockets:
forward-confirmed reverse DNS, DNSBLs, unknown sender domains and SPF.

The mail server asks the DNS node; clients come through a PROXY header from the
addresses below, as in the local backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lab.nodes.config import DnsRecordConfig, ResolverConfig
from lab.nodes.events import read_events
from lab.nodes.mailserver.checks import SpfResult, evaluate_spf
from lab.nodes.resolver import make_resolver
from lab.replies import (
    S250_RECIPIENT_OK,
    S450_SENDER_DOMAIN_NOT_FOUND,
    S450_UNKNOWN_CLIENT,
    S550_SPF_FAIL,
    S550_UNKNOWN_CLIENT,
    S554_DNSBL_LISTED,
    S554_RELAY_DENIED,
)
from lab.scenario.model import AuthPolicy
from tests.nodes.conftest import (
    LOCALHOST,
    LabSMTP,
    MailServerUnderTest,
    StartServer,
    lab_dns_server,
    listener,
    proxy_header,
)

CONFIRMED = "10.213.2.10"  # PTR host.isp.example, whose A is this address
UNCONFIRMED = "10.213.2.11"  # PTR liar.isp.example, whose A is another address
NO_PTR = "10.213.2.12"
LISTED = "10.213.2.13"  # on bl.example (and it has a proper PTR)
BROKEN_PTR = "10.213.3.1"  # its reverse zone answers SERVFAIL
BLOCKLIST = "bl.example"


def record(name: str, rdtype: str, value: str) -> DnsRecordConfig:
    return DnsRecordConfig.model_validate({"name": name, "type": rdtype, "value": value})


def ptr(address: str, name: str) -> DnsRecordConfig:
    return record(ipaddress.ip_address(address).reverse_pointer + ".", "PTR", name)


RECORDS = [
    # the clients' reverse DNS
    ptr(CONFIRMED, "host.isp.example."),
    record("host.isp.example.", "A", CONFIRMED),
    ptr(UNCONFIRMED, "liar.isp.example."),
    record("liar.isp.example.", "A", "10.213.9.9"),
    ptr(LISTED, "listed.isp.example."),
    record("listed.isp.example.", "A", LISTED),
    # a DNSBL listing, as `topology` publishes it
    record(f"13.2.213.10.{BLOCKLIST}.", "A", "127.0.0.2"),
    record(f"13.2.213.10.{BLOCKLIST}.", "TXT", "Listed"),
    # sender domains
    record("withmx.example.", "MX", "10 mail.withmx.example."),
    record("mail.withmx.example.", "A", "10.213.1.20"),
    record("aonly.example.", "A", "10.213.1.21"),
    record("txtonly.example.", "TXT", "just text"),
    # SPF
    record("pass.test.", "TXT", "v=spf1 ip4:10.213.2.0/24 -all"),
    record("fail.test.", "TXT", "v=spf1 ip4:192.0.2.0/24 -all"),
    record("soft.test.", "TXT", "v=spf1 ~all"),
    record("neutral.test.", "TXT", "v=spf1 ?all"),
    record("nomatch.test.", "TXT", "v=spf1 ip4:192.0.2.1"),
    record("inc.test.", "TXT", "v=spf1 include:pass.test -all"),
    record("incfail.test.", "TXT", "v=spf1 include:fail.test -all"),
    record("redir.test.", "TXT", "v=spf1 redirect=pass.test"),
    record("a.test.", "TXT", "v=spf1 a -all"),
    record("a.test.", "A", CONFIRMED),
    record("aprefix.test.", "TXT", "v=spf1 a:host.isp.example/16 -all"),
    record("mx.test.", "TXT", "v=spf1 mx -all"),
    record("mx.test.", "MX", "10 mail.mx.test."),
    record("mail.mx.test.", "A", CONFIRMED),
    record("mxother.test.", "TXT", "v=spf1 mx:withmx.example -all"),
    record("loop.test.", "TXT", "v=spf1 include:loop.test -all"),
    record("two.test.", "TXT", "v=spf1 -all"),
    record("two.test.", "TXT", "v=spf1 +all"),
    record("macro.test.", "TXT", "v=spf1 exists:%{i}.bl.test -all"),
    record("noinc.test.", "TXT", "v=spf1 include:nospf.test -all"),
    record("nospf.test.", "A", "10.0.0.1"),
    record("tempinc.test.", "TXT", "v=spf1 include:broken.test -all"),
    record("case.test.", "TXT", "V=SPF1 IP4:10.213.2.0/24 -ALL"),
    record("mods.test.", "TXT", "v=spf1 exp=explain.test unknown=x ip4:10.213.2.10 -all"),
    record("ptrmech.test.", "TXT", "v=spf1 ptr -all"),
    record("none.test.", "A", "10.0.0.2"),
    record("notspf.test.", "TXT", "v=spf10 +all"),
]
FAULTS = {"3.213.10.in-addr.arpa.": "servfail", "broken.test.": "servfail"}


@pytest.fixture
async def lab_dns(tmp_path: Path) -> AsyncIterator[ResolverConfig]:
    zones = ["isp.example.", "2.213.10.in-addr.arpa.", "test.", f"{BLOCKLIST}."]
    async with lab_dns_server(tmp_path, zones, RECORDS, FAULTS) as resolver:
        yield resolver


async def checking_server(
    mail_server: StartServer, resolver: ResolverConfig, **checks: Any
) -> MailServerUnderTest:
    fields: dict[str, Any] = {"proxy_protocol": True, "resolver": resolver, "checks": checks}
    if "role" in checks:
        fields["role"] = checks.pop("role")
    if "permit_relay" in checks:
        fields["permit_relay"] = checks.pop("permit_relay")
    if "listeners" in checks:
        fields["listeners"] = checks.pop("listeners")
    return await mail_server(**fields)


async def rcpt(
    server: MailServerUnderTest,
    client: str,
    *,
    sender: str = "someone@withmx.example",
    recipients: tuple[str, ...] = ("alice@example.com",),
) -> list[str]:
    """A session from `client` up to RCPT; the reply line to each recipient."""
    reader, writer = await asyncio.open_connection(LOCALHOST, server.port())
    writer.write(proxy_header(client, 25))

    async def command(text: str) -> str:
        writer.write(text.encode() + b"\r\n")
        while True:
            reply = await asyncio.wait_for(reader.readline(), 5)
            if reply[3:4] != b"-":
                return reply.decode().rstrip("\r\n")

    try:
        await asyncio.wait_for(reader.readline(), 5)
        await command("EHLO client.example")
        await command(f"MAIL FROM:<{sender}>")
        return [await command(f"RCPT TO:<{recipient}>") for recipient in recipients]
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def accepted(address: str = "alice@example.com") -> str:
    return S250_RECIPIENT_OK(address=address)


# --- reverse DNS ---------------------------------------------------------------------------------


class TestReverseDns:
    @pytest.mark.parametrize(
        ("client", "code", "expected"),
        [
            (CONFIRMED, 450, accepted()),
            (NO_PTR, 450, S450_UNKNOWN_CLIENT(address=NO_PTR)),
            (UNCONFIRMED, 450, S450_UNKNOWN_CLIENT(address=UNCONFIRMED)),
            (NO_PTR, 550, S550_UNKNOWN_CLIENT(address=NO_PTR)),
            (UNCONFIRMED, 550, S550_UNKNOWN_CLIENT(address=UNCONFIRMED)),
            # A DNS failure is never a permanent refusal, whatever the configured code.
            (BROKEN_PTR, 550, S450_UNKNOWN_CLIENT(address=BROKEN_PTR)),
        ],
    )
    async def test_require_ptr(
        self,
        mail_server: StartServer,
        lab_dns: ResolverConfig,
        client: str,
        code: int,
        expected: str,
    ) -> None:
        server = await checking_server(mail_server, lab_dns, require_ptr=True, ptr_reject_code=code)
        assert await rcpt(server, client) == [expected]

    async def test_refusal_is_logged_with_its_reason(
        self, mail_server: StartServer, lab_dns: ResolverConfig
    ) -> None:
        server = await checking_server(mail_server, lab_dns, require_ptr=True)
        await rcpt(server, UNCONFIRMED)
        (event,) = [e for e in server.events("command") if e["verb"] == "rcpt"]
        assert event["decision"] == "unknown-client"
        assert event["detail"] == (
            f"PTR liar.isp.example does not resolve back to {UNCONFIRMED} (10.213.9.9)"
        )

    async def test_checked_once_per_transaction(
        self, mail_server: StartServer, lab_dns: ResolverConfig, tmp_path: Path
    ) -> None:
        server = await checking_server(mail_server, lab_dns, require_ptr=True)
        replies = await rcpt(server, NO_PTR, recipients=("alice@example.com", "bob@example.com"))
        assert replies == [
            S450_UNKNOWN_CLIENT(address=NO_PTR),
            S450_UNKNOWN_CLIENT(address=NO_PTR),
        ]
        queries = [e for e in read_events(tmp_path / "dns") if e.get("qtype") == "PTR"]
        assert len(queries) == 1

    async def test_trusted_sessions_are_not_checked(
        self, mail_server: StartServer, lab_dns: ResolverConfig
    ) -> None:
        # Postfix: permit_mynetworks and permit_sasl_authenticated come first.
        server = await checking_server(
            mail_server,
            lab_dns,
            require_ptr=True,
            role="relay",
            permit_relay={"authenticated": True, "networks": ["10.213.2.0/24"]},
        )
        assert await rcpt(server, NO_PTR) == [accepted()]

    async def test_relay_access_is_refused_before_the_checks(
        self, mail_server: StartServer, lab_dns: ResolverConfig
    ) -> None:
        server = await checking_server(mail_server, lab_dns, require_ptr=True)
        assert await rcpt(server, NO_PTR, recipients=("x@elsewhere.example",)) == [
            S554_RELAY_DENIED(address="x@elsewhere.example")
        ]


# --- DNSBL and sender domain -------------------------------------------------------------------


class TestDnsbl:
    async def test_listed_client_is_refused(
        self, mail_server: StartServer, lab_dns: ResolverConfig
    ) -> None:
        server = await checking_server(mail_server, lab_dns, dnsbl=[f"{BLOCKLIST}."])
        assert await rcpt(server, LISTED) == [S554_DNSBL_LISTED(address=LISTED, zone=BLOCKLIST)]
        assert await rcpt(server, CONFIRMED) == [accepted()]
        (event, _) = [e for e in server.events("command") if e["verb"] == "rcpt"]
        assert (event["decision"], event["detail"]) == (
            "dnsbl-listed",
            f"{BLOCKLIST} answered 127.0.0.2",
        )

    async def test_an_unreachable_blocklist_fails_open(
        self, mail_server: StartServer, lab_dns: ResolverConfig
    ) -> None:
        server = await checking_server(mail_server, lab_dns, dnsbl=["broken.test."])
        assert await rcpt(server, LISTED) == [accepted()]

    async def test_ptr_is_checked_before_the_blocklist(
        self, mail_server: StartServer, lab_dns: ResolverConfig
    ) -> None:
        server = await checking_server(
            mail_server, lab_dns, require_ptr=True, dnsbl=[f"{BLOCKLIST}."]
        )
        assert await rcpt(server, NO_PTR) == [S450_UNKNOWN_CLIENT(address=NO_PTR)]
        assert await rcpt(server, LISTED) == [S554_DNSBL_LISTED(address=LISTED, zone=BLOCKLIST)]


class TestSenderDomain:
    @pytest.mark.parametrize(
        ("sender", "known"),
        [
            ("a@withmx.example", True),
            ("a@aonly.example", True),  # no MX, but an address: implicit MX
            ("a@txtonly.example", False),  # the name exists, with neither MX nor A
            ("a@nowhere.example", False),  # NXDOMAIN
            ("a@broken.test", False),  # SERVFAIL: cannot be told, deferred
            ("", True),  # the null sender (bounces) is never checked
        ],
    )
    async def test_reject_unknown_sender_domain(
        self, mail_server: StartServer, lab_dns: ResolverConfig, sender: str, known: bool
    ) -> None:
        server = await checking_server(mail_server, lab_dns, reject_unknown_sender_domain=True)
        expected = accepted() if known else S450_SENDER_DOMAIN_NOT_FOUND(address=sender)
        assert await rcpt(server, CONFIRMED, sender=sender) == [expected]


# --- SPF -----------------------------------------------------------------------------------------


class TestSpf:
    async def test_fail_is_refused_at_rcpt(
        self, mail_server: StartServer, lab_dns: ResolverConfig
    ) -> None:
        server = await checking_server(mail_server, lab_dns, check_spf=True)
        assert await rcpt(server, CONFIRMED, sender="x@fail.test") == [
            S550_SPF_FAIL(domain="fail.test", client=CONFIRMED)
        ]
        assert await rcpt(server, CONFIRMED, sender="x@pass.test") == [accepted()]
        assert await rcpt(server, CONFIRMED, sender="x@soft.test") == [accepted()]

    @pytest.mark.parametrize(
        ("domain", "client", "result"),
        [
            ("pass.test", CONFIRMED, SpfResult.PASS),
            ("fail.test", CONFIRMED, SpfResult.FAIL),
            ("soft.test", CONFIRMED, SpfResult.SOFTFAIL),
            ("neutral.test", CONFIRMED, SpfResult.NEUTRAL),
            ("nomatch.test", CONFIRMED, SpfResult.NEUTRAL),  # no "all": the default
            ("inc.test", CONFIRMED, SpfResult.PASS),
            ("inc.test", "192.0.2.9", SpfResult.FAIL),
            ("incfail.test", "192.0.2.9", SpfResult.PASS),  # the included record passes it
            ("incfail.test", CONFIRMED, SpfResult.FAIL),  # an included fail is no match
            ("redir.test", CONFIRMED, SpfResult.PASS),
            ("a.test", CONFIRMED, SpfResult.PASS),
            ("a.test", UNCONFIRMED, SpfResult.FAIL),
            ("aprefix.test", "10.213.250.1", SpfResult.PASS),
            ("aprefix.test", "10.214.0.1", SpfResult.FAIL),
            ("mx.test", CONFIRMED, SpfResult.PASS),
            ("mx.test", UNCONFIRMED, SpfResult.FAIL),
            ("mxother.test", "10.213.1.20", SpfResult.PASS),
            ("case.test", CONFIRMED, SpfResult.PASS),
            ("mods.test", CONFIRMED, SpfResult.PASS),
            ("ptrmech.test", CONFIRMED, SpfResult.FAIL),  # unsupported: never matches
            ("loop.test", CONFIRMED, SpfResult.PERMERROR),  # over 10 lookups
            ("two.test", CONFIRMED, SpfResult.PERMERROR),
            ("macro.test", CONFIRMED, SpfResult.PERMERROR),
            ("noinc.test", CONFIRMED, SpfResult.PERMERROR),
            ("tempinc.test", CONFIRMED, SpfResult.TEMPERROR),
            ("broken.test", CONFIRMED, SpfResult.TEMPERROR),
            ("none.test", CONFIRMED, SpfResult.NONE),
            ("notspf.test", CONFIRMED, SpfResult.NONE),
            ("nowhere.example", CONFIRMED, SpfResult.NONE),
        ],
    )
    async def test_evaluate(
        self, lab_dns: ResolverConfig, domain: str, client: str, result: SpfResult
    ) -> None:
        verdict = await evaluate_spf(make_resolver(lab_dns), ipaddress.IPv4Address(client), domain)
        assert verdict.result is result, verdict.explanation

    async def test_checks_do_not_apply_to_authenticated_submission(
        self, mail_server: StartServer, lab_dns: ResolverConfig
    ) -> None:
        server = await checking_server(
            mail_server,
            lab_dns,
            check_spf=True,
            role="relay",
            permit_relay={"authenticated": True},
            listeners=[listener(25, auth=AuthPolicy.OFFERED)],
        )

        def conversation() -> tuple[int, bytes]:
            with LabSMTP(server.port(), proxy_source=CONFIRMED) as client:
                client.login("alice", "s3cret-Alice")
                client.mail("x@fail.test")
                return client.rcpt("bob@elsewhere.example")

        code, _ = await asyncio.to_thread(conversation)
        assert code == 250
