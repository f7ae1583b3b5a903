"""The local backend's emulated network, on real loopback sockets.

A dropped port must give the kernel's own connect timeout, a rejected one the
kernel's own refusal, and an allowed one must carry the NAT'ed peer address.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lab.net import ConnectRefused, ConnectTimeout, HostUnreachable
from lab.runtime.emulated import EmulatedNetwork
from lab.scenario.loader import load_scenario
from lab.topology import resolve

SCENARIOS = Path(__file__).parents[2] / "scenarios"


@pytest.fixture
async def network() -> AsyncIterator[tuple[EmulatedNetwork, list[bytes]]]:
    """blocked-port-25's topology with a real listener standing in for relay:25 and :587."""
    topology = resolve(load_scenario(SCENARIOS / "blocked-port-25.yaml"))
    net = EmulatedNetwork(topology)
    received: list[bytes] = []

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.readline())
        writer.write(b"220 ready\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    relay = str(topology.nodes["relay"].address)
    for lab_port in (25, 587):
        net.ports[(relay, lab_port)] = port
        net.proxied.add((relay, lab_port))
    yield net, received
    server.close()
    await server.wait_closed()
    net.close()


async def test_dropped_port_waits_out_the_timeout(
    network: tuple[EmulatedNetwork, list[bytes]],
) -> None:
    net, received = network
    relay = str(net.topology.nodes["relay"].address)
    started = time.monotonic()
    with pytest.raises(ConnectTimeout, match=f"connect to {relay}:25 timed out after 0.4 s"):
        await net.connector_for("laptop").open_connection(relay, 25, timeout=0.4)
    assert time.monotonic() - started >= 0.39
    assert received == []  # the SYN never reached the server


async def test_allowed_port_carries_the_nat_address(
    network: tuple[EmulatedNetwork, list[bytes]],
) -> None:
    net, received = network
    topology = net.topology
    relay = str(topology.nodes["relay"].address)
    reader, writer = await net.connector_for("laptop").open_connection(relay, 587, timeout=1)
    assert await reader.readline() == b"220 ready\r\n"
    writer.close()
    public = topology.nodes["isp"].addresses["internet"]
    assert received[0].startswith(f"PROXY TCP4 {public} {relay} ".encode())
    assert received[0].endswith(b" 587\r\n")


async def test_port_nothing_listens_on_is_refused(
    network: tuple[EmulatedNetwork, list[bytes]],
) -> None:
    net, _ = network
    relay = str(net.topology.nodes["relay"].address)
    started = time.monotonic()
    with pytest.raises(ConnectRefused):
        await net.connector_for("laptop").open_connection(relay, 2525, timeout=2)
    assert time.monotonic() - started < 2, "refused at once, not after the timeout"


async def test_rejecting_router_refuses() -> None:
    topology = resolve(load_scenario(SCENARIOS / "port-25-refused.yaml"))
    net = EmulatedNetwork(topology)
    try:
        relay = str(topology.nodes["relay"].address)
        with pytest.raises(ConnectRefused, match="refused"):
            await net.connector_for("laptop").open_connection(relay, 25, timeout=2)
    finally:
        net.close()


async def test_inward_connections_are_unreachable(
    network: tuple[EmulatedNetwork, list[bytes]],
) -> None:
    net, _ = network
    laptop = str(net.topology.nodes["laptop"].address)
    with pytest.raises(HostUnreachable):
        await net.connector_for("relay").open_connection(laptop, 25, timeout=1)
