"""Shared by the SMTP client tests: mail settings, a `send` shortcut, transcript assertions."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from lab.net import DirectConnector, Streams
from lab.scenario.model import MailSettings, Outcome, Stage
from lab.smtp import sasl
from lab.smtp.mail_program import send_mail
from lab.smtp.result import SendResult
from lab.smtp.session import SmtpSession
from tests.smtp.conftest import HOST, SERVER_NAME, USERS, Script

SENDER = "alice@customer.example"
RECIPIENT = "bob@remote.example"
PASSWORD = USERS["alice"]
HELO = "pc.customer.lan"

ScriptedServer = Callable[[Script], Awaitable[int]]


def make_settings(port: int, **overrides: Any) -> MailSettings:
    data: dict[str, Any] = {
        "server": HOST,
        "port": port,
        "from": SENDER,
        "to": [RECIPIENT],
        "timeout": 2.0,
        "size": 600,
    }
    data.update(overrides)
    return MailSettings.model_validate(data)


async def no_lookup(name: str) -> list[str]:
    raise AssertionError(f"{name} should not have been looked up")


async def localhost(name: str) -> list[str]:
    assert name == SERVER_NAME
    return [HOST]


async def send(
    settings: MailSettings,
    *,
    connector: Any = None,
    resolve: Callable[[str], Awaitable[list[str]]] = no_lookup,
    ca_file: Path | None = None,
) -> SendResult:
    return await send_mail(
        settings,
        connector=connector or DirectConnector(),
        resolve=resolve,
        helo=HELO,
        ca_file=ca_file,
    )


def said(result: SendResult | SmtpSession, direction: str) -> list[str]:
    """The texts of one direction's transcript lines."""
    return [line.text for line in result.transcript.lines if line.direction == direction]


def assert_stopped(
    result: SendResult,
    outcome: Outcome,
    stage: Stage | None,
    code: int | None = None,
    enhanced: str | None = None,
) -> None:
    assert (result.outcome, result.stage, result.code, result.enhanced) == (
        outcome,
        stage,
        code,
        enhanced,
    ), result.transcript.render()


class FailingConnector:
    """A connector whose connection attempts fail with a given `lab.net` error."""

    def __init__(self, error: OSError) -> None:
        self.error = error

    async def open_connection(self, host: str, port: int, *, timeout: float) -> Streams:
        raise self.error


def assert_no_secrets(result: SendResult, user: str, password: str) -> None:
    """Neither the password nor any blob derived from it is anywhere in the output."""
    rendered = result.transcript.render()
    as_json = json.dumps(result.to_json())
    forbidden = {
        password,
        sasl.b64(password),
        sasl.b64(user),
        sasl.plain_response(user, password),
    }
    for text in (rendered, as_json):
        for secret in forbidden:
            assert secret not in text, f"{secret!r} leaked:\n{rendered}"
