"""Compatibility shim: the old home of the SMTP client, now split by concept under `lab.smtp`.

Every name this module used to define is re-exported from its new home:
replies in `reply`, errors in `errors`, TLS in `tls`, the recorded wire in
`connection`, the stages in `session`, the mail program in `mail_program` and
its result in `result`. New code imports from those modules; the lead removes
this shim once every caller has moved.
"""

from __future__ import annotations

from lab.smtp.connection import MAX_REPLY_LINE, MAX_REPLY_LINES, Clock
from lab.smtp.errors import (
    ConnectionLost,
    MalformedReply,
    ProtocolError,
    SmtpClientError,
    SmtpTimeout,
    TlsError,
)
from lab.smtp.mail_program import Resolve, send_mail
from lab.smtp.reply import SmtpReply, parse_extensions, parse_reply_line
from lab.smtp.result import SendResult
from lab.smtp.session import MAX_SASL_ROUNDS, MAX_SHOWN_HEADER_LINES, SmtpSession, encode_data
from lab.smtp.tls import TlsInfo, client_tls_context, tls_reason

__all__ = [
    "MAX_REPLY_LINE",
    "MAX_REPLY_LINES",
    "MAX_SASL_ROUNDS",
    "MAX_SHOWN_HEADER_LINES",
    "Clock",
    "ConnectionLost",
    "MalformedReply",
    "ProtocolError",
    "Resolve",
    "SendResult",
    "SmtpClientError",
    "SmtpReply",
    "SmtpSession",
    "SmtpTimeout",
    "TlsError",
    "TlsInfo",
    "client_tls_context",
    "encode_data",
    "parse_extensions",
    "parse_reply_line",
    "send_mail",
    "tls_reason",
]
