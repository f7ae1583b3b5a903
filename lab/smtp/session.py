"""The SMTP conversation on the client side: `SmtpSession`, one method per stage.

Three users share it: the customer's mail program (`lab.smtp.mail_program`),
the relay's outbound delivery and the diagnosis probes. It is written on
asyncio streams rather than `smtplib` because every line must be timed and
recorded as it happens (`lab.smtp.connection` does that), and each failure
must say at which stage it happened. SMTP error replies are returned, never
raised, because a `550` is an answer, not a failure of the client.

AUTH secrets never reach the transcript: initial responses and SASL answers
are recorded as `****`, and any line that would still contain the password
(raw or base64) is redacted before it is stored.
"""

from __future__ import annotations

import contextlib
import re
import ssl

from lab.net import Connector
from lab.scenario.model import Stage
from lab.smtp import sasl
from lab.smtp.connection import Clock, SmtpConnection
from lab.smtp.errors import SmtpClientError
from lab.smtp.reply import SmtpReply, parse_extensions
from lab.smtp.transcript import Direction

# Header lines of a message shown in the transcript before the body is summarised.
MAX_SHOWN_HEADER_LINES = 40
# A SASL exchange longer than this is a confused server; the client cancels it.
MAX_SASL_ROUNDS = 4


def encode_data(message: bytes) -> bytes:
    """The DATA payload: CRLF line ends, dot-stuffed (RFC 5321 4.5.2), with the final `.`."""
    if not message:
        return b".\r\n"
    normalised = re.sub(rb"\r\n|\r|\n", b"\r\n", message)
    if not normalised.endswith(b"\r\n"):
        normalised += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", normalised) + b".\r\n"


