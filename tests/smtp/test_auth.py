"""AUTH as the mail program performs it: each mechanism, the automatic choice, refusals,
and no secret in the transcript or the JSON result."""

from __future__ import annotations

import pytest

from lab.scenario.model import Outcome, Stage
from lab.smtp.transcript import Direction
from tests.smtp.conftest import CramHandler, Pki, StartServer, authenticator
from tests.smtp.helpers import (
    HELO,
    PASSWORD,
    SENDER,
    assert_no_secrets,
    assert_stopped,
    make_settings,
    said,
    send,
)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
async def test_auth_mechanisms_succeed_and_are_masked(
    smtp_server: StartServer, mechanism: str
) -> None:
    server = smtp_server(CramHandler(), authenticator=authenticator, auth_require_tls=False)
    settings = make_settings(
        server.port, auth={"user": "alice", "password": PASSWORD, "mechanism": mechanism}
    )
    result = await send(settings)

    assert_stopped(result, Outcome.DELIVERED, Stage.DATA, 250, "2.0.0")
    assert result.authenticated
    client = said(result, Direction.CLIENT)
    auth_lines = client[
        client.index(f"EHLO {HELO}") + 1 : client.index(f"MAIL FROM:<{SENDER}> SIZE=600")
    ]
    expected = {
        "PLAIN": ["AUTH PLAIN ****"],
        "LOGIN": ["AUTH LOGIN", "****", "****"],
        "CRAM-MD5": ["AUTH CRAM-MD5", "****"],
    }[mechanism]
    assert auth_lines == expected
    if mechanism == "LOGIN":
        notes = said(result, Direction.NOTE)
        # aiosmtpd's challenges; control characters are escaped in the transcript.
        assert "334 VXNlciBOYW1lAA== (User Name\\x00)" in notes
        assert "334 UGFzc3dvcmQA (Password\\x00)" in notes
    assert_no_secrets(result, "alice", PASSWORD)


@pytest.mark.parametrize(
    ("excluded", "chosen"), [([], "AUTH PLAIN ****"), (["PLAIN"], "AUTH LOGIN")]
)
async def test_auto_mechanism_follows_preference(
    smtp_server: StartServer, excluded: list[str], chosen: str
) -> None:
    server = smtp_server(
        authenticator=authenticator, auth_require_tls=False, auth_exclude_mechanism=excluded
    )
    settings = make_settings(server.port, auth={"user": "alice", "password": PASSWORD})
    result = await send(settings)
    assert_stopped(result, Outcome.DELIVERED, Stage.DATA, 250, "2.0.0")
    assert chosen in said(result, Direction.CLIENT)


async def test_bad_password_is_rejected_at_auth(smtp_server: StartServer) -> None:
    server = smtp_server(authenticator=authenticator, auth_require_tls=False)
    settings = make_settings(server.port, auth={"user": "alice", "password": "wrong-password"})
    result = await send(settings)
    assert_stopped(result, Outcome.REJECTED, Stage.AUTH, 535, "5.7.8")
    assert result.text == "5.7.8 Authentication credentials invalid"
    assert not result.authenticated
    assert said(result, Direction.CLIENT)[-1] == "QUIT"
    assert_no_secrets(result, "alice", "wrong-password")


async def test_forced_cram_md5_not_offered_gets_504(smtp_server: StartServer) -> None:
    server = smtp_server(authenticator=authenticator, auth_require_tls=False)
    settings = make_settings(
        server.port, auth={"user": "alice", "password": PASSWORD, "mechanism": "CRAM-MD5"}
    )
    result = await send(settings)
    assert_stopped(result, Outcome.REJECTED, Stage.AUTH, 504, "5.5.4")
    assert "AUTH CRAM-MD5" in said(result, Direction.CLIENT)
    assert result.extensions["AUTH"] == "LOGIN PLAIN"


async def test_auth_not_offered_before_tls(smtp_server: StartServer, pki: Pki) -> None:
    # The server offers AUTH only after STARTTLS; the mail program is set to no security.
    server = smtp_server(tls_context=pki.server_context(), authenticator=authenticator)
    settings = make_settings(server.port, auth={"user": "alice", "password": PASSWORD})
    result = await send(settings)
    assert_stopped(result, Outcome.AUTH_UNAVAILABLE, Stage.AUTH)
    assert "does not offer AUTH" in result.text
    assert not any(line.startswith("AUTH") for line in said(result, Direction.CLIENT))
