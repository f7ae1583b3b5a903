"""The SMTP client side: a session that records every line with timings, and a mail program.

Three users share this module: the customer's mail program (the client node,
through `send_mail`), the relay's outbound delivery and the diagnosis probes
(both through `SmtpSession` directly). It is written on asyncio streams rather
than `smtplib` because every line must be timed and recorded as it happens,
connections must be opened through a `lab.net.Connector` (so the local backend
can emulate the network), and each failure must say at which stage it happened.

`SmtpSession` raises on network and protocol trouble (`SmtpClientError` and the
`lab.net.ConnectError` family); SMTP error replies are returned, never raised,
because a `550` is an answer, not a failure of the client. `send_mail` never
raises for either: it turns everything into a `SendResult`.

AUTH secrets never reach the transcript: initial responses and SASL answers
are recorded as `****`, and any line that would still contain the password
(raw or base64) is redacted before it is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cryptography import x509

from lab.net import ConnectError, Connector, ConnectRefused, ConnectTimeout, HostUnreachable
from lab.scenario.model import MailSettings, Outcome, Security, Stage
from lab.smtp import sasl
from lab.smtp.message import build_message, new_message_id
from lab.smtp.transcript import Direction, Transcript, TranscriptLine

Clock = Callable[[], float]
Resolve = Callable[[str], Awaitable[list[str]]]

# RFC 5321 allows 512 octets per reply line; real servers exceed it now and then, so the
# limit is generous. It exists so that a binary stream cannot be taken for a reply.
MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 200
# Header lines of a message shown in the transcript before the body is summarised.
MAX_SHOWN_HEADER_LINES = 40
# A SASL exchange longer than this is a confused server; the client cancels it.
MAX_SASL_ROUNDS = 4

_REPLY_LINE = re.compile(r"(?P<code>[2-5][0-5]\d)(?:(?P<sep>[ -])(?P<text>.*))?", re.DOTALL)
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SSL_LIBRARY_NOISE = re.compile(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$")


# --- replies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpReply:
    """A complete server reply: the code, the text of each line, the RFC 3463 code if any.

    `lines` holds the text after `NNN-`/`NNN ` of every line, enhanced code
    included, exactly as the server sent it (control characters escaped).
    """

    code: int
    lines: list[str]
    enhanced: str | None = None

    @classmethod
    def parse(cls, raw_lines: Sequence[str]) -> SmtpReply:
        """A reply from its wire lines (without CRLF).

        Raises:
            MalformedReply: a line is not `NNN[ -]text`, codes differ between
                lines, or a continuation line ends the reply.
        """
        if not raw_lines:
            raise MalformedReply(None, "empty reply", "")
        code: int | None = None
        texts: list[str] = []
        for index, raw in enumerate(raw_lines):
            line_code, final, text = parse_reply_line(raw)
            if code is not None and line_code != code:
                raise MalformedReply(None, f"reply code changed from {code} to {line_code}", raw)
            if final != (index == len(raw_lines) - 1):
                raise MalformedReply(None, "continuation and final lines out of order", raw)
            code = line_code
            texts.append(text)
        assert code is not None
        return cls(code, texts, _enhanced_code(code, texts[0]))

    @property
    def text(self) -> str:
        """The text of all lines, joined by newlines (enhanced code included)."""
        return "\n".join(self.lines)

    @property
    def message(self) -> str:
        """The text of all lines on one line, without the enhanced codes: for people."""
        parts = [_ENHANCED.sub("", line, count=1).strip() for line in self.lines]
        return " ".join(part for part in parts if part)

    @property
    def is_positive(self) -> bool:
        """2xx: the command succeeded."""
        return 200 <= self.code < 300

    @property
    def is_intermediate(self) -> bool:
        """3xx: the server waits for more (354 after DATA, 334 during AUTH)."""
        return 300 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        """4xx: refused for now; trying again later may work."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """5xx: refused; the same command will fail again."""
        return 500 <= self.code < 600

    @property
    def is_error(self) -> bool:
        """4xx or 5xx."""
        return self.code >= 400

    def wire_lines(self) -> list[str]:
        """The reply as it was on the wire, one string per line, without CRLF."""
        last = len(self.lines) - 1
        return [
            f"{self.code}{' ' if i == last else '-'}{text}" for i, text in enumerate(self.lines)
        ]

    def __str__(self) -> str:
        return f"{self.code} {' '.join(self.lines)}".rstrip()

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {"code": self.code, "enhanced": self.enhanced, "lines": list(self.lines)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SmtpReply:
        """The reverse of `to_json`."""
        return cls(int(data["code"]), [str(line) for line in data["lines"]], data.get("enhanced"))


def parse_reply_line(line: str) -> tuple[int, bool, str]:
    """`(code, is_final, text)` of one reply line such as `250-SIZE 10240000`.

    Raises:
        MalformedReply: not an SMTP reply line (the code must be 2xx-5xx).
    """
    match = _REPLY_LINE.fullmatch(line)
    if match is None:
        raise MalformedReply(None, f"not an SMTP reply: {line[:80]!r}", line)
    return int(match["code"]), match["sep"] != "-", match["text"] or ""


def _enhanced_code(code: int, first_line: str) -> str | None:
    """The RFC 3463 code opening the first line, if its class agrees with the basic code."""
    match = _ENHANCED.match(first_line)
    if match is None or int(match.group(1)) != code // 100:
        return None
    return match.group(0)


def parse_extensions(reply: SmtpReply) -> dict[str, str]:
    """EHLO keywords and their parameters: `{"SIZE": "10240000", "STARTTLS": ""}`.

    The first line is the server's greeting. Old servers advertise `AUTH=LOGIN`
    (a Microsoft-era variant); it is merged into `AUTH` when no plain `AUTH` line exists.
    """
    extensions: dict[str, str] = {}
    legacy_auth: list[str] = []
    for line in reply.lines[1:]:
        parts = line.strip().split(None, 1)
        if not parts:
            continue
        keyword = parts[0].upper()
        params = parts[1].strip() if len(parts) > 1 else ""
        if keyword.startswith("AUTH="):
            legacy_auth.append(" ".join(filter(None, (keyword[5:], params))))
            continue
        extensions[keyword] = params
    if legacy_auth and "AUTH" not in extensions:
        extensions["AUTH"] = " ".join(legacy_auth)
    return extensions


# --- errors ----------------------------------------------------------------------------------


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
        waited = f" after {_secs(timeout)} s" if timeout is not None else ""
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


def tls_reason(error: BaseException) -> str:
    """A short reason for a TLS failure: `CERTIFICATE_VERIFY_FAILED: Hostname mismatch, …`."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"CERTIFICATE_VERIFY_FAILED: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        detail = str(error.args[1]) if len(error.args) > 1 else str(error)
        detail = _SSL_LIBRARY_NOISE.sub("", detail).strip()
        reason = getattr(error, "reason", None)
        if reason and detail and detail.upper().replace(" ", "_") != reason:
            return f"{reason}: {detail}"
        return str(reason or detail or type(error).__name__)
    return str(error) or type(error).__name__


