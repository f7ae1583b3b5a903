"""The relay and mx servers on real sockets: listeners, TLS, AUTH, recipient and relay policy,
delivery into the store, hand-off to the queue, events, and bad input.

Replies are compared whole, against `lab.replies`: a reply's text is part of
what the lab teaches.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import smtplib
import ssl
from collections.abc import Callable
from typing import Any, TypeVar, cast

import pytest

from lab.nodes.tls import client_context
from lab.replies import (
    S250_QUEUED,
    S250_RECIPIENT_OK,
    S250_SENDER_OK,
    S451_GREYLISTED,
    S451_LOCAL_ERROR,
    S452_MAILBOX_FULL,
    S454_TLS_UNAVAILABLE,
    S503_AUTH_DISABLED,
    S504_MECHANISM,
    S530_AUTH_REQUIRED,
    S530_STARTTLS_FIRST,
    S535_BAD_CREDENTIALS,
    S538_ENCRYPTION_REQUIRED,
    S550_MAILBOX_DISABLED,
    S550_USER_UNKNOWN,
    S552_OVER_QUOTA,
    S552_TOO_BIG,
    S554_RELAY_DENIED,
    Reply,
)
from lab.scenario.model import AuthPolicy, ListenerTls
from tests.nodes.conftest import (
    HOSTNAME,
    LOCALHOST,
    LabCertificates,
    LabSMTP,
    LabSMTPSSL,
    MailServerUnderTest,
    StartServer,
    listener,
    proxy_header,
)

T = TypeVar("T")

ALICE = ("alice", "s3cret-Alice")
MESSAGE = (
    b"From: sender@remote.example\r\n"
    b"To: alice@example.com\r\n"
    b"Subject: test\r\n"
    b"Message-ID: <test-1@remote.example>\r\n"
    b"\r\n"
    b"Hello.\r\n"
)
QUEUED = re.compile(r"^250 2\.0\.0 Ok: queued as (\S+)$")
PERMITTED_CLIENT = "10.213.1.50"  # inside PERMITTED_NETWORK
OUTSIDE_CLIENT = "10.213.2.77"
PERMITTED_NETWORK = "10.213.1.0/24"


async def talk(conversation: Callable[[], T]) -> T:
    """Run a blocking smtplib conversation while the server keeps running in this loop."""
    return await asyncio.to_thread(conversation)


def line(reply: tuple[int, bytes]) -> str:
    """An smtplib reply as the one line the server sent."""
    code, text = reply
    return f"{code} {text.decode()}"


def expect(reply: tuple[int, bytes], expected: Reply, **values: str) -> None:
    """Assert the whole reply line."""
    assert line(reply) == expected(**values)


async def raw_session(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain connection whose banner has been read."""
    reader, writer = await asyncio.open_connection(LOCALHOST, port)
    banner = await asyncio.wait_for(reader.readline(), 5)
    assert banner.startswith(b"220 ")
    return reader, writer


async def command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, text: bytes) -> bytes:
    """Send one raw line and read the reply (the last line of a multi-line one)."""
    writer.write(text + b"\r\n")
    while True:
        reply = await asyncio.wait_for(reader.readline(), 5)
        if reply[3:4] != b"-":
            return reply


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def relay_config(**overrides: Any) -> dict[str, Any]:
    """A relay for example.com: relays for authenticated users and PERMITTED_NETWORK."""
    fields: dict[str, Any] = {
        "role": "relay",
        "proxy_protocol": True,
        "listeners": [listener(25, auth=AuthPolicy.OFFERED)],
        "permit_relay": {"authenticated": True, "networks": [PERMITTED_NETWORK]},
    }
    fields.update(overrides)
    return fields


# --- listeners ----------------------------------------------------------------------------


