"""The line's impairments: pacing and the reset point as decisions, then real sockets
through the in-process line (the docker router runs the same code behind iptables; the
parity tests run the impaired scenarios there)."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from lab.net import open_tcp
from lab.nodes.config import LineConfig
from lab.nodes.inspection import Interposer
from lab.nodes.line import RETRANSMIT_DELAY, LineShape, interpose_line


def test_bandwidth_paces_chunks_one_after_another_and_latency_adds_on_top() -> None:
    shape = LineShape(LineConfig(bandwidth=8000, latency=0.5))  # 1,000 bytes per second
    assert shape.schedule(1000, upstream=True, now=10.0) == pytest.approx(11.5)
    assert shape.schedule(500, upstream=True, now=10.2) == pytest.approx(12.0)  # queued behind
    assert shape.schedule(1000, upstream=False, now=10.2) == pytest.approx(11.7)  # other way


def test_local_loss_costs_a_retransmission_on_the_chunks_it_hits() -> None:
    shape = LineShape(LineConfig(loss=0.5), emulate_loss=True, rng=random.Random(7))
    delays = [round(shape.schedule(10, upstream=True, now=float(i)) - i, 6) for i in range(200)]
    assert set(delays) == {0.0, RETRANSMIT_DELAY}
    assert 60 < delays.count(RETRANSMIT_DELAY) < 140


def test_the_reset_point_cuts_the_chunk_that_crosses_it() -> None:
    shape = LineShape(LineConfig(reset_after=10))
    assert shape.admit(b"123456") == b"123456"
    assert shape.admit(b"789abc") == b"789a"
    assert shape.admit(b"more") == b""


async def serve_counting(received: bytearray) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 ready\r\n")
        with contextlib.suppress(OSError):
            while chunk := await reader.read(65536):
                received.extend(chunk)
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def through_line(config: LineConfig, payload: bytes) -> tuple[bytes, bytes, bool]:
    """(what the server received, what the client read, whether the client was cut off)."""
    received = bytearray()
    server = await serve_counting(received)
    port = server.sockets[0].getsockname()[1]
    line = Interposer()
    try:
        reader, writer = await interpose_line(
            line, await open_tcp("127.0.0.1", port, timeout=5), config
        )
        greeting = await asyncio.wait_for(reader.readline(), 5)
        cut = False
        try:
            writer.write(payload)
            await writer.drain()
            writer.write_eof()
            rest = await asyncio.wait_for(reader.read(), 5)
        except ConnectionResetError:
            cut, rest = True, b""
        cut = cut or rest == b""
        writer.close()
        await asyncio.sleep(0.05)  # let the server read what reached it
        return bytes(received), greeting, cut
    finally:
        line.close()
        server.close()
        await server.wait_closed()


async def test_a_middlebox_reset_lets_exactly_the_limit_through() -> None:
    payload = bytes(range(256)) * 40  # 10,240 bytes
    received, greeting, cut = await through_line(LineConfig(reset_after=4096), payload)
    assert greeting == b"220 ready\r\n"
    assert received == payload[:4096]
    assert cut


async def test_a_slow_line_delivers_everything_in_order() -> None:
    payload = bytes(random.Random(3).randbytes(50_000))
    received, greeting, _ = await through_line(
        LineConfig(latency=0.01, bandwidth=8_000_000), payload
    )
    assert greeting == b"220 ready\r\n"
    assert received == payload
