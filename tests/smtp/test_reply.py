"""SMTP replies as data: parsing wire lines, garbage refused, properties, EHLO keywords."""

from __future__ import annotations

import pytest

from lab.smtp.errors import ProtocolError
from lab.smtp.reply import SmtpReply, parse_extensions


@pytest.mark.parametrize(
    ("lines", "code", "texts", "enhanced"),
    [
        (["220 mx.lab.test ESMTP"], 220, ["mx.lab.test ESMTP"], None),
        (["250"], 250, [""], None),
        (
            ["250-mx.lab.test", "250-SIZE 100", "250 HELP"],
            250,
            ["mx.lab.test", "SIZE 100", "HELP"],
            None,
        ),
        (["550 5.1.1 <b@x>: User unknown"], 550, ["5.1.1 <b@x>: User unknown"], "5.1.1"),
        (["451 4.7.1 Greylisted"], 451, ["4.7.1 Greylisted"], "4.7.1"),
        (["550-5.7.1 first", "550 5.7.1 second"], 550, ["5.7.1 first", "5.7.1 second"], "5.7.1"),
        # The class of an enhanced code must agree with the reply code.
        (["250 5.1.1 odd"], 250, ["5.1.1 odd"], None),
        (["535 5.7.8"], 535, ["5.7.8"], "5.7.8"),
    ],
)
def test_reply_parse(lines: list[str], code: int, texts: list[str], enhanced: str | None) -> None:
    reply = SmtpReply.parse(lines)
    assert (reply.code, reply.lines, reply.enhanced) == (code, texts, enhanced)
    assert reply.wire_lines() == [line if len(line) > 3 else f"{line} " for line in lines]


@pytest.mark.parametrize(
    "lines",
    [
        ["HTTP/1.1 400 Bad Request"],
        ["SSH-2.0-OpenSSH_9.2"],
        ["\x16\x03\x01\x00"],
        ["600 no such class"],
        ["2500 too long a code"],
        ["250-first", "251 other code"],
        ["250 final", "250 after final"],
        ["250-never ends"],
        [],
    ],
)
def test_reply_parse_rejects_garbage(lines: list[str]) -> None:
    with pytest.raises(ProtocolError):
        SmtpReply.parse(lines)


def test_reply_properties() -> None:
    reply = SmtpReply.parse(
        ["550-5.1.1 <b@x>: Recipient address rejected:", "550 5.1.1 User unknown"]
    )
    assert reply.is_permanent
    assert reply.is_error
    assert not reply.is_positive
    assert not reply.is_transient
    assert not reply.is_intermediate
    assert reply.text == "5.1.1 <b@x>: Recipient address rejected:\n5.1.1 User unknown"
    assert reply.message == "<b@x>: Recipient address rejected: User unknown"
    assert SmtpReply.from_json(reply.to_json()) == reply
    assert SmtpReply.parse(["451 4.7.1 later"]).is_transient
    assert SmtpReply.parse(["354 go ahead"]).is_intermediate


def test_parse_extensions() -> None:
    reply = SmtpReply.parse(
        [
            "250-mx.lab.test",
            "250-SIZE 10240000",
            "250-starttls",
            "250-AUTH=LOGIN PLAIN",
            "250 8BITMIME",
        ]
    )
    assert parse_extensions(reply) == {
        "SIZE": "10240000",
        "STARTTLS": "",
        "AUTH": "LOGIN PLAIN",
        "8BITMIME": "",
    }
