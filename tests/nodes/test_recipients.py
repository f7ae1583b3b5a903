"""RCPT policy on real sockets: unknown users, mailbox states, greylisting and relaying
(`recipients.RecipientPolicy` behind `MailHandler.handle_RCPT`).

Replies are compared whole, against `lab.replies`: a reply's text is part of
what the lab teaches.
"""

from __future__ import annotations

import asyncio

import pytest

from lab.replies import (
    S250_QUEUED,
    S250_RECIPIENT_OK,
    S451_GREYLISTED,
    S452_MAILBOX_FULL,
    S550_MAILBOX_DISABLED,
    S550_UNKNOWN_RELAY_RECIPIENT,
    S550_USER_UNKNOWN,
    S552_OVER_QUOTA,
    S554_RELAY_DENIED,
    Reply,
)
from tests.nodes.conftest import (
    ALICE,
    MESSAGE,
    OUTSIDE_CLIENT,
    PERMITTED_CLIENT,
    PERMITTED_NETWORK,
    LabSMTP,
    MailServerUnderTest,
    StartServer,
    expect,
    relay_config,
    talk,
)

# --- recipients -------------------------------------------------------------------------


class TestRecipients:
    async def rcpt(self, server: MailServerUnderTest, address: str) -> tuple[int, bytes]:
        def conversation() -> tuple[int, bytes]:
            with LabSMTP(server.port()) as client:
                client.ehlo("client.example")
                client.mail("sender@remote.example")
                return client.rcpt(address)

        return await talk(conversation)

    async def test_unknown_user(self, mail_server: StartServer) -> None:
        server = await mail_server()
        reply = await self.rcpt(server, "nobody@example.com")
        expect(reply, S550_USER_UNKNOWN, address="nobody@example.com")

    async def test_known_user(self, mail_server: StartServer) -> None:
        server = await mail_server()
        reply = await self.rcpt(server, "Alice@EXAMPLE.com")
        expect(reply, S250_RECIPIENT_OK, address="Alice@EXAMPLE.com")

    @pytest.mark.parametrize(
        ("state", "expected"),
        [
            ("full", S452_MAILBOX_FULL),  # temporary: the sender's MTA retries
            ("over-quota", S552_OVER_QUOTA),  # permanent
            ("disabled", S550_MAILBOX_DISABLED),
        ],
        ids=["full", "over-quota", "disabled"],
    )
    async def test_mailbox_states(
        self, mail_server: StartServer, state: str, expected: Reply
    ) -> None:
        server = await mail_server(mailboxes={"carol@example.com": state})
        expect(await self.rcpt(server, "carol@example.com"), expected, address="carol@example.com")

    async def test_mx_never_relays(self, mail_server: StartServer) -> None:
        server = await mail_server(
            proxy_protocol=True,
            permit_relay={"authenticated": True, "networks": [PERMITTED_NETWORK]},
        )

        def conversation() -> tuple[int, bytes]:
            with LabSMTP(server.port(), proxy_source=PERMITTED_CLIENT) as client:
                client.mail("alice@example.com")
                return client.rcpt("someone@elsewhere.example")

        reply = await talk(conversation)
        expect(reply, S554_RELAY_DENIED, address="someone@elsewhere.example")


# --- greylisting ------------------------------------------------------------------------


