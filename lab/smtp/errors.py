"""Why an SMTP client session cannot go on: the `SmtpClientError` hierarchy.

Each error carries the `Stage` where it happened, so that a caller can say
"timed out at EHLO" without tracking the conversation itself. SMTP error
replies are not errors here: a `550` is an answer, returned as an `SmtpReply`.
Network failures before the session exists are `lab.net.ConnectError`s.
"""

from __future__ import annotations

from lab.scenario.model import Stage
from lab.smtp.transcript import format_seconds


class SmtpClientError(Exception):
    """The session cannot go on; `stage` is where that happened."""

    def __init__(self, stage: Stage | None, message: str) -> None:
        super().__init__(message)
        self.stage = stage


class ProtocolError(SmtpClientError):
    """The server said something that is not SMTP."""


class MalformedReply(ProtocolError):
    """A reply line that cannot be parsed; `line` is what arrived (escaped)."""

    def __init__(self, stage: Stage | None, message: str, line: str) -> None:
        super().__init__(stage, message)
        self.line = line


class SmtpTimeout(SmtpClientError):
    """No (complete) answer within the session's timeout."""

    def __init__(self, stage: Stage | None, timeout: float | None = None) -> None:
        waited = f" after {format_seconds(timeout)} s" if timeout is not None else ""
        super().__init__(stage, f"timed out{waited} at {stage or 'start'}")
        self.timeout = timeout


class ConnectionLost(SmtpClientError):
    """The peer closed (or reset) the connection."""

    def __init__(
        self, stage: Stage | None, detail: str = "connection closed by the server"
    ) -> None:
        super().__init__(stage, detail)


class TlsError(SmtpClientError):
    """The TLS handshake failed; `reason` is OpenSSL's, e.g. `WRONG_VERSION_NUMBER: …`."""

    def __init__(self, stage: Stage | None, reason: str) -> None:
        super().__init__(stage, reason)
        self.reason = reason


def describe(error: BaseException) -> str:
    """An exception's message, or its type when it has none (`ConnectionResetError()`)."""
    return str(error) or type(error).__name__
