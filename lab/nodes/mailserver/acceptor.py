"""Socket acceptance for the mail server: listen backlog, handshake deadlines, PROXY-then-TLS.

Most listeners are plain `loop.create_server` sockets (`listener.py`). An
implicit-TLS listener behind a PROXY header, or one stuck on TLS 1.0/1.1
(`legacy_tls.py`), cannot be: asyncio would start the TLS handshake on the
first bytes. `ProxyThenTls` accepts such connections itself, reads what
comes before the handshake, and only then hands the socket to asyncio's TLS
transport. The deadlines every listener shares are defined here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable
from typing import Any

from aiosmtpd.proxy_protocol import ProxyData, get_proxy

from lab.nodes.mailserver import legacy_tls

# aiosmtpd's `Controller` listens with a backlog of 100, which stalls bursts of connections.
BACKLOG = 1024
# asyncio accepts up to its `backlog` argument in one go before any new session has run: a
# flood would take every descriptor before one refusal could close its socket. The kernel's
# queue keeps BACKLOG (`listening_socket`); asyncio is handed this much smaller figure.
ACCEPT_BURST = 32
PROXY_TIMEOUT = 10.0  # the local backend sends the header at once; this only bounds junk
HANDSHAKE_TIMEOUT = 10.0
PROXY_V1_MAX = 107  # the longest valid v1 header, CRLF included


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A non-blocking socket listening on `host`:`port` with the full BACKLOG.

    `reuse_port`: SO_REUSEPORT, so that several worker processes listen on the
    same port and the kernel spreads new connections over them (`workers.py`).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=BACKLOG, reuse_port=reuse_port)
    sock.setblocking(False)
    return sock


class ProxyThenTls:
    """An implicit-TLS listener behind a PROXY header: the header in clear, then TLS.

    `loop.create_server(ssl=...)` would start the handshake on the header's
    bytes, and aiosmtpd reads the header from inside the TLS session; so this
    listener accepts itself, reads exactly the header, and only then hands
    the socket to asyncio's TLS transport. Only PROXY v1 (text) is read here.

    With `refused` set (a TLS 1.0/1.1 listener, `legacy_tls`), the ClientHello
    is first looked at, unread, and a modern one answered with OpenSSL's alert;
    `refused(reason)` is told.
    """

    def __init__(
        self,
        host: str,
        port: int,
        protocol: Any,
        tls: ssl.SSLContext,
        *,
        proxy: bool = True,
        refused: Callable[[str], None] | None = None,
        reuse_port: bool = False,
    ) -> None:
        self._sock = listening_socket(host, port, reuse_port=reuse_port)
        self.port: int = self._sock.getsockname()[1]
        self._protocol = protocol
        self._tls = tls
        self._proxy = proxy
        self._refused = refused
        self._pending: set[asyncio.Task[None]] = set()
        self._accepting = asyncio.get_running_loop().create_task(self._accept())

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except OSError:
                # Out of descriptors and the like: wait instead of spinning (as asyncio does).
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            task = loop.create_task(self._connection(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _connection(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        proxy: ProxyData | None = None
        try:
            if self._proxy:
                header = await asyncio.wait_for(_read_proxy_line(loop, conn), PROXY_TIMEOUT)
                proxy = await _parse_proxy(header)
                if not proxy:
                    conn.close()
                    return
            if self._refused is not None:
                hello = await asyncio.wait_for(legacy_tls.peek_record(conn), HANDSHAKE_TIMEOUT)
                refusal = legacy_tls.handshake_refusal(self._tls, hello)
                if refusal is not None:
                    alert, reason = refusal
                    self._refused(reason)
                    await legacy_tls.refuse_raw(conn, hello, alert)
                    return
        except asyncio.CancelledError:
            conn.close()
            raise
        except (OSError, TimeoutError):
            # Nobody awaits this task: errors end here, with the connection.
            conn.close()
            return
        # From here on the transport owns the socket and closes it on failure.
        with contextlib.suppress(OSError, TimeoutError):
            await loop.connect_accepted_socket(
                lambda: self._protocol(proxy),
                conn,
                ssl=self._tls,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
            )

    async def close(self) -> None:
        self._accepting.cancel()
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(self._accepting, *self._pending, return_exceptions=True)
        self._sock.close()


async def _read_proxy_line(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    """Read up to the header's CRLF and not one byte further: the rest is TLS."""
    line = bytearray()
    while not line.endswith(b"\r\n") and len(line) <= PROXY_V1_MAX:
        chunk = await loop.sock_recv(conn, 1)
        if not chunk:
            break
        line += chunk
    return bytes(line)


async def _parse_proxy(header: bytes) -> ProxyData:
    """aiosmtpd's PROXY parser over bytes already read; an invalid header is falsy."""
    if not header.startswith(b"PROXY ") or not header.endswith(b"\r\n"):
        return ProxyData(version=None).with_error("PROXY header missing or malformed")
    reader = asyncio.StreamReader()
    reader.feed_data(header)
    reader.feed_eof()
    return await get_proxy(reader)
