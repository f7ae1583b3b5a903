"""How lab processes open TCP connections: one small interface, two worlds.

In a container a connection is a plain socket connect. In the local backend
every node lives on 127.0.0.1 and the lab's network (addresses, router
policies, NAT) is emulated behind the same interface. Node programs and the
diagnosis engine only ever call `Connector.open_connection`.
"""

from __future__ import annotations

import asyncio
import errno
from typing import Protocol

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class ConnectError(OSError):
    """A TCP connection could not be established."""


class ConnectTimeout(ConnectError):
    """No answer to the SYN before the timeout: a firewall dropped it, or the host is gone."""


class ConnectRefused(ConnectError):
    """The host answered with a reset: nothing listens there, or a firewall rejects."""


class HostUnreachable(ConnectError):
    """No route to the host."""


class NetworkUnreachable(HostUnreachable):
    """No route to the host's network (ENETUNREACH): a router on the way answered ICMP
    "network unreachable", as an ISP whose uplink is down does."""


def unreachable(code: int | None, host: str, port: int) -> HostUnreachable:
    """The error for an ICMP unreachable answer to a connect, by its errno."""
    if code == errno.ENETUNREACH:
        return NetworkUnreachable(errno.ENETUNREACH, f"network unreachable for {host}:{port}")
    return HostUnreachable(errno.EHOSTUNREACH, f"no route to {host}:{port}")


class Connector(Protocol):
    """Opens connections on behalf of one node, from where that node stands."""

    async def open_connection(self, host: str, port: int, *, timeout: float) -> Streams:
        """Connect to `host:port` (an address; names are resolved by the caller).

        Raises:
            ConnectTimeout, ConnectRefused, HostUnreachable.
        """
        ...


class DirectConnector:
    """Plain sockets: what a node in a container (or any real host) does."""

    async def open_connection(self, host: str, port: int, *, timeout: float) -> Streams:
        """Connect with the kernel's TCP stack; errors mapped to `ConnectError`s."""
        return await open_tcp(host, port, timeout=timeout)


async def open_tcp(host: str, port: int, *, timeout: float) -> Streams:
    """`asyncio.open_connection` with a timeout and errors mapped to `ConnectError`s."""
    try:
        return await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        raise ConnectTimeout(
            errno.ETIMEDOUT, f"connect to {host}:{port} timed out after {timeout:g} s"
        ) from None
    except ConnectionRefusedError:
        raise ConnectRefused(errno.ECONNREFUSED, f"connection to {host}:{port} refused") from None
    except OSError as error:
        if error.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            raise unreachable(error.errno, host, port) from None
        raise
