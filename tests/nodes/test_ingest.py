"""Accepted messages on real sockets: stored durably with a Received header, one copy per
mailbox, the null sender, and errors turned into 451 (`ingest.py`, `handler.handle_DATA`).

Replies are compared whole, against `lab.replies`: a reply's text is part of
what the lab teaches.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from lab.replies import S451_LOCAL_ERROR
from tests.nodes.conftest import (
    HOSTNAME,
    MESSAGE,
    LabSMTP,
    StartServer,
    expect,
    line,
    talk,
)

QUEUED = re.compile(r"^250 2\.0\.0 Ok: queued as (\S+)$")


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
