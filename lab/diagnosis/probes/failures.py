"""How a probe's error becomes the planner's `Failure`.

Runners catch only the errors a conversation can meet (`EXPECTED`) and report
them as plain `Failure`s; anything else is a bug and propagates.
"""

from __future__ import annotations

from lab.diagnosis.requests import Failure
from lab.net import ConnectError, ConnectRefused, ConnectTimeout, HostUnreachable
from lab.smtp.errors import ConnectionLost, ProtocolError, SmtpClientError, SmtpTimeout, TlsError

# What a probe may meet talking to a server: reported as a Failure, never raised.
EXPECTED = (SmtpClientError, ConnectError, OSError, ValueError)


def failure_of(error: BaseException) -> Failure:
    """The planner's view of a client or connect error."""
    if isinstance(error, SmtpTimeout):
        return Failure("timeout", str(error))
    if isinstance(error, ConnectionLost):
        return Failure("closed", str(error))
    if isinstance(error, TlsError):
        return Failure("tls", error.reason)
    if isinstance(error, ProtocolError):
        line = getattr(error, "line", "")
        return Failure("malformed", f"{error}" + (f" ({line[:60]!r})" if line else ""))
    if isinstance(error, ConnectTimeout):
        return Failure("connect-timeout", str(error))
    if isinstance(error, ConnectRefused):
        return Failure("refused", str(error))
    if isinstance(error, HostUnreachable):
        return Failure("unreachable", str(error))
    return Failure("error", str(error) or type(error).__name__)
