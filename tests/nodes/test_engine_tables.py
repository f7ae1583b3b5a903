"""The engine's speed-ups give what aiosmtpd itself gives: the same per-session tables
(`engine_tables`) and the same address parsing (`LabSMTP._getaddr`'s fast path)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from lab.nodes.mailserver import engine_tables
from tests.nodes.conftest import StartServer


class Handler:
    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        return responses

    async def auth_CUSTOM(self, server: Any, args: list[str]) -> bool:
        return True


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_cached_introspection_agrees_with_the_real_one(loop: asyncio.AbstractEventLoop) -> None:
    session = SMTP(Handler(), loop=loop)
    for obj in (session, Handler()):
        assert sorted(engine_tables.cached_dir(obj)) == sorted(dir(obj))
        real = [(n, v) for n, v in inspect.getmembers(obj) if n.startswith("auth_")]
        assert engine_tables.auth_members(obj) == real
    hook = Handler().handle_EHLO
    assert engine_tables.cached_signature(hook) == inspect.signature(hook)


def test_each_session_gets_its_own_bound_methods(loop: asyncio.AbstractEventLoop) -> None:
    first, second = SMTP(Handler(), loop=loop), SMTP(Handler(), loop=loop)
    assert first._smtp_methods["MAIL"].__self__ is first
    assert second._smtp_methods["MAIL"].__self__ is second
    assert second._auth_methods["PLAIN"].method.__self__ is second
    assert set(first._auth_methods) == {"PLAIN", "LOGIN", "CUSTOM"}


@pytest.mark.parametrize(
    "arg",
    [
        "<alice@example.com>",
        "<alice@example.com> SIZE=1000 BODY=8BITMIME",
        " <a.b+c@mx.example.com>",
        "<first.last@example.com>\tSIZE=1",
        "<alice@example.com>  ",
        "<alice@example.com> SIZE=1 ",
        "<alice@example.com>X",
        "<alice@example.com> (comment) SIZE=1",
        "<alice@example.com> SIZE=1 (comment)",
        '<alice@example.com> X="y"',
        "<alice@example.com>\r\n SIZE=1",
        "<>",
        "alice@example.com",
        '<"quoted local"@example.com>',
        "<alice@[192.0.2.1]>",
        "<alice..dots@example.com>",
        "<.alice@example.com>",
        "<alice@example.com",
        "<alice(comment)@example.com>",
        "<@route.example:alice@example.com>",
        "<" + "x" * 70 + "@example.com>",
        "<alice@exa_mple.com>",
        "<ålice@example.com>",
    ],
)
async def test_address_parsing_agrees_with_the_engine(mail_server: StartServer, arg: str) -> None:
    server = await mail_server()
    protocol = server.running._listeners[0].protocol()
    assert protocol._getaddr(arg) == SMTP._getaddr(protocol, arg)