class TestGreylist:
    DELAY = 0.25

    async def test_first_attempt_deferred_then_accepted_after_delay(
        self, mail_server: StartServer
    ) -> None:
        server = await mail_server(greylist={"delay": self.DELAY})

        def attempt() -> tuple[int, bytes]:
            with LabSMTP(server.port()) as client:
                client.mail("sender@remote.example")
                return client.rcpt("alice@example.com")

        expect(await talk(attempt), S451_GREYLISTED, address="alice@example.com")
        # Too early: still deferred.
        expect(await talk(attempt), S451_GREYLISTED, address="alice@example.com")
        await asyncio.sleep(self.DELAY + 0.05)
        expect(await talk(attempt), S250_RECIPIENT_OK, address="alice@example.com")

    async def test_triplet_includes_the_sender(self, mail_server: StartServer) -> None:
        server = await mail_server(greylist={"delay": 0.0})

        def attempt(sender: str) -> tuple[int, bytes]:
            with LabSMTP(server.port()) as client:
                client.mail(sender)
                return client.rcpt("alice@example.com")

        assert (await talk(lambda: attempt("one@remote.example")))[0] == 451
        assert (await talk(lambda: attempt("two@remote.example")))[0] == 451
        assert (await talk(lambda: attempt("one@remote.example")))[0] == 250

    async def test_only_listed_recipients(self, mail_server: StartServer) -> None:
        server = await mail_server(greylist={"delay": 60, "recipients": ["bob@example.com"]})

        def conversation() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
            with LabSMTP(server.port()) as client:
                client.mail("sender@remote.example")
                return client.rcpt("alice@example.com"), client.rcpt("bob@example.com")

        alice, bob = await talk(conversation)
        expect(alice, S250_RECIPIENT_OK, address="alice@example.com")
        expect(bob, S451_GREYLISTED, address="bob@example.com")


# --- relaying ---------------------------------------------------------------------------


class TestRelay:
    async def test_denied_without_auth_from_outside(self, mail_server: StartServer) -> None:
        server = await mail_server(**relay_config())

        def conversation() -> tuple[int, bytes]:
            with LabSMTP(server.port(), proxy_source=OUTSIDE_CLIENT) as client:
                client.mail("alice@example.com")
                return client.rcpt("friend@elsewhere.example")

        expect(await talk(conversation), S554_RELAY_DENIED, address="friend@elsewhere.example")
        assert server.queue.calls == []

    async def test_allowed_after_auth(self, mail_server: StartServer) -> None:
        server = await mail_server(**relay_config())

        def conversation() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
            with LabSMTP(server.port(), proxy_source=OUTSIDE_CLIENT) as client:
                client.ehlo("laptop.customer.example")
                client.login(*ALICE)
                client.mail("alice@example.com")
                rcpt = client.rcpt("friend@elsewhere.example")
                return rcpt, client.data(MESSAGE)

        rcpt, data = await talk(conversation)
        expect(rcpt, S250_RECIPIENT_OK, address="friend@elsewhere.example")
        expect(data, S250_QUEUED, queue_id="Q0001")
        (call,) = server.queue.calls
        assert call["sender"] == "alice@example.com"
        assert call["recipients"] == ["friend@elsewhere.example"]
        assert call["client_address"] == OUTSIDE_CLIENT
        assert call["helo"] == "laptop.customer.example"
        assert call["authenticated_as"] == "alice"
        assert call["data"].startswith(b"Received: from laptop.customer.example ([10.213.2.77])")
        assert call["data"].endswith(MESSAGE)
        assert server.queue.started

    async def test_allowed_from_permitted_network(self, mail_server: StartServer) -> None:
        server = await mail_server(**relay_config())

        def conversation() -> tuple[int, bytes]:
            with LabSMTP(server.port(), proxy_source=PERMITTED_CLIENT) as client:
                client.mail("printer@office.example")
                client.rcpt("friend@elsewhere.example")
                return client.data(MESSAGE)

        expect(await talk(conversation), S250_QUEUED, queue_id="Q0001")
        (call,) = server.queue.calls
        assert call["client_address"] == PERMITTED_CLIENT
        assert call["authenticated_as"] is None

    async def test_a_catch_all_takes_unknown_mailboxes_and_queues_them_to_bounce(
        self, mail_server: StartServer
    ) -> None:
        server = await mail_server(**relay_config(catch_all=True))

        def conversation() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
            with LabSMTP(server.port(), proxy_source=OUTSIDE_CLIENT) as client:
                client.mail("sender@remote.example")
                rcpt = client.rcpt("nobody@example.com")
                client.rcpt("alice@example.com")
                return rcpt, client.data(MESSAGE)

        rcpt, data = await talk(conversation)
        expect(rcpt, S250_RECIPIENT_OK, address="nobody@example.com")
        assert data[0] == 250
        (call,) = server.queue.calls  # the queue bounces it: no mailbox
        assert call["recipients"] == ["nobody@example.com"]
        assert len(server.store.messages("alice@example.com")) == 1

    async def test_auth_does_not_help_where_only_networks_may_relay(
        self, mail_server: StartServer
    ) -> None:
        server = await mail_server(
            **relay_config(permit_relay={"authenticated": False, "networks": [PERMITTED_NETWORK]})
        )

        def conversation() -> tuple[int, bytes]:
            with LabSMTP(server.port(), proxy_source=OUTSIDE_CLIENT) as client:
                client.login(*ALICE)
                client.mail("alice@example.com")
                return client.rcpt("friend@elsewhere.example")

        expect(await talk(conversation), S554_RELAY_DENIED, address="friend@elsewhere.example")

    async def test_local_and_relayed_recipients_in_one_message(
        self, mail_server: StartServer
    ) -> None:
        server = await mail_server(**relay_config())

        def conversation() -> tuple[int, bytes]:
            with LabSMTP(server.port(), proxy_source=PERMITTED_CLIENT) as client:
                client.mail("printer@office.example")
                client.rcpt("alice@example.com")
                client.rcpt("friend@elsewhere.example")
                return client.data(MESSAGE)

        expect(await talk(conversation), S250_QUEUED, queue_id="Q0001")
        assert [call["recipients"] for call in server.queue.calls] == [["friend@elsewhere.example"]]
        (stored,) = server.store.messages("alice@example.com")
        assert stored.data == server.queue.calls[0]["data"]
        (accepted,) = server.events("accepted")
        assert accepted["local"] == ["alice@example.com"]
        assert accepted["relayed"] == ["friend@elsewhere.example"]
        assert accepted["queue_id"] == "Q0001"