# --- TLS details -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsInfo:
    """What was negotiated, and the server's certificate as presented."""

    version: str
    cipher: str
    verified: bool
    subject: str | None = None
    issuer: str | None = None
    not_after: datetime | None = None
    names: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for the transcript."""
        text = f"TLS established {self.version} cipher {self.cipher}"
        if self.subject is not None:
            expiry = f"{self.not_after:%Y-%m-%d %H:%M} UTC" if self.not_after else "?"
            text += f"; certificate subject {self.subject}, issuer {self.issuer}, expires {expiry}"
        if self.names:
            text += f", names {', '.join(self.names)}"
        if not self.verified:
            text += " (certificate not verified)"
        return text

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "version": self.version,
            "cipher": self.cipher,
            "verified": self.verified,
            "subject": self.subject,
            "issuer": self.issuer,
            "not_after": self.not_after.isoformat() if self.not_after else None,
            "names": list(self.names),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TlsInfo:
        """The reverse of `to_json`."""
        not_after = data.get("not_after")
        return cls(
            version=str(data["version"]),
            cipher=str(data["cipher"]),
            verified=bool(data["verified"]),
            subject=data.get("subject"),
            issuer=data.get("issuer"),
            not_after=datetime.fromisoformat(not_after) if not_after else None,
            names=[str(name) for name in data.get("names", [])],
        )


def _tls_info(ssl_object: ssl.SSLObject | ssl.SSLSocket, verified: bool) -> TlsInfo:
    cipher = ssl_object.cipher()
    info = TlsInfo(
        version=ssl_object.version() or "?",
        cipher=cipher[0] if cipher else "?",
        verified=verified,
    )
    # The binary form is available even when verification is off, unlike the dict form.
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return info
    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError:
        return info
    names: list[str] = []
    with contextlib.suppress(x509.ExtensionNotFound):
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(name) for name in san.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return TlsInfo(
        version=info.version,
        cipher=info.cipher,
        verified=verified,
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        not_after=certificate.not_valid_after_utc,
        names=names,
    )


def client_tls_context(*, verify: bool, ca_file: Path | None = None) -> ssl.SSLContext:
    """What a mail program uses: full verification against `ca_file` (or the system's
    trust store), or none at all when the user ticked "accept any certificate"."""
    if verify:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# --- DATA encoding ---------------------------------------------------------------------------


def encode_data(message: bytes) -> bytes:
    """The DATA payload: CRLF line ends, dot-stuffed (RFC 5321 4.5.2), with the final `.`."""
    if not message:
        return b".\r\n"
    normalised = re.sub(rb"\r\n|\r|\n", b"\r\n", message)
    if not normalised.endswith(b"\r\n"):
        normalised += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", normalised) + b".\r\n"


def _secs(seconds: float) -> str:
    """Seconds as people read them in a transcript: 3.0, 0.3, 0.25."""
    return f"{seconds:.1f}" if round(seconds, 1) == seconds else f"{seconds:g}"


def _describe(error: BaseException) -> str:
    """An exception's message, or its type when it has none (`ConnectionResetError()`)."""
    return str(error) or type(error).__name__


