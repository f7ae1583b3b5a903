"""The recorded wire under an SMTP session: connect, upgrade to TLS, send lines, read replies.

`SmtpConnection` knows nothing of SMTP verbs. It times and records every line
in a `Transcript` as it happens, masks registered secrets before a line is
stored, bounds every step by one timeout and turns each failure into an
`SmtpClientError` naming the stage (or a `lab.net.ConnectError` at connect).
It opens connections through a `lab.net.Connector`, so the local backend can
emulate the network. `lab.smtp.session.SmtpSession` adds the SMTP stages.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Self

from lab.net import ConnectError, Connector, ConnectRefused, ConnectTimeout
from lab.scenario.model import Stage
from lab.smtp import sasl
from lab.smtp.errors import ConnectionLost, MalformedReply, SmtpTimeout, TlsError, describe
from lab.smtp.reply import SmtpReply, parse_reply_line
from lab.smtp.tls import TlsInfo, tls_reason
from lab.smtp.transcript import Direction, Transcript, TranscriptLine, format_seconds, printable

Clock = Callable[[], float]

# RFC 5321 allows 512 octets per reply line; real servers exceed it now and then, so the
# limit is generous. It exists so that a binary stream cannot be taken for a reply.
MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 200


class SmtpConnection:
    """One TCP (and maybe TLS) connection whose every line is timed and recorded.

    `timings` accumulates seconds per stage through `measure`; `timeout` bounds
    every connect, TLS handshake, write and reply. After any raised error the
    connection is unusable: call `close()`. Use as `async with` to close reliably.
    """

    def __init__(
        self, connector: Connector, timeout: float = 30.0, *, clock: Clock | None = None
    ) -> None:
        self.connector = connector
        self.timeout = timeout
        self.transcript = Transcript()
        self.timings: dict[Stage, float] = {}
        self.tls: TlsInfo | None = None
        self.address: str | None = None
        self.port: int | None = None
        self.stage: Stage | None = None  # the last stage entered
        self._clock = clock or time.monotonic
        self._started = self._clock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._secrets: set[str] = set()

    # -- bookkeeping ---------------------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds since the session was created."""
        return self._clock() - self._started

    def note(self, text: str) -> None:
        """Record an event that is not a protocol line."""
        self._record(Direction.NOTE, text)

    def _record(self, direction: Direction, text: str) -> None:
        text = sasl.redact(printable(text), self._secrets) if self._secrets else printable(text)
        self.transcript.lines.append(TranscriptLine(self.elapsed(), direction, text))

    @contextlib.contextmanager
    def measure(self, stage: Stage) -> Iterator[None]:
        """Add the time spent in the block to `timings[stage]`, even if it raises."""
        self.stage = stage
        start = self._clock()
        try:
            yield
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + (self._clock() - start)

    def add_secret(self, secret: str) -> None:
        """Never show `secret` (or its base64 form) in the transcript from now on."""
        self._secrets |= sasl.secret_forms(secret)

    @property
    def connected(self) -> bool:
        """A connection is open (it may since have been closed by the peer)."""
        return self._writer is not None

    def _streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            raise RuntimeError("the session is not connected")
        return self._reader, self._writer

    # -- connection --------------------------------------------------------------------------

    async def connect(
        self,
        address: str,
        port: int,
        *,
        implicit_tls: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        """Open the TCP connection (and, for port-465 style SMTPS, the TLS layer at once).

        Raises:
            lab.net.ConnectTimeout, ConnectRefused, HostUnreachable, ConnectError:
                no TCP connection (other `OSError`s are raised as `ConnectError`).
            TlsError: implicit TLS handshake failed (stage `CONNECT`).
        """
        if self._writer is not None:
            raise RuntimeError("the session is already connected")
        self.address, self.port = address, port
        with self.measure(Stage.CONNECT):
            start = self._clock()
            try:
                streams = await self.connector.open_connection(address, port, timeout=self.timeout)
            except (ConnectTimeout, TimeoutError) as error:
                waited = format_seconds(self.timeout)
                self.note(f"no answer from {address}:{port} within {waited} s")
                if isinstance(error, ConnectTimeout):
                    raise
                raise ConnectTimeout(error.errno, describe(error)) from error
            except OSError as error:
                reason = error.strerror or describe(error)
                self.note(f"cannot connect to {address}:{port}: {reason}")
                if isinstance(error, ConnectError):
                    raise
                # Connectors should raise lab.net errors; map what the kernel says otherwise.
                kind = ConnectRefused if isinstance(error, ConnectionRefusedError) else ConnectError
                raise kind(error.errno, reason) from error
            self._reader, self._writer = streams
            took = (self._clock() - start) * 1000
            self.note(f"connected to {address}:{port} in {took:.0f} ms")
            if implicit_tls:
                await self._handshake(
                    Stage.CONNECT, ssl_context or ssl.create_default_context(), server_hostname
                )

    async def _handshake(
        self, stage: Stage, context: ssl.SSLContext, server_hostname: str | None
    ) -> None:
        """Upgrade the open connection to TLS; record what was negotiated."""
        _, writer = self._streams()
        start = self._clock()
        try:
            async with asyncio.timeout(self.timeout):
                await writer.start_tls(context, server_hostname=server_hostname)
        except TimeoutError:
            reason = f"TLS handshake timed out after {format_seconds(self.timeout)} s"
            raise self._tls_failed(stage, reason) from None
        except ssl.SSLError as error:
            raise self._tls_failed(stage, tls_reason(error)) from error
        except (OSError, EOFError) as error:
            reason = f"connection closed during the TLS handshake ({describe(error)})"
            raise self._tls_failed(stage, reason) from error
        ssl_object = writer.get_extra_info("ssl_object")
        took = (self._clock() - start) * 1000
        if ssl_object is not None:
            self.tls = TlsInfo.from_ssl(ssl_object, verified=context.verify_mode != ssl.CERT_NONE)
            self.note(f"{self.tls.describe()} ({took:.0f} ms)")

    def _tls_failed(self, stage: Stage, reason: str) -> TlsError:
        self.note(f"TLS handshake failed: {reason}")
        # asyncio has already closed the transport; waiting for a clean close would hang
        # because the stream protocol never learns of it, so forget the streams instead.
        self._drop()
        return TlsError(stage, reason)

    def _drop(self) -> None:
        if self._writer is not None:
            self._writer.transport.abort()
        self._reader = self._writer = None

    # -- the wire ------------------------------------------------------------------------------

    async def send_line(self, line: str, stage: Stage, *, shown: str | None = None) -> None:
        """Write one command line; the transcript shows `shown` (default: masked AUTH).

        Raises:
            ValueError: the line contains CR or LF (which would inject a command).
        """
        if "\r" in line or "\n" in line:
            raise ValueError(f"line break inside an SMTP command: {line[:40]!r}")
        self._record(Direction.CLIENT, sasl.mask_command(line) if shown is None else shown)
        await self._write(stage, line.encode("utf-8") + b"\r\n")

    async def _write(self, stage: Stage, data: bytes) -> None:
        _, writer = self._streams()
        # A large message needs time on the wire: allow for 1 MB/s on top of the timeout.
        allowed = self.timeout + len(data) / 1_000_000
        try:
            writer.write(data)
            async with asyncio.timeout(allowed):
                await writer.drain()
        except TimeoutError:
            self.note(f"timed out after {format_seconds(allowed)} s sending to the server")
            raise SmtpTimeout(stage, self.timeout) from None
        except ssl.SSLError as error:
            self.note(f"TLS error: {tls_reason(error)}")
            raise TlsError(stage, tls_reason(error)) from error
        except OSError as error:
            detail = f"connection lost while sending ({describe(error)})"
            self.note(detail)
            raise ConnectionLost(stage, detail) from error

    async def read_reply(self, stage: Stage, waiting_for: str = "the reply") -> SmtpReply:
        """Read one complete (possibly multi-line) reply within `timeout`.

        Raises:
            SmtpTimeout, ConnectionLost, TlsError, MalformedReply.
        """
        reader, _ = self._streams()
        raw: list[str] = []
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    line = await self._read_line(reader, stage)
                    try:
                        _, final, _ = parse_reply_line(line)
                    except MalformedReply as error:
                        self.note(f"not an SMTP reply while waiting for {waiting_for}")
                        raise MalformedReply(stage, str(error), line) from None
                    raw.append(line)
                    if final:
                        break
                    if len(raw) >= MAX_REPLY_LINES:
                        raise MalformedReply(stage, "reply has too many lines", line)
        except TimeoutError:
            waited = format_seconds(self.timeout)
            self.note(f"timed out after {waited} s waiting for {waiting_for}")
            raise SmtpTimeout(stage, self.timeout) from None
        try:
            return SmtpReply.parse(raw)
        except MalformedReply as error:
            self.note(f"malformed reply: {error}")
            raise MalformedReply(stage, str(error), error.line) from None

    async def _read_line(self, reader: asyncio.StreamReader, stage: Stage) -> str:
        try:
            data = await reader.readline()
        except ValueError:  # asyncio's way of saying the line exceeded the stream limit
            self.note("reply line exceeds the stream limit")
            raise MalformedReply(stage, "reply line too long", "") from None
        except ssl.SSLError as error:
            self.note(f"TLS error: {tls_reason(error)}")
            raise TlsError(stage, tls_reason(error)) from error
        except OSError as error:
            detail = f"connection lost ({describe(error)})"
            self.note(detail)
            raise ConnectionLost(stage, detail) from error
        if not data.endswith(b"\n"):
            if data:
                self._record(Direction.SERVER, data.decode("utf-8", "backslashreplace"))
            self.note("connection closed by the server")
            raise ConnectionLost(stage)
        text = data.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
        if len(text) > MAX_REPLY_LINE:
            self._record(Direction.SERVER, f"{text[:200]}… ({len(text)} characters)")
            raise MalformedReply(stage, f"reply line longer than {MAX_REPLY_LINE} bytes", text)
        self._record(Direction.SERVER, text)
        return printable(text)

    async def command(
        self, line: str, stage: Stage, *, shown: str | None = None, waiting_for: str | None = None
    ) -> SmtpReply:
        """Send one command and read its reply (the building block of every stage)."""
        await self.send_line(line, stage, shown=shown)
        verb = (shown or sasl.mask_command(line)).split(" ", 1)[0]
        return await self.read_reply(stage, waiting_for or f"the reply to {verb}")

    # -- closing -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the connection; idempotent, never raises, bounded by `timeout`."""
        writer = self._writer
        self._reader = self._writer = None
        if writer is None:
            return
        writer.close()
        try:
            async with asyncio.timeout(self.timeout):
                await writer.wait_closed()
        except (TimeoutError, OSError, ssl.SSLError):
            # A TLS transport the peer reset is already torn down, and asyncio's abort()
            # then fails on its missing protocol (AttributeError, CPython 3.11): nothing
            # is left to abort.
            with contextlib.suppress(AttributeError):
                writer.transport.abort()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