class TestListeners:
    async def test_every_listener_greets(self, mail_server: StartServer) -> None:
        server = await mail_server(
            listeners=[
                listener(25),
                listener(587, tls=ListenerTls.STARTTLS, auth=AuthPolicy.REQUIRED),
                listener(2525),
            ]
        )
        assert set(server.running.ports) == {25, 587, 2525}
        assert len(set(server.running.ports.values())) == 3
        for port in server.running.ports.values():
            reader, writer = await asyncio.open_connection(LOCALHOST, port)
            assert await reader.readline() == f"220 {HOSTNAME} ESMTP smtp-lab\r\n".encode()
            await close(writer)

    async def test_stop_drops_open_sessions_and_is_idempotent(
        self, mail_server: StartServer
    ) -> None:
        server = await mail_server()
        reader, writer = await raw_session(server.port())
        await server.running.stop()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await close(writer)
        await server.running.stop()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(LOCALHOST, server.port())

    async def test_implicit_tls(
        self, mail_server: StartServer, lab_certificates: LabCertificates
    ) -> None:
        server = await mail_server(
            listeners=[
                listener(465, tls=ListenerTls.IMPLICIT, auth=AuthPolicy.OFFERED),
            ]
        )
        context = client_context(lab_certificates.ca_file, verify=True)

        def conversation() -> tuple[dict[str, str], tuple[int, bytes]]:
            with LabSMTPSSL(server.port(465), context=context) as client:
                client.ehlo()
                features = dict(client.esmtp_features)
                return features, client.login(*ALICE)

        features, login = await talk(conversation)
        # Encrypted from the first byte: AUTH is offered at once, STARTTLS is not.
        assert "starttls" not in features
        assert features["auth"].split() == ["CRAM-MD5", "LOGIN", "PLAIN"]
        assert login[0] == 235

    async def test_implicit_tls_behind_proxy_header(
        self, mail_server: StartServer, lab_certificates: LabCertificates
    ) -> None:
        # The local backend sends the PROXY header before the client's TLS handshake.
        server = await mail_server(
            proxy_protocol=True,
            listeners=[listener(465, tls=ListenerTls.IMPLICIT, auth=AuthPolicy.OFFERED)],
        )
        context = client_context(lab_certificates.ca_file, verify=True)

        def conversation() -> tuple[int, bytes]:
            with LabSMTPSSL(
                server.port(465), context=context, proxy_source=PERMITTED_CLIENT
            ) as client:
                return client.noop()

        assert (await talk(conversation))[0] == 250
        (session,) = server.events("session")
        assert session["client"] == PERMITTED_CLIENT
        assert session["tls"] is True
        assert session["port"] == 465

    async def test_implicit_listener_needs_a_certificate(self, mail_server: StartServer) -> None:
        with pytest.raises(ValueError, match="no certificate"):
            await mail_server(tls=None, listeners=[listener(465, tls=ListenerTls.IMPLICIT)])


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


# --- SIZE -------------------------------------------------------------------------------


class TestSize:
    async def test_size_advertised(self, mail_server: StartServer) -> None:
        server = await mail_server(max_size=2000)

        def conversation() -> dict[str, str]:
            with LabSMTP(server.port()) as client:
                client.ehlo()
                return dict(client.esmtp_features)

        assert (await talk(conversation))["size"] == "2000"

    async def test_size_not_advertised_without_a_limit(self, mail_server: StartServer) -> None:
        server = await mail_server()

        def conversation() -> dict[str, str]:
            with LabSMTP(server.port()) as client:
                client.ehlo()
                return dict(client.esmtp_features)

        assert "size" not in await talk(conversation)

    async def test_mail_size_over_limit(self, mail_server: StartServer) -> None:
        server = await mail_server(max_size=2000)

        def conversation() -> tuple[int, bytes]:
            with LabSMTP(server.port()) as client:
                client.ehlo()
                return client.mail("sender@remote.example", ["SIZE=2001"])

        expect(await talk(conversation), S552_TOO_BIG)

    async def test_oversized_data(self, mail_server: StartServer) -> None:
        server = await mail_server(max_size=2000)
        body = MESSAGE + b"x" * 60 + b"\r\n"
        big = body * 40

        def conversation() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
            with LabSMTP(server.port()) as client:
                client.ehlo()
                client.mail("sender@remote.example")
                client.rcpt("alice@example.com")
                too_big = client.data(big)
                # The session goes on: a small message is still accepted.
                client.mail("sender@remote.example")
                client.rcpt("alice@example.com")
                return too_big, client.data(MESSAGE)

        too_big, small = await talk(conversation)
        expect(too_big, S552_TOO_BIG)
        assert small[0] == 250
        assert [m.data.endswith(MESSAGE) for m in server.store.messages("alice@example.com")] == [
            True
        ]


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