class TestBackupMx:
    """A relay with relay_domains takes those domains from anyone (a backup MX)."""

    async def test_takes_its_relay_domain_from_anyone_without_auth(
        self, mail_server: StartServer
    ) -> None:
        server = await mail_server(**relay_config(relay_domains=["example.net"]))

        def conversation() -> tuple[tuple[int, bytes], tuple[int, bytes], tuple[int, bytes]]:
            with LabSMTP(server.port(), proxy_source=OUTSIDE_CLIENT) as client:
                client.mail("someone@sender.example")
                ours = client.rcpt("anyone@example.net")
                elsewhere = client.rcpt("friend@elsewhere.example")
                return ours, elsewhere, client.data(MESSAGE)

        ours, elsewhere, data = await talk(conversation)
        # No recipient list: any address is taken, even one that does not exist.
        expect(ours, S250_RECIPIENT_OK, address="anyone@example.net")
        expect(elsewhere, S554_RELAY_DENIED, address="friend@elsewhere.example")
        expect(data, S250_QUEUED, queue_id="Q0001")
        (call,) = server.queue.calls
        assert call["recipients"] == ["anyone@example.net"]

    async def test_with_a_recipient_list_refuses_the_unknown_at_rcpt(
        self, mail_server: StartServer
    ) -> None:
        server = await mail_server(
            **relay_config(relay_domains=["example.net"], relay_recipients=["bob@example.net"])
        )

        def conversation() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
            with LabSMTP(server.port(), proxy_source=OUTSIDE_CLIENT) as client:
                client.mail("someone@sender.example")
                return client.rcpt("BOB@example.net"), client.rcpt("bbo@example.net")

        known, unknown = await talk(conversation)
        expect(known, S250_RECIPIENT_OK, address="BOB@example.net")
        expect(unknown, S550_UNKNOWN_RELAY_RECIPIENT, address="bbo@example.net")
