"""TLS on a listener, on real sockets: STARTTLS and AUTH demands, a listener without a
certificate, the PROXY address across STARTTLS, and faulty certificates.

Replies are compared whole, against `lab.replies`: a reply's text is part of
what the lab teaches.
"""

from __future__ import annotations

import asyncio
import ssl

import pytest

from lab.nodes.tls import client_context
from lab.replies import (
    S250_RECIPIENT_OK,
    S250_SENDER_OK,
    S454_TLS_UNAVAILABLE,
    S530_AUTH_REQUIRED,
    S530_STARTTLS_FIRST,
    S538_ENCRYPTION_REQUIRED,
)
from lab.scenario.model import AuthPolicy, ListenerTls
from tests.nodes.conftest import (
    ALICE,
    PERMITTED_CLIENT,
    LabCertificates,
    LabSMTP,
    LabSMTPSSL,
    StartServer,
    expect,
    listener,
    relay_config,
    talk,
)

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