def _printable(text: str) -> str:
    """Control characters escaped, so that junk cannot garble a terminal or the TUI."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group(0)):02x}", text)


# --- the session -----------------------------------------------------------------------------


class SmtpSession:
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
        self.connector = connector
        self.timeout = timeout
        self.transcript = Transcript()
        self.timings: dict[Stage, float] = {}
        self.extensions: dict[str, str] = {}
        self.esmtp = False
        self.banner: SmtpReply | None = None
        self.tls: TlsInfo | None = None
        self.authenticated = False
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
        text = sasl.redact(_printable(text), self._secrets) if self._secrets else _printable(text)
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

    @property
    def auth_mechanisms(self) -> list[str]:
        """The mechanisms the last EHLO advertised (upper case), empty if no AUTH."""
        return self.extensions.get("AUTH", "").upper().split()

    def supports(self, keyword: str) -> bool:
        """The last EHLO advertised `keyword` (case-insensitive)."""
        return keyword.upper() in self.extensions

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
                self.note(f"no answer from {address}:{port} within {_secs(self.timeout)} s")
                if isinstance(error, ConnectTimeout):
                    raise
                raise ConnectTimeout(error.errno, _describe(error)) from error
            except OSError as error:
                reason = error.strerror or _describe(error)
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
            reason = f"TLS handshake timed out after {_secs(self.timeout)} s"
            raise self._tls_failed(stage, reason) from None
        except ssl.SSLError as error:
            raise self._tls_failed(stage, tls_reason(error)) from error
        except (OSError, EOFError) as error:
            reason = f"connection closed during the TLS handshake ({_describe(error)})"
            raise self._tls_failed(stage, reason) from error
        ssl_object = writer.get_extra_info("ssl_object")
        took = (self._clock() - start) * 1000
        if ssl_object is not None:
            self.tls = _tls_info(ssl_object, context.verify_mode != ssl.CERT_NONE)
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
            self.note(f"timed out after {_secs(allowed)} s sending to the server")
            raise SmtpTimeout(stage, self.timeout) from None
        except ssl.SSLError as error:
            self.note(f"TLS error: {tls_reason(error)}")
            raise TlsError(stage, tls_reason(error)) from error
        except OSError as error:
            detail = f"connection lost while sending ({_describe(error)})"
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
            self.note(f"timed out after {_secs(self.timeout)} s waiting for {waiting_for}")
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
            detail = f"connection lost ({_describe(error)})"
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
        return _printable(text)

    async def command(
        self, line: str, stage: Stage, *, shown: str | None = None, waiting_for: str | None = None
    ) -> SmtpReply:
        """Send one command and read its reply (the building block of every stage)."""
        await self.send_line(line, stage, shown=shown)
        verb = (shown or sasl.mask_command(line)).split(" ", 1)[0]
        return await self.read_reply(stage, waiting_for or f"the reply to {verb}")

    # -- stages --------------------------------------------------------------------------------

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


# --- the mail program ------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    """What the mail program saw: how far it got, the last reply, the whole transcript.

    `stage` is where it stopped (`DATA` on success: the hand-off; the lab runner
    may refine DELIVERED to bounced/deferred by following `message_id`).
    `rejected_recipients` maps each refused recipient to the server's reply.
    """

    outcome: Outcome
    stage: Stage | None
    code: int | None
    enhanced: str | None
    text: str
    transcript: Transcript
    timings: dict[Stage, float]
    message_id: str
    server_address: str | None
    port: int
    accepted_by: str | None = None
    server: str = ""
    accepted_recipients: list[str] = field(default_factory=list)
    rejected_recipients: dict[str, SmtpReply] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)
    tls: TlsInfo | None = None
    authenticated: bool = False

    @property
    def delivered(self) -> bool:
        """The server took the message."""
        return self.outcome is Outcome.DELIVERED

    def to_json(self) -> dict[str, Any]:
        """Plain, JSON-serialisable data (secrets are already masked in the transcript)."""
        return {
            "outcome": str(self.outcome),
            "stage": str(self.stage) if self.stage else None,
            "code": self.code,
            "enhanced": self.enhanced,
            "text": self.text,
            "message_id": self.message_id,
            "server": self.server,
            "server_address": self.server_address,
            "port": self.port,
            "accepted_by": self.accepted_by,
            "accepted_recipients": list(self.accepted_recipients),
            "rejected_recipients": {
                address: reply.to_json() for address, reply in self.rejected_recipients.items()
            },
            "extensions": dict(self.extensions),
            "tls": self.tls.to_json() if self.tls else None,
            "authenticated": self.authenticated,
            "timings": {str(stage): round(seconds, 4) for stage, seconds in self.timings.items()},
            "transcript": self.transcript.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SendResult:
        """The reverse of `to_json` (how a backend reads a client container's output)."""
        return cls(
            outcome=Outcome(data["outcome"]),
            stage=Stage(data["stage"]) if data.get("stage") else None,
            code=data.get("code"),
            enhanced=data.get("enhanced"),
            text=str(data.get("text", "")),
            transcript=Transcript(
                [
                    TranscriptLine(float(line["at"]), Direction(line["dir"]), str(line["text"]))
                    for line in data.get("transcript", [])
                ]
            ),
            timings={Stage(stage): float(s) for stage, s in data.get("timings", {}).items()},
            message_id=str(data.get("message_id", "")),
            server_address=data.get("server_address"),
            port=int(data["port"]),
            accepted_by=data.get("accepted_by"),
            server=str(data.get("server", "")),
            accepted_recipients=[str(a) for a in data.get("accepted_recipients", [])],
            rejected_recipients={
                address: SmtpReply.from_json(reply)
                for address, reply in data.get("rejected_recipients", {}).items()
            },
            extensions={str(k): str(v) for k, v in data.get("extensions", {}).items()},
            tls=TlsInfo.from_json(data["tls"]) if data.get("tls") else None,
            authenticated=bool(data.get("authenticated", False)),
        )


@dataclass
class _Verdict:
    """Where a submission ended, before the result is assembled."""

    outcome: Outcome
    stage: Stage | None
    text: str
    reply: SmtpReply | None = None


def _rejected(stage: Stage, reply: SmtpReply) -> _Verdict:
    return _Verdict(Outcome.REJECTED, stage, reply.text, reply)


def _is_ip_literal(server: str) -> bool:
    try:
        ipaddress.ip_address(server)
    except ValueError:
        return False
    return True


def _banner_host(banner: SmtpReply | None) -> str | None:
    """The host name a greeting opens with (`220 mx.example.com ESMTP`), if it looks like one."""
    if banner is None or not banner.is_positive or not banner.lines:
        return None
    words = banner.lines[0].split()
    if not words or _HOSTNAME.fullmatch(words[0]) is None or words[0].isdigit():
        return None
    return words[0]


class _MailProgram:
    """One submission as a mail program performs it; see `send_mail`."""

    def __init__(
        self,
        settings: MailSettings,
        connector: Connector,
        resolve: Resolve,
        helo: str,
        ca_file: Path | None,
        clock: Clock | None,
    ) -> None:
        self.settings = settings
        self.resolve = resolve
        self.helo = settings.helo or helo
        self.ca_file = ca_file
        self.session = SmtpSession(connector, settings.timeout, clock=clock)
        self.message_id = new_message_id(self.helo)
        self.address: str | None = None
        self.accepted: list[str] = []
        self.rejected: dict[str, SmtpReply] = {}

    @property
    def where(self) -> str:
        return f"{self.settings.server}:{self.settings.port}"

    async def run(self) -> SendResult:
        verdict = await self._guarded()
        session = self.session
        # A rejected session still gets a polite QUIT (unless the server said 421, which
        # means it is closing); after a timeout, loss or TLS failure there is no one to tell.
        polite = verdict.outcome in (Outcome.DELIVERED, Outcome.REJECTED)
        if polite and not (verdict.reply is not None and verdict.reply.code == 421):
            await session.quit()
        await session.close()
        reply = verdict.reply
        return SendResult(
            outcome=verdict.outcome,
            stage=verdict.stage,
            code=reply.code if reply else None,
            enhanced=reply.enhanced if reply else None,
            text=verdict.text,
            transcript=session.transcript,
            timings=dict(session.timings),
            message_id=self.message_id,
            server_address=self.address,
            port=self.settings.port,
            accepted_by=_banner_host(session.banner),
            server=self.settings.server,
            accepted_recipients=list(self.accepted),
            rejected_recipients=dict(self.rejected),
            extensions=dict(session.extensions),
            tls=session.tls,
            authenticated=session.authenticated,
        )

    async def _guarded(self) -> _Verdict:
        """`_submit` with every network and protocol failure turned into a verdict."""
        timeout = self.session.timeout
        try:
            return await self._submit()
        except ConnectTimeout:
            text = f"connect timeout to {self.where} after {_secs(timeout)} s"
            return _Verdict(Outcome.CONNECT_TIMEOUT, Stage.CONNECT, text)
        except ConnectRefused:
            text = f"connection to {self.where} refused"
            return _Verdict(Outcome.CONNECT_REFUSED, Stage.CONNECT, text)
        except HostUnreachable:
            text = f"no route to {self.where}"
            return _Verdict(Outcome.UNREACHABLE, Stage.CONNECT, text)
        except ConnectError as error:
            text = f"cannot connect to {self.where}: {error.strerror or error}"
            return _Verdict(Outcome.UNREACHABLE, Stage.CONNECT, text)
        except SmtpTimeout as error:
            if error.stage is Stage.BANNER:
                text = f"no greeting from {self.where} within {_secs(timeout)} s"
                return _Verdict(Outcome.NO_BANNER, Stage.BANNER, text)
            # Outcome has no "timed out mid-session": the conversation is lost either way.
            text = f"server stopped answering: timed out after {_secs(timeout)} s at {error.stage}"
            return _Verdict(Outcome.CONNECTION_LOST, error.stage, text)
        except ConnectionLost as error:
            if error.stage is Stage.BANNER:
                text = f"connection closed by {self.where} before the greeting"
            else:
                text = f"connection closed by {self.where} at {error.stage}"
            return _Verdict(Outcome.CONNECTION_LOST, error.stage, text)
        except TlsError as error:
            return _Verdict(Outcome.TLS_FAILED, error.stage, error.reason)
        except ProtocolError as error:
            if error.stage is Stage.BANNER:
                # Something answers, but not an SMTP server (a web server, a TLS port).
                text = f"no SMTP greeting from {self.where}: {error}"
                return _Verdict(Outcome.NO_BANNER, Stage.BANNER, text)
            text = f"protocol error at {error.stage}: {error}"
            return _Verdict(Outcome.CONNECTION_LOST, error.stage, text)

    async def _submit(self) -> _Verdict:
        settings, session = self.settings, self.session
        dns_failure = await self._resolve()
        if dns_failure is not None:
            return dns_failure
        assert self.address is not None
        implicit = settings.security is Security.TLS
        await session.connect(
            self.address,
            settings.port,
            implicit_tls=implicit,
            ssl_context=self._tls_context(Stage.CONNECT) if implicit else None,
            server_hostname=settings.server if implicit else None,
        )
        banner = await session.read_banner()
        if not banner.is_positive:
            return _rejected(Stage.BANNER, banner)
        reply = await session.ehlo(self.helo)
        if not reply.is_positive:
            return _rejected(Stage.EHLO, reply)
        if settings.security is Security.STARTTLS:
            if not session.supports("STARTTLS"):
                text = f"server {self.where} does not offer STARTTLS (not in its EHLO reply)"
                session.note(text)
                return _Verdict(Outcome.TLS_FAILED, Stage.STARTTLS, text)
            reply = await session.starttls(self._tls_context(Stage.STARTTLS), settings.server)
            if reply.code != 220:
                return _rejected(Stage.STARTTLS, reply)
            reply = await session.ehlo(self.helo)
            if not reply.is_positive:
                return _rejected(Stage.EHLO, reply)
        if settings.auth is not None:
            verdict = await self._authenticate()
            if verdict is not None:
                return verdict
        return await self._transaction()

    def _tls_context(self, stage: Stage) -> ssl.SSLContext:
        # Built only when TLS is used: loading a trust store is not free.
        try:
            return client_tls_context(verify=self.settings.verify_tls, ca_file=self.ca_file)
        except (OSError, ssl.SSLError) as error:
            text = f"cannot load trusted certificates from {self.ca_file}: {_describe(error)}"
            self.session.note(text)
            raise TlsError(stage, text) from error

    async def _resolve(self) -> _Verdict | None:
        """Find the server's address; a verdict when that fails."""
        server, session = self.settings.server, self.session
        if _is_ip_literal(server):
            self.address = server
            return None
        with session.measure(Stage.DNS):
            start = session.elapsed()
            try:
                addresses = await self.resolve(server)
            except Exception as error:  # whatever the resolver raises is a DNS failure
                text = str(error) or f"{type(error).__name__} resolving {server}"
                session.note(f"DNS lookup of {server} failed: {text}")
                return _Verdict(Outcome.DNS_FAILURE, Stage.DNS, text)
        if not addresses:
            text = f"{server} has no address"
            session.note(text)
            return _Verdict(Outcome.DNS_FAILURE, Stage.DNS, text)
        took = (session.elapsed() - start) * 1000
        session.note(f"{server} resolved to {', '.join(addresses)} in {took:.0f} ms")
        self.address = addresses[0]
        return None

    async def _authenticate(self) -> _Verdict | None:
        """AUTH as configured; a verdict when it did not succeed."""
        auth, session = self.settings.auth, self.session
        assert auth is not None
        session.add_secret(auth.password)
        mechanism: str = auth.mechanism
        if mechanism == "auto":
            if not session.supports("AUTH"):
                hint = "" if session.tls else "; servers often offer it only after STARTTLS"
                text = f"server {self.where} does not offer AUTH (not in its EHLO reply{hint})"
                session.note(text)
                return _Verdict(Outcome.AUTH_UNAVAILABLE, Stage.AUTH, text)
            offered = session.auth_mechanisms
            picked = sasl.pick_mechanism(offered)
            if picked is None:
                text = f"no supported AUTH mechanism offered (server offers {' '.join(offered)})"
                session.note(text)
                return _Verdict(Outcome.AUTH_UNAVAILABLE, Stage.AUTH, text)
            mechanism = picked
        reply = await session.auth(mechanism, auth.user, auth.password)
        if reply.code != 235:
            return _rejected(Stage.AUTH, reply)
        return None

    async def _transaction(self) -> _Verdict:
        """MAIL, RCPT for every recipient, DATA."""
        settings, session = self.settings, self.session
        message = build_message(settings, message_id=self.message_id)
        reply = await session.mail(settings.sender, size=len(message))
        if not reply.is_positive:
            return _rejected(Stage.MAIL, reply)
        first_refusal: SmtpReply | None = None
        for recipient in settings.to:
            reply = await session.rcpt(recipient)
            if reply.is_positive:
                self.accepted.append(recipient)
                continue
            self.rejected[recipient] = reply
            first_refusal = first_refusal or reply
            if reply.code == 421:  # the server is closing the session
                return _rejected(Stage.RCPT, reply)
        if not self.accepted:
            assert first_refusal is not None
            return _rejected(Stage.RCPT, first_refusal)
        reply = await session.data(message)
        if not reply.is_positive:
            return _rejected(Stage.DATA, reply)
        return _Verdict(Outcome.DELIVERED, Stage.DATA, reply.text, reply)


async def send_mail(
    settings: MailSettings,
    *,
    connector: Connector,
    resolve: Resolve,
    helo: str,
    ca_file: Path | None,
    clock: Clock | None = None,
) -> SendResult:
    """Send one message the way a mail program configured with `settings` does.

    Resolve `settings.server` with `resolve` (skipped for an IP literal), connect
    to the first address, TLS as `settings.security` says (implicit at connect,
    or STARTTLS then EHLO again), AUTH when configured ("auto" prefers PLAIN,
    then LOGIN, then CRAM-MD5 among what EHLO offers; a forced mechanism is sent
    regardless), MAIL, RCPT per recipient, DATA, QUIT.

    Never raises for network or protocol trouble: every failure is a `SendResult`
    with the outcome, the stage where it stopped and the reply or reason. An
    unreadable `ca_file` is a TLS failure too.

    Args:
        settings: the mail program's configuration.
        connector: opens TCP connections from where the program runs.
        resolve: name -> addresses; any exception it raises is a DNS failure.
        helo: the EHLO name (the machine's host name) unless `settings.helo` is set.
        ca_file: trust anchor when `settings.verify_tls` (None: the system's).
        clock: monotonic seconds; injectable for tests.

    Raises:
        ValueError: an address or the HELO name contains a line break (a broken
            configuration, refused rather than sent as an injected command).
    """
    program = _MailProgram(settings, connector, resolve, helo, ca_file, clock)
    return await program.run()
