"""`lab.smtp.client` is a shim until every caller imports from the new modules: it must
re-export each name it used to define, as the very object of its new home."""

from __future__ import annotations

import importlib

import pytest

from lab.smtp import client

# Where each name of the old `lab.smtp.client` lives now.
HOMES = {
    "MAX_REPLY_LINE": "connection",
    "MAX_REPLY_LINES": "connection",
    "Clock": "connection",
    "SmtpClientError": "errors",
    "ProtocolError": "errors",
    "MalformedReply": "errors",
    "SmtpTimeout": "errors",
    "ConnectionLost": "errors",
    "TlsError": "errors",
    "Resolve": "mail_program",
    "send_mail": "mail_program",
    "SmtpReply": "reply",
    "parse_reply_line": "reply",
    "parse_extensions": "reply",
    "SendResult": "result",
    "MAX_SASL_ROUNDS": "session",
    "MAX_SHOWN_HEADER_LINES": "session",
    "SmtpSession": "session",
    "encode_data": "session",
    "TlsInfo": "tls",
    "client_tls_context": "tls",
    "tls_reason": "tls",
}


def test_exports_exactly_the_old_names() -> None:
    assert sorted(client.__all__) == sorted(HOMES)


@pytest.mark.parametrize(("name", "home"), sorted(HOMES.items()))
def test_name_is_the_object_of_its_new_home(name: str, home: str) -> None:
    module = importlib.import_module(f"lab.smtp.{home}")
    assert getattr(client, name) is getattr(module, name)
