"""A listener stuck on TLS 1.0/1.1 (`tls_versions: legacy`), failing the way real ones do.

Every current client refuses to go below TLS 1.2, so against such a server
the handshake fails on the server's side, which answers the ClientHello
with a `protocol_version` alert: the client reports
`TLSV1_ALERT_PROTOCOL_VERSION`. asyncio's TLS transport, though, drops the
connection on a failed server handshake without flushing that alert, and
the client would only see a reset. So a legacy listener first runs the
client's ClientHello through a throwaway in-memory handshake
(`handshake_refusal`): when it cannot succeed, the alert OpenSSL produced is
sent and the connection closed; when it can (a legacy client), the real
handshake proceeds with the same bytes.

OpenSSL 3 allows TLS 1.0/1.1 only at security level 0 (`@SECLEVEL=0`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import warnings

from lab.nodes.config import TlsFiles
from lab.nodes.tls import server_context
from lab.scenario.model import TlsVersions

RECORD_HEADER = 5
MAX_RECORD = 16384 + 2048  # a TLS record's payload limit, with room for the ciphertext overhead
PEEK_PAUSE = 0.005


def listener_context(files: TlsFiles, versions: TlsVersions) -> ssl.SSLContext:
    """The server context of a listener: the usual one, or one limited to TLS 1.0-1.1."""
    context = server_context(files)
    if versions is TlsVersions.LEGACY:
        # Python deprecates naming these versions; here naming them is the point.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def record_length(data: bytes) -> int | None:
    """The full length of the TLS record `data` starts with; None before its header is in."""
    if len(data) < RECORD_HEADER:
        return None
    return RECORD_HEADER + int.from_bytes(data[3:5], "big")


def handshake_refusal(context: ssl.SSLContext, hello: bytes) -> tuple[bytes, str] | None:
    """The alert to send and the reason, when a handshake starting with `hello` must fail.

    None when the server could go on (the hello is acceptable, or incomplete:
    the real handshake then decides).
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    probe = context.wrap_bio(incoming, outgoing, server_side=True)
    incoming.write(hello)
    try:
        probe.do_handshake()
    except ssl.SSLWantReadError:
        return None
    except ssl.SSLError as error:
        return outgoing.read(), str(error.reason or error)
    return None


async def read_record(reader: asyncio.StreamReader) -> bytes:
    """The first TLS record from a stream (STARTTLS: the ClientHello after our 220).

    Raises:
        asyncio.IncompleteReadError: the client went away.
    """
    header = await reader.readexactly(RECORD_HEADER)
    length = record_length(header)
    assert length is not None
    return header + await reader.readexactly(min(length, MAX_RECORD) - RECORD_HEADER)


def feed(protocol: asyncio.BufferedProtocol, data: bytes) -> None:
    """Hand bytes already read from the socket to a (TLS) protocol, as the transport would."""
    view = memoryview(data)
    while view:
        buffer = memoryview(protocol.get_buffer(len(view))).cast("B")
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        protocol.buffer_updated(size)
        view = view[size:]


async def peek_record(sock: socket.socket) -> bytes:
    """The first TLS record waiting on a raw socket, left unread (MSG_PEEK); b"" on EOF.

    For implicit TLS, where the handshake starts at once and nothing has read
    the socket yet; the caller bounds the wait.
    """
    while True:
        await _readable(sock)
        data = sock.recv(MAX_RECORD, socket.MSG_PEEK)
        if not data:
            return b""
        length = record_length(data)
        if length is not None and len(data) >= min(length, MAX_RECORD):
            return data[:length]
        # Peeking does not consume: the socket stays readable until the rest arrives.
        await asyncio.sleep(PEEK_PAUSE)


async def _readable(sock: socket.socket) -> None:
    """Wait until `sock` has something to read (or is closed)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


async def refuse_raw(sock: socket.socket, hello: bytes, alert: bytes) -> None:
    """Consume the peeked hello, send the alert, close: a FIN after the alert, not a reset."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(OSError):
        sock.recv(len(hello))
        await loop.sock_sendall(sock, alert)
        sock.shutdown(socket.SHUT_WR)
    sock.close()
