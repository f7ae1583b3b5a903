"""The port sweep: every port at once, and a greeting on each open alternative.

`scan_ports` answers `ScanPorts`. It connects to every port in parallel
(`asyncio.gather`), each bounded by the mail program's timeout, so the sweep
costs about one connect timeout. On an open alternative it greets on the same
connection (TLS first on the implicit-TLS ports) to learn whether it speaks
SMTP and what it offers; the configured port is only proven open, since the
main session connects on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from lab.diagnosis.planner import IMPLICIT_TLS_PORTS
from lab.diagnosis.probes.context import ProbeContext, insecure_context
from lab.diagnosis.probes.failures import EXPECTED, failure_of
from lab.diagnosis.requests import Greeting, PortProbe, PortsResult, ScanPorts
from lab.net import ConnectRefused, ConnectTimeout, HostUnreachable, Streams
from lab.smtp.session import SmtpSession

# The sweep's greeting on an alternative port never needs long: the banner and EHLO of
# a healthy server take milliseconds, and a silent one is not a good alternative anyway.
MIN_GREETING_BUDGET = 0.25


async def scan_ports(context: ProbeContext, request: ScanPorts) -> PortsResult:
    """Every port at once; greet on open alternatives within the same timeout."""
    start = context.clock()
    probes = await asyncio.gather(*(_probe_port(context, request, port) for port in request.ports))
    return PortsResult(
        address=request.address,
        ports=tuple(probes),
        timeout=request.timeout,
        duration=context.clock() - start,
    )


async def _probe_port(context: ProbeContext, request: ScanPorts, port: int) -> PortProbe:
    start = context.clock()
    try:
        streams = await context.target.connector.open_connection(
            request.address, port, timeout=request.timeout
        )
    except (ConnectTimeout, TimeoutError) as error:
        return PortProbe(port, "timeout", context.ms_since(start), str(error))
    except ConnectRefused as error:
        return PortProbe(port, "refused", context.ms_since(start), str(error))
    except HostUnreachable as error:
        return PortProbe(port, "unreachable", context.ms_since(start), str(error))
    except ConnectionRefusedError as error:
        return PortProbe(port, "refused", context.ms_since(start), str(error))
    except OSError as error:
        return PortProbe(port, "error", context.ms_since(start), error.strerror or str(error))
    ms = context.ms_since(start)
    if port == request.configured:
        # The main session connects on its own: this one only proves the port is open.
        await _close_streams(streams)
        return PortProbe(port, "open", ms)
    budget = max(request.timeout - (context.clock() - start), MIN_GREETING_BUDGET)
    greeting = await _greet(context, streams, request.address, port, budget)
    return PortProbe(port, "open", ms, greeting=greeting)


async def _greet(
    context: ProbeContext, streams: Streams, address: str, port: int, budget: float
) -> Greeting:
    """What an alternative port offers: banner (after TLS on 465), STARTTLS, AUTH."""
    mode = "tls" if port in IMPLICIT_TLS_PORTS else "plain"
    session = SmtpSession(_Opened(streams), budget)
    try:
        async with asyncio.timeout(budget):
            await session.connect(
                address,
                port,
                implicit_tls=mode == "tls",
                ssl_context=insecure_context(),
                server_hostname=context.server_name,
            )
            banner = await session.read_banner()
            if banner.code != 220:
                return Greeting(mode, banner.code, str(banner))
            reply = await session.ehlo(context.helo)
            starttls = reply.is_positive and session.supports("STARTTLS")
            auth = tuple(session.auth_mechanisms)
            await session.quit()
            return Greeting(mode, 220, str(banner), starttls, auth)
    except TimeoutError:
        return Greeting(mode, error=f"no greeting within {budget:.1f} s")
    except EXPECTED as error:
        return Greeting(mode, error=failure_of(error).detail)
    finally:
        await session.close()


class _Opened:
    """A connector that hands out streams opened earlier (the sweep greets on them)."""

    def __init__(self, streams: Streams) -> None:
        self._streams: Streams | None = streams

    async def open_connection(self, host: str, port: int, *, timeout: float) -> Streams:
        if self._streams is None:
            raise ConnectRefused(111, "already used")
        streams, self._streams = self._streams, None
        return streams


async def _close_streams(streams: Streams) -> None:
    _, writer = streams
    writer.close()
    with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
        await asyncio.wait_for(writer.wait_closed(), 1.0)
