"""SMTP AUTH on real sockets: PLAIN, LOGIN and CRAM-MD5 against the user table, mechanisms
offered or not, AUTH off, and no secret in the events (`auth.py`).

Replies are compared whole, against `lab.replies`: a reply's text is part of
what the lab teaches.
"""

from __future__ import annotations

import base64
import smtplib
from typing import Any, cast

import pytest

from lab.replies import (
    S503_AUTH_DISABLED,
    S504_MECHANISM,
    S535_BAD_CREDENTIALS,
)
from lab.scenario.model import AuthPolicy
from tests.nodes.conftest import (
    ALICE,
    LabSMTP,
    MailServerUnderTest,
    StartServer,
    expect,
    line,
    listener,
    talk,
)


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