# --- AUTH -------------------------------------------------------------------------------


def _auth(client: smtplib.SMTP, mechanism: str, user: str, password: str) -> tuple[int, bytes]:
    """AUTH with one given mechanism; the reply whatever it is."""
    client.user, client.password = user, password
    authobject: Any = {
        "PLAIN": client.auth_plain,
        "LOGIN": client.auth_login,
        "CRAM-MD5": client.auth_cram_md5,
    }[mechanism]
    try:
        # LOGIN without an initial response: both of the server's challenges are used.
        return client.auth(mechanism, authobject, initial_response_ok=mechanism == "PLAIN")
    except smtplib.SMTPAuthenticationError as error:
        return error.smtp_code, cast("bytes", error.smtp_error)


class TestAuth:
    MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")

    async def start(self, mail_server: StartServer, **overrides: Any) -> MailServerUnderTest:
        fields: dict[str, Any] = {"listeners": [listener(587, auth=AuthPolicy.OFFERED)]}
        fields.update(overrides)
        return await mail_server(**fields)

    @pytest.mark.parametrize("mechanism", MECHANISMS)
    async def test_success(self, mail_server: StartServer, mechanism: str) -> None:
        server = await self.start(mail_server)

        def conversation() -> tuple[int, bytes]:
            with LabSMTP(server.port(587)) as client:
                client.ehlo()
                return _auth(client, mechanism, *ALICE)

        assert line(await talk(conversation)) == "235 2.7.0 Authentication successful"
        (event,) = server.events("auth")
        assert (event["mechanism"], event["user"], event["success"]) == (mechanism, "alice", True)

    @pytest.mark.parametrize("mechanism", MECHANISMS)
    async def test_bad_password(self, mail_server: StartServer, mechanism: str) -> None:
        server = await self.start(mail_server)

        def conversation() -> tuple[int, bytes]:
            with LabSMTP(server.port(587)) as client:
                client.ehlo()
                return _auth(client, mechanism, "alice", "wrong-password")

        expect(await talk(conversation), S535_BAD_CREDENTIALS)
        (event,) = server.events("auth")
        assert (event["success"], event["reason"]) == (False, "wrong password")

    async def test_unknown_user(self, mail_server: StartServer) -> None:
        server = await self.start(mail_server)

        def conversation() -> tuple[int, bytes]:
            with LabSMTP(server.port(587)) as client:
                client.ehlo()
                return _auth(client, "PLAIN", "mallory", "s3cret-Alice")

        expect(await talk(conversation), S535_BAD_CREDENTIALS)

    async def test_mechanism_not_offered(self, mail_server: StartServer) -> None:
        server = await self.start(mail_server, auth_mechanisms=["PLAIN", "LOGIN"])

        def conversation() -> tuple[str, tuple[int, bytes]]:
            with LabSMTP(server.port(587)) as client:
                client.ehlo()
                return client.esmtp_features["auth"], _auth(client, "CRAM-MD5", *ALICE)

        offered, reply = await talk(conversation)
        assert offered.split() == ["LOGIN", "PLAIN"]
        expect(reply, S504_MECHANISM)

    async def test_mechanism_names_are_case_insensitive(self, mail_server: StartServer) -> None:
        server = await self.start(mail_server)
        blob = base64.b64encode(b"\0alice\0s3cret-Alice")

        def conversation() -> tuple[int, bytes]:
            with LabSMTP(server.port(587)) as client:
                client.ehlo()
                return client.docmd("AUTH", "plain " + blob.decode())

        assert (await talk(conversation))[0] == 235

    async def test_cram_md5_rejects_an_initial_response(self, mail_server: StartServer) -> None:
        server = await self.start(mail_server)

        def conversation() -> tuple[int, tuple[int, bytes]]:
            with LabSMTP(server.port(587)) as client:
                client.ehlo()
                reply = client.docmd("AUTH", "CRAM-MD5 " + base64.b64encode(b"x").decode())
                return reply[0], client.noop()

        code, after = await talk(conversation)
        assert code == 501
        assert after[0] == 250

    async def test_auth_off(self, mail_server: StartServer) -> None:
        server = await self.start(mail_server, listeners=[listener(25, auth=AuthPolicy.OFF)])

        def conversation() -> tuple[dict[str, str], tuple[int, bytes]]:
            with LabSMTP(server.port(25)) as client:
                client.ehlo()
                return dict(client.esmtp_features), client.docmd("AUTH", "PLAIN")

        features, reply = await talk(conversation)
        assert "auth" not in features
        expect(reply, S503_AUTH_DISABLED)

    async def test_no_secret_in_events(self, mail_server: StartServer) -> None:
        server = await self.start(mail_server)

        def conversation() -> None:
            with LabSMTP(server.port(587)) as client:
                client.ehlo()
                for mechanism in self.MECHANISMS:
                    _auth(client, mechanism, "alice", "wrong-password")
                _auth(client, "PLAIN", *ALICE)

        await talk(conversation)
        text = (server.config.data_dir / "events.jsonl").read_text()
        assert len(server.events("auth")) == 4
        for secret in ("s3cret-Alice", "wrong-password"):
            assert secret not in text
            assert base64.b64encode(secret.encode()).decode() not in text
        assert base64.b64encode(b"\0alice\0s3cret-Alice").decode() not in text


