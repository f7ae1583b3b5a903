"""Sockets inside a container's network namespace: TCP connections and DNS questions that
leave a node exactly as its own traffic would (its routes, its router, its firewall)."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from lab.net import ConnectRefused, ConnectTimeout, Streams, unreachable

RESOLVE_TIMEOUT = 2.0

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

# Entering a container's network namespace needs root; without it, the host's own
# connections to the lab bridges stand in (they reach every lab address directly).
CAN_ENTER_NAMESPACES = os.geteuid() == 0


def netns_socket(pid: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> socket.socket:
    """A socket created in the network namespace of process `pid` (needs root).

    A socket belongs to the namespace it was created in for its whole life, so
    connecting it later from here goes out exactly as the container's own
    traffic would: its routes, its router, its firewall. The namespace switch
    happens in a throwaway thread (namespaces are per thread), never in this one.

    Raises:
        OSError: the namespace cannot be entered (not root, process gone).
    """
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def enter_and_create() -> None:
        try:
            descriptor = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                if _libc.setns(descriptor, _CLONE_NEWNET) != 0:
                    number = ctypes.get_errno()
                    raise OSError(number, f"setns into pid {pid}: {os.strerror(number)}")
            finally:
                os.close(descriptor)
            made.append(socket.socket(socket.AF_INET, kind))
        except BaseException as error:
            failed.append(error)

    thread = threading.Thread(target=enter_and_create, name=f"netns-{pid}")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


def runs_in(pid: int, container_id: str) -> bool:
    """Whether process `pid` is alive (not a zombie) in container `container_id`'s cgroup:
    a look at `/proc` instead of a question to the engine. False when it cannot tell
    (another pid namespace, no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        cgroups = Path(f"/proc/{pid}/cgroup").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[:1]
    return state != ["Z"] and state != ["X"] and container_id in cgroups


class NamespaceConnector:
    """`lab.net.Connector` for a container: connections from inside its network namespace."""

    def __init__(self, pid: Callable[[], int]) -> None:
        self._pid = pid

    async def open_connection(self, host: str, port: int, *, timeout: float) -> Streams:
        """Connect from the container; errors mapped like `lab.net.open_tcp`."""
        loop = asyncio.get_running_loop()
        sock = await asyncio.to_thread(netns_socket, self._pid())
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
            return await asyncio.open_connection(sock=sock)
        except TimeoutError:
            sock.close()
            raise ConnectTimeout(
                errno.ETIMEDOUT, f"connect to {host}:{port} timed out after {timeout:g} s"
            ) from None
        except ConnectionRefusedError:
            sock.close()
            raise ConnectRefused(
                errno.ECONNREFUSED, f"connection to {host}:{port} refused"
            ) from None
        except OSError as error:
            sock.close()
            if error.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                raise unreachable(error.errno, host, port) from None
            raise
        except BaseException:
            sock.close()
            raise


def query_dns(pid: int, server: str, name: str, rdtype: str) -> list[str]:
    """One UDP question from inside process `pid`'s namespace; errors as `lab.nodes.resolver`'s."""
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype

    from lab.nodes.resolver import DnsTemporaryFailure, NameNotFound, NoRecords

    shown = name.rstrip(".") or "."
    query = dns.message.make_query(name, rdtype)
    try:
        with netns_socket(pid, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)  # dnspython waits on it with its own timeout
            answer = dns.query.udp(query, server, timeout=RESOLVE_TIMEOUT, sock=sock)
    except dns.exception.Timeout:
        raise DnsTemporaryFailure(
            shown, rdtype, f"timeout: no answer from {server}:53 within {RESOLVE_TIMEOUT:g} s"
        ) from None
    rcode = answer.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        raise NameNotFound(shown, rdtype, "NXDOMAIN (domain does not exist)")
    if rcode != dns.rcode.NOERROR:
        raise DnsTemporaryFailure(
            shown, rdtype, f"{dns.rcode.to_text(rcode)} ({server}:53 answered {rcode})"
        )
    wanted = dns.rdatatype.from_text(rdtype)
    records = [
        rdata.to_text() for rrset in answer.answer if rrset.rdtype == wanted for rdata in rrset
    ]
    if not records:
        raise NoRecords(shown, rdtype, f"no {rdtype} records (NODATA)")
    return records
