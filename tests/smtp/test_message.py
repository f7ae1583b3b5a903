"""The test message a mail program sends: its size and headers."""

from __future__ import annotations

from lab.smtp.message import build_message, new_message_id
from tests.smtp.helpers import make_settings


def test_message_size_and_headers() -> None:
    settings = make_settings(25, size=4096, subject="Grüße")
    message_id = new_message_id("pc.customer.lan")
    assert message_id.startswith("<")
    assert message_id.endswith("@pc.customer.lan>")
    message = build_message(settings, message_id=message_id)
    assert len(message) == 4096
    head = message.split(b"\r\n\r\n", 1)[0].decode()
    for header in ("From: ", "To: ", "Subject: =?utf-8?", "Date: ", "MIME-Version: 1.0"):
        assert header in head
    assert f"Message-ID: {message_id}" in head
    assert b"\n" not in message.replace(b"\r\n", b"")
