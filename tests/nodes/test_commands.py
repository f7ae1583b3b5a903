"""VRFY, EXPN, ETRN and TURN on real sockets, through Python's smtplib: the codes and texts
the lab's server gives (`commands.py` behind `MailHandler`), which are Postfix 3.7's
(`tests/runtime/test_commands_postfix.py` asks real Postfix the same questions)."""

from __future__ import annotations

import pytest

from lab.replies import (
    S250_QUEUING_STARTED,
    S252_CANNOT_VRFY,
    S252_VRFY_ADDRESS,
    S459_ETRN_UNAVAILABLE,
    S500_ETRN_SYNTAX,
    S500_NOT_RECOGNIZED,
    S501_ETRN_DOMAIN,
    S501_VRFY_SYNTAX,
    S502_VRFY_DISABLED,
    S503_MAIL_IN_PROGRESS,
    S550_UNKNOWN_RELAY_RECIPIENT,
    S550_USER_UNKNOWN,
    S554_RELAY_DENIED,
)
from tests.nodes.conftest import (
    OUTSIDE_CLIENT,
    PERMITTED_CLIENT,
    LabSMTP,
    MailServerUnderTest,
    StartServer,
    expect,
    relay_config,
    talk,
)

Reply = tuple[int, bytes]


async def ask(
    server: MailServerUnderTest, *commands: tuple[str, str], source: str | None = None
) -> list[Reply]:
    """Greet, then send each (verb, argument) and collect the replies."""

    def conversation() -> list[Reply]:
        with LabSMTP(server.port(), proxy_source=source) as client:
            client.ehlo("client.example")
            return [client.docmd(verb, argument) for verb, argument in commands]

    return await talk(conversation)


@pytest.mark.parametrize(
    ("vrfy", "announced"),
    [
        ("enabled", ["vrfy", "etrn"]),
        ("ambiguous", ["vrfy", "etrn"]),
        ("disabled", ["etrn"]),
    ],
)
async def test_ehlo_names_the_commands_answered_as_postfix_does(
    mail_server: StartServer, vrfy: str, announced: list[str]
) -> None:
    server = await mail_server(vrfy=vrfy)

    def keywords() -> list[str]:
        with LabSMTP(server.port()) as client:
            client.ehlo("client.example")
            return list(client.esmtp_features)

    features = await talk(keywords)
    # Postfix 3.7: 250-VRFY then 250-ETRN (after SIZE); no VRFY when it is disabled.
    assert [f for f in features if f in ("vrfy", "etrn")] == announced


class TestVrfy:
    async def test_enabled_answers_as_rcpt_would(self, mail_server: StartServer) -> None:
        server = await mail_server()
        known, bracketed, unknown, empty = await ask(
            server,
            ("VRFY", "alice@example.com"),
            ("VRFY", "<bob@example.com>"),
            ("VRFY", "nobody@example.com"),
            ("VRFY", ""),
        )
        expect(known, S252_VRFY_ADDRESS, address="alice@example.com")
        expect(bracketed, S252_VRFY_ADDRESS, address="<bob@example.com>")  # echoed as given
        expect(unknown, S550_USER_UNKNOWN, address="nobody@example.com")
        expect(empty, S501_VRFY_SYNTAX)
        decisions = [(e["code"], e["decision"]) for e in server.events("command")]
        assert decisions[-4:] == [
            (252, "known"),
            (252, "known"),
            (550, "user-unknown"),
            (501, "syntax"),
        ]

    async def test_ambiguous_says_the_same_for_every_address(
        self, mail_server: StartServer
    ) -> None:
        server = await mail_server(vrfy="ambiguous")
        known, unknown = await ask(
            server, ("VRFY", "alice@example.com"), ("VRFY", "nobody@example.com")
        )
        expect(known, S252_CANNOT_VRFY)
        assert unknown == known  # nothing to learn from it: RCPT TO is the real test

    async def test_disabled_refuses_even_without_an_argument(
        self, mail_server: StartServer
    ) -> None:
        server = await mail_server(vrfy="disabled")
        for reply in await ask(server, ("VRFY", "alice@example.com"), ("VRFY", "")):
            expect(reply, S502_VRFY_DISABLED)

    async def test_relay_answers_from_its_relay_checks(self, mail_server: StartServer) -> None:
        server = await mail_server(
            **relay_config(relay_domains=["example.net"], relay_recipients=["bob@example.net"])
        )
        outside = await ask(
            server,
            ("VRFY", "bob@example.net"),
            ("VRFY", "eve@example.net"),
            ("VRFY", "friend@elsewhere.example"),
            source=OUTSIDE_CLIENT,
        )
        expect(outside[0], S252_VRFY_ADDRESS, address="bob@example.net")
        expect(outside[1], S550_UNKNOWN_RELAY_RECIPIENT, address="eve@example.net")
        expect(outside[2], S554_RELAY_DENIED, address="friend@elsewhere.example")
        (permitted,) = await ask(
            server, ("VRFY", "friend@elsewhere.example"), source=PERMITTED_CLIENT
        )
        expect(permitted, S252_VRFY_ADDRESS, address="friend@elsewhere.example")


class TestEtrn:
    async def test_a_relay_domain_starts_a_queue_run(self, mail_server: StartServer) -> None:
        server = await mail_server(**relay_config(relay_domains=["example.net"]))
        ours, subdomains, other = await ask(
            server,
            ("ETRN", "example.net"),
            ("ETRN", "@example.net"),
            ("ETRN", "example.org"),
            source=OUTSIDE_CLIENT,
        )
        expect(ours, S250_QUEUING_STARTED)
        expect(subdomains, S250_QUEUING_STARTED)
        expect(other, S459_ETRN_UNAVAILABLE, domain="example.org")
        assert server.queue.flushed == ["example.net", "example.net"]
        etrn = [e for e in server.events("command") if e["verb"] == "etrn"]
        assert [e["decision"] for e in etrn] == ["queue-run", "queue-run", "unavailable"]

    async def test_an_mx_queues_for_nobody(self, mail_server: StartServer) -> None:
        server = await mail_server()
        (reply,) = await ask(server, ("ETRN", "example.com"))
        expect(reply, S459_ETRN_UNAVAILABLE, domain="example.com")

    @pytest.mark.parametrize(
        ("argument", "expected"),
        [("", S500_ETRN_SYNTAX), ("a b", S500_ETRN_SYNTAX), ("-bad-", S501_ETRN_DOMAIN)],
        ids=["none", "two", "not-a-domain"],
    )
    async def test_syntax(self, mail_server: StartServer, argument: str, expected: object) -> None:
        server = await mail_server()
        (reply,) = await ask(server, ("ETRN", argument))
        expect(reply, expected)  # type: ignore[arg-type]

    async def test_not_inside_a_transaction(self, mail_server: StartServer) -> None:
        server = await mail_server(**relay_config(relay_domains=["example.net"]))

        def conversation() -> Reply:
            with LabSMTP(server.port(), proxy_source=OUTSIDE_CLIENT) as client:
                client.mail("someone@sender.example")
                return client.docmd("ETRN", "example.net")

        expect(await talk(conversation), S503_MAIL_IN_PROGRESS)
        assert server.queue.flushed == []


@pytest.mark.parametrize("verb", ["EXPN", "TURN", "ATRN"])
async def test_unimplemented_commands_are_not_recognized(
    mail_server: StartServer, verb: str
) -> None:
    server = await mail_server()
    (reply,) = await ask(server, (verb, "staff@example.com" if verb == "EXPN" else ""))
    expect(reply, S500_NOT_RECOGNIZED)