# --- TLS policy -------------------------------------------------------------------------


class TestTlsPolicy:
    async def test_starttls_required(
        self, mail_server: StartServer, lab_certificates: LabCertificates
    ) -> None:
        server = await mail_server(
            listeners=[listener(587, tls=ListenerTls.STARTTLS, require_tls=True)]
        )
        context = client_context(lab_certificates.ca_file, verify=True)

        def conversation() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
            with LabSMTP(server.port(587)) as client:
                client.ehlo()
                before = client.mail("sender@remote.example")
                client.starttls(context=context)
                client.ehlo()
                return before, client.mail("sender@remote.example")

        before, after = await talk(conversation)
        expect(before, S530_STARTTLS_FIRST)
        expect(after, S250_SENDER_OK, address="sender@remote.example")
        refusal = [e for e in server.events("command") if e["code"] == 530]
        assert [e["reply"] for e in refusal] == [S530_STARTTLS_FIRST()]

    async def test_authentication_required(self, mail_server: StartServer) -> None:
        server = await mail_server(listeners=[listener(587, auth=AuthPolicy.REQUIRED)])

        def conversation() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
            with LabSMTP(server.port(587)) as client:
                client.ehlo()
                before = client.mail("alice@example.com")
                client.login(*ALICE)
                return before, client.mail("alice@example.com")

        before, after = await talk(conversation)
        expect(before, S530_AUTH_REQUIRED)
        expect(after, S250_SENDER_OK, address="alice@example.com")
        (refusal,) = [e for e in server.events("command") if e["code"] == 530]
        assert refusal["verb"] == "mail"

    async def test_auth_offered_only_after_starttls(
        self, mail_server: StartServer, lab_certificates: LabCertificates
    ) -> None:
        server = await mail_server(
            listeners=[
                listener(
                    587,
                    tls=ListenerTls.STARTTLS,
                    auth=AuthPolicy.REQUIRED,
                    auth_requires_tls=True,
                )
            ]
        )
        context = client_context(lab_certificates.ca_file, verify=True)

        def conversation() -> tuple[dict[str, str], tuple[int, bytes], dict[str, str]]:
            with LabSMTP(server.port(587)) as client:
                client.ehlo()
                before = dict(client.esmtp_features)
                attempt = client.docmd("AUTH", "PLAIN")
                client.starttls(context=context)
                client.ehlo()
                return before, attempt, dict(client.esmtp_features)

        before, attempt, after = await talk(conversation)
        assert "auth" not in before
        assert "starttls" in before
        expect(attempt, S538_ENCRYPTION_REQUIRED)
        assert after["auth"].split() == ["CRAM-MD5", "LOGIN", "PLAIN"]
        assert "starttls" not in after

    async def test_starttls_without_certificate(self, mail_server: StartServer) -> None:
        server = await mail_server(tls=None, listeners=[listener(25, tls=ListenerTls.STARTTLS)])

        def conversation() -> tuple[dict[str, str], tuple[int, bytes]]:
            with LabSMTP(server.port(25)) as client:
                client.ehlo()
                return dict(client.esmtp_features), client.docmd("STARTTLS")

        features, reply = await talk(conversation)
        assert "starttls" not in features
        expect(reply, S454_TLS_UNAVAILABLE)

    async def test_proxied_address_survives_starttls(
        self, mail_server: StartServer, lab_certificates: LabCertificates
    ) -> None:
        server = await mail_server(
            **relay_config(listeners=[listener(587, tls=ListenerTls.STARTTLS)])
        )
        context = client_context(lab_certificates.ca_file, verify=True)

        def conversation() -> tuple[int, bytes]:
            with LabSMTP(server.port(587), proxy_source=PERMITTED_CLIENT) as client:
                client.starttls(context=context)
                client.mail("printer@office.example")
                return client.rcpt("friend@elsewhere.example")

        reply = await talk(conversation)
        expect(reply, S250_RECIPIENT_OK, address="friend@elsewhere.example")