class SmtpSession(SmtpConnection):
    """One SMTP connection, driven one stage at a time, with a transcript and timings.

    Stage methods (`connect`, `read_banner`, `ehlo`, `starttls`, `auth`, `mail`,
    `rcpt`, `data`, `quit`) return the server's final reply; 4xx/5xx replies are
    returned, not raised. They raise `SmtpTimeout`, `ConnectionLost`, `TlsError`
    or `ProtocolError` when the conversation cannot continue, and `connect`
    raises `lab.net.ConnectError`s. After any raised error the session is
    unusable: call `close()`.

    `timings` accumulates seconds per stage (two EHLOs around STARTTLS add up
    under `EHLO`). `timeout` bounds every connect, TLS handshake, write and
    reply. Use as `async with SmtpSession(...) as session:` to close reliably.
    """

    def __init__(
        self, connector: Connector, timeout: float = 30.0, *, clock: Clock | None = None
    ) -> None:
        super().__init__(connector, timeout, clock=clock)
        self.extensions: dict[str, str] = {}
        self.esmtp = False
        self.banner: SmtpReply | None = None
        self.authenticated = False

    @property
    def auth_mechanisms(self) -> list[str]:
        """The mechanisms the last EHLO advertised (upper case), empty if no AUTH."""
        return self.extensions.get("AUTH", "").upper().split()

    def supports(self, keyword: str) -> bool:
        """The last EHLO advertised `keyword` (case-insensitive)."""
        return keyword.upper() in self.extensions

    async def read_banner(self) -> SmtpReply:
        """The server's greeting (`220 host ESMTP …`; a 4xx/5xx here refuses the session)."""
        with self.measure(Stage.BANNER):
            self.banner = await self.read_reply(Stage.BANNER, "the banner")
        return self.banner

    async def ehlo(self, name: str) -> SmtpReply:
        """EHLO; on a 5xx falls back to HELO as mail programs do (both are recorded).

        On success `extensions` holds the advertised keywords (empty after HELO).
        """
        with self.measure(Stage.EHLO):
            reply = await self.command(f"EHLO {name}", Stage.EHLO)
            if reply.is_positive:
                self.esmtp = True
                self.extensions = parse_extensions(reply)
                return reply
            if not reply.is_permanent:
                return reply
            self.note("EHLO refused: falling back to HELO (no ESMTP extensions)")
            return await self._helo(name)

    async def helo(self, name: str) -> SmtpReply:
        """Plain HELO: no extensions (no STARTTLS, no AUTH, no SIZE)."""
        with self.measure(Stage.EHLO):
            return await self._helo(name)

    async def _helo(self, name: str) -> SmtpReply:
        reply = await self.command(f"HELO {name}", Stage.EHLO)
        if reply.is_positive:
            self.esmtp = False
            self.extensions = {}
        return reply

    async def starttls(self, ssl_context: ssl.SSLContext, server_hostname: str | None) -> SmtpReply:
        """STARTTLS and, on `220`, the handshake. Any other reply is returned as is.

        RFC 3207: everything learned before TLS is void, so `extensions` is
        cleared and the caller must EHLO again.

        Raises:
            TlsError: the handshake failed (stage `STARTTLS`).
        """
        with self.measure(Stage.STARTTLS):
            reply = await self.command("STARTTLS", Stage.STARTTLS)
            if reply.code != 220:
                return reply
            await self._handshake(Stage.STARTTLS, ssl_context, server_hostname)
            self.extensions = {}
            self.esmtp = False
            return reply

    async def auth(self, mechanism: str, user: str, password: str) -> SmtpReply:
        """AUTH with PLAIN, LOGIN or CRAM-MD5; returns the final reply (235 on success).

        The mechanism is sent even when the server did not advertise it: a mail
        program forced to one mechanism does exactly that, and the server's
        `504 5.5.4` is the evidence the diagnosis needs.

        Raises:
            ValueError: a mechanism this client does not implement.
        """
        mechanism = mechanism.upper()
        if mechanism not in sasl.SUPPORTED:
            raise ValueError(f"unsupported AUTH mechanism {mechanism!r}")
        self.add_secret(password)
        answers: list[str] = []
        with self.measure(Stage.AUTH):
            if mechanism == sasl.PLAIN:
                reply = await self.command(
                    f"AUTH PLAIN {sasl.plain_response(user, password)}", Stage.AUTH
                )
            else:
                reply = await self.command(f"AUTH {mechanism}", Stage.AUTH)
                if mechanism == sasl.LOGIN:
                    answers = list(sasl.login_responses(user, password))
            rounds = 0
            while reply.code == 334:
                rounds += 1
                challenge = reply.lines[0].strip()
                decoded = sasl.decode_challenge(challenge)
                if decoded is not None:
                    self.note(f"334 {challenge} ({decoded})")
                answer = "*"  # cancels the exchange (RFC 4954): for anything unexpected
                if rounds <= MAX_SASL_ROUNDS:
                    if mechanism == sasl.CRAM_MD5 and rounds == 1:
                        with contextlib.suppress(ValueError):
                            answer = sasl.cram_md5_response(user, password, challenge)
                    elif answers:
                        answer = answers.pop(0)
                await self.send_line(answer, Stage.AUTH, shown="*" if answer == "*" else sasl.MASK)
                reply = await self.read_reply(Stage.AUTH, "the reply to the AUTH exchange")
        self.authenticated = reply.code == 235
        return reply

    async def mail(self, sender: str, size: int | None = None) -> SmtpReply:
        """MAIL FROM:<sender> (`<>` for bounces), with SIZE= when the server advertised SIZE."""
        line = f"MAIL FROM:<{sender}>"
        if size is not None and self.supports("SIZE"):
            line += f" SIZE={size}"
        with self.measure(Stage.MAIL):
            return await self.command(line, Stage.MAIL)

    async def rcpt(self, address: str) -> SmtpReply:
        """RCPT TO:<address>."""
        with self.measure(Stage.RCPT):
            return await self.command(f"RCPT TO:<{address}>", Stage.RCPT)

    async def vrfy(self, address: str) -> SmtpReply:
        """VRFY address: what the server says about a mailbox outside any transaction."""
        with self.measure(Stage.RCPT):
            return await self.command(f"VRFY {address}", Stage.RCPT)

    async def data(self, message: bytes) -> SmtpReply:
        """DATA, then the message (CRLF-normalised, dot-stuffed) if the server says 354.

        Returns the reply to DATA when it is not 354, else the reply to the final dot.
        The transcript shows the header lines and a summary of the body.
        """
        with self.measure(Stage.DATA):
            reply = await self.command("DATA", Stage.DATA)
            if reply.code != 354:
                return reply
            payload = encode_data(message)
            self._record_message(payload)
            await self._write(Stage.DATA, payload)
            return await self.read_reply(Stage.DATA, "the reply to the end of the message")

    def _record_message(self, payload: bytes) -> None:
        head, _, body = payload.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        for line in lines[:MAX_SHOWN_HEADER_LINES]:
            self._record(Direction.CLIENT, line.decode("utf-8", "backslashreplace"))
        if len(lines) > MAX_SHOWN_HEADER_LINES:
            self.note(f"… {len(lines) - MAX_SHOWN_HEADER_LINES} more header lines")
        self._record(Direction.CLIENT, "")
        body_bytes = max(len(body) - len(b".\r\n"), 0)
        line_count = payload.count(b"\n")
        self.note(f"message body: {body_bytes} bytes, {line_count} lines in total")
        self._record(Direction.CLIENT, ".")

    async def rset(self) -> SmtpReply:
        """RSET: abandon the current transaction, keep the connection."""
        return await self.command("RSET", self.stage or Stage.MAIL)

    async def noop(self) -> SmtpReply:
        """NOOP: is the server still there?"""
        return await self.command("NOOP", self.stage or Stage.BANNER)

    async def quit(self) -> SmtpReply | None:
        """QUIT, politely; never raises. None when not connected or the server did not answer."""
        if self._writer is None or self._writer.is_closing():
            return None
        try:
            return await self.command("QUIT", self.stage or Stage.BANNER)
        except SmtpClientError:
            return None