class TestCertificates:
    @pytest.mark.parametrize(
        ("hostname", "reason"),
        [
            ("expired.example.com", "certificate has expired"),
            ("misnamed.example.com", "Hostname mismatch"),
            ("selfsigned.example.com", "self-signed certificate"),
        ],
        ids=["expired", "wrong-name", "self-signed"],
    )
    async def test_fault_seen_by_verifying_client(
        self,
        mail_server: StartServer,
        lab_certificates: LabCertificates,
        hostname: str,
        reason: str,
    ) -> None:
        server = await mail_server(
            hostname=hostname,
            tls=lab_certificates.files[hostname],
            listeners=[
                listener(465, tls=ListenerTls.IMPLICIT),
                listener(587, tls=ListenerTls.STARTTLS),
            ],
        )
        context = client_context(lab_certificates.ca_file, verify=True)

        def implicit() -> None:
            with LabSMTPSSL(server.port(465), context=context, tls_name=hostname):
                pass

        def starttls() -> None:
            with LabSMTP(server.port(587), tls_name=hostname) as client:
                client.starttls(context=context)

        for conversation in (implicit, starttls):
            with pytest.raises(ssl.SSLCertVerificationError) as caught:
                await talk(conversation)
            assert reason in caught.value.verify_message
        # The server survives: a client that does not verify still gets through.
        lenient = client_context(lab_certificates.ca_file, verify=False)

        def unverified() -> tuple[int, bytes]:
            with LabSMTPSSL(server.port(465), context=lenient, tls_name=hostname) as client:
                return client.noop()

        assert (await talk(unverified))[0] == 250
        for _ in range(50):  # the server notices the failed STARTTLS asynchronously
            if server.events("tls-failed"):
                break
            await asyncio.sleep(0.01)
        (failed,) = server.events("tls-failed")
        assert failed["port"] == 587


# --- delivery ----------------------------------------------------------------------------


class TestDelivery:
    async def test_message_stored_with_received_header(self, mail_server: StartServer) -> None:
        server = await mail_server()

        def conversation() -> tuple[int, bytes]:
            with LabSMTP(server.port()) as client:
                client.ehlo("client.remote.example")
                client.mail("sender@remote.example")
                client.rcpt("alice@example.com")
                return client.data(MESSAGE)

        reply = line(await talk(conversation))
        match = QUEUED.match(reply)
        assert match, reply
        transaction = match.group(1)
        # Durable before the 250: the file is already in new/.
        (stored,) = server.store.messages("alice@example.com")
        assert stored.path.parent.name == "new"
        received, rest = stored.data.split(b"\r\n\t", 1)
        assert received == b"Received: from client.remote.example ([127.0.0.1])"
        assert rest.startswith(f"by {HOSTNAME} (smtp-lab) with ESMTP id {transaction}".encode())
        assert b"\tfor <alice@example.com>; " in rest
        assert stored.data.endswith(MESSAGE)
        (accepted,) = server.events("accepted")
        assert accepted["message_id"] == "<test-1@remote.example>"
        assert accepted["sender"] == "sender@remote.example"
        assert accepted["local"] == ["alice@example.com"]
        assert accepted["relayed"] == []
        assert accepted["size"] == len(MESSAGE)
        (event,) = server.events("stored")
        assert (event["mailbox"], event["id"]) == ("alice@example.com", stored.id)
        assert event["message_id"] == "<test-1@remote.example>"

    async def test_each_recipient_gets_a_copy(self, mail_server: StartServer) -> None:
        server = await mail_server()

        def conversation() -> tuple[int, bytes]:
            with LabSMTP(server.port()) as client:
                client.mail("sender@remote.example")
                client.rcpt("alice@example.com")
                client.rcpt("BOB@example.com")
                client.rcpt("alice@example.com")
                return client.data(MESSAGE)

        assert (await talk(conversation))[0] == 250
        assert server.store.mailboxes() == ["alice@example.com", "bob@example.com"]
        assert len(server.store.messages("alice@example.com")) == 1
        assert len(server.store.messages("bob@example.com")) == 1

    async def test_null_sender_is_accepted(self, mail_server: StartServer) -> None:
        # Bounces (DSNs) come from the null reverse-path and must never be refused for it.
        server = await mail_server()

        def conversation() -> tuple[int, bytes]:
            with LabSMTP(server.port()) as client:
                client.mail("<>")
                client.rcpt("alice@example.com")
                return client.data(MESSAGE)

        assert (await talk(conversation))[0] == 250
        (accepted,) = server.events("accepted")
        assert accepted["sender"] == ""

    async def test_storage_failure_is_a_temporary_error(self, mail_server: StartServer) -> None:
        server = await mail_server()
        # A file where alice's mailbox directory belongs: writing must fail.
        boxes = server.config.data_dir / "mailboxes"
        boxes.mkdir(parents=True, exist_ok=True)
        (boxes / "alice@example.com").write_text("in the way")

        def conversation() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
            with LabSMTP(server.port()) as client:
                client.mail("sender@remote.example")
                client.rcpt("alice@example.com")
                failed = client.data(MESSAGE)
                client.mail("sender@remote.example")
                client.rcpt("bob@example.com")
                return failed, client.data(MESSAGE)

        failed, next_message = await talk(conversation)
        expect(failed, S451_LOCAL_ERROR)
        assert next_message[0] == 250
        (error,) = server.events("error")
        assert error["stage"] == "data"
        assert server.events("accepted")[0]["local"] == ["bob@example.com"]

    async def test_policy_failure_is_a_temporary_error(
        self, mail_server: StartServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Fault injection: any hook failing must give 451 4.3.0, never a 500 with the text.
        server = await mail_server()

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("internal detail")

        monkeypatch.setattr(server.running.context.policy, "decide", broken)

        def conversation() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
            with LabSMTP(server.port()) as client:
                client.mail("sender@remote.example")
                return client.rcpt("alice@example.com"), client.noop()

        failed, after = await talk(conversation)
        expect(failed, S451_LOCAL_ERROR)
        assert after[0] == 250
        (error,) = server.events("error")
        assert (error["error"], error["detail"]) == ("RuntimeError", "internal detail")


# --- events ------------------------------------------------------------------------------


class TestEvents:
    async def test_session_and_rcpt_decisions(self, mail_server: StartServer) -> None:
        server = await mail_server(proxy_protocol=True)

        def conversation() -> None:
            with LabSMTP(server.port(), proxy_source=OUTSIDE_CLIENT) as client:
                client.mail("sender@remote.example")
                client.rcpt("alice@example.com")
                client.rcpt("nobody@example.com")
                client.rcpt("friend@elsewhere.example")

        await talk(conversation)
        (session,) = server.events("session")
        assert session["proxied_peer"] == OUTSIDE_CLIENT
        assert session["peer"].startswith("127.0.0.1:")
        assert session["port"] == 25
        rcpts = [e for e in server.events("command") if e["verb"] == "rcpt"]
        assert [(e["address"], e["decision"], e["code"]) for e in rcpts] == [
            ("alice@example.com", "local", 250),
            ("nobody@example.com", "user-unknown", 550),
            ("friend@elsewhere.example", "relay-denied", 554),
        ]
        assert {e["client"] for e in rcpts} == {OUTSIDE_CLIENT}


# --- bad input ---------------------------------------------------------------------------


class TestBadInput:
    async def test_junk_lines_get_errors_and_the_session_goes_on(
        self, mail_server: StartServer
    ) -> None:
        server = await mail_server()
        reader, writer = await raw_session(server.port())
        assert (await command(reader, writer, b"\xff\xfe\x00\x01garbage")).startswith(b"500 ")
        assert (await command(reader, writer, b"")).startswith(b"500 ")
        assert (await command(reader, writer, b"MAIL FROM:<<<")).startswith(b"5")
        assert (await command(reader, writer, b"NOOP")).startswith(b"250 ")
        await close(writer)

    async def test_overlong_line(self, mail_server: StartServer) -> None:
        server = await mail_server()
        reader, writer = await raw_session(server.port())
        reply = await command(reader, writer, b"NOOP " + b"x" * 5000)
        assert reply == b"500 Command line too long\r\n"
        assert (await command(reader, writer, b"NOOP")).startswith(b"250 ")
        await close(writer)

    async def test_server_answers_the_next_client(self, mail_server: StartServer) -> None:
        server = await mail_server()
        reader, writer = await raw_session(server.port())
        for _ in range(5):  # too many unknown commands: the server hangs up
            await command(reader, writer, b"BOGUS")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await close(writer)
        # A client vanishing in the middle of DATA loses its message, nothing else.
        reader, writer = await raw_session(server.port())
        for text in (b"EHLO x", b"MAIL FROM:<a@b.example>", b"RCPT TO:<alice@example.com>"):
            assert (await command(reader, writer, text)).startswith(b"250 ")
        assert (await command(reader, writer, b"DATA")).startswith(b"354 ")
        writer.write(b"Subject: half\r\n")
        await close(writer)
        reader, writer = await raw_session(server.port())
        assert (await command(reader, writer, b"NOOP")).startswith(b"250 ")
        await close(writer)
        assert server.store.messages("alice@example.com") == []

    async def test_bad_proxy_header_closes_only_that_connection(
        self, mail_server: StartServer, lab_certificates: LabCertificates
    ) -> None:
        server = await mail_server(
            proxy_protocol=True,
            listeners=[listener(25), listener(465, tls=ListenerTls.IMPLICIT)],
        )
        for port in (server.port(25), server.port(465)):
            reader, writer = await asyncio.open_connection(LOCALHOST, port)
            writer.write(b"HELLO THERE\r\n")
            assert await asyncio.wait_for(reader.read(), 5) == b""
            await close(writer)
        reader, writer = await asyncio.open_connection(LOCALHOST, server.port(25))
        writer.write(proxy_header(PERMITTED_CLIENT, 25))
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"220 ")
        await close(writer)
        context = client_context(lab_certificates.ca_file, verify=True)

        def implicit() -> tuple[int, bytes]:
            with LabSMTPSSL(
                server.port(465), context=context, proxy_source=PERMITTED_CLIENT
            ) as client:
                return client.noop()

        assert (await talk(implicit))[0] == 250
