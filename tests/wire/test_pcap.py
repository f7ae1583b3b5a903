"""The pcap reader: link types tcpdump writes, byte orders, and what it must skip."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest

from lab.wire.pcap import (
    ACK,
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_RAW,
    PSH,
    SYN,
    PcapError,
    read_segments,
)


def ip_tcp(
    src: str, dst: str, sport: int, dport: int, flags: int, seq: int, payload: bytes
) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 64240, 0, 0) + payload
    total = 20 + len(tcp)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, 6, 0,
        IPv4Address(src).packed, IPv4Address(dst).packed,
    )  # fmt: skip
    return ip + tcp


def ethernet(packet: bytes, ethertype: int = 0x0800) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", ethertype) + packet


def sll(packet: bytes) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 8, 0x0800) + packet


def pcap(frames: list[tuple[float, bytes]], linktype: int, order: str = "<") -> bytes:
    data = struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262, linktype)
    for stamp, frame in frames:
        seconds = int(stamp)
        micros = round((stamp - seconds) * 1e6)
        data += struct.pack(order + "IIII", seconds, micros, len(frame), len(frame)) + frame
    return data


SYN_PACKET = ip_tcp("10.0.0.10", "10.0.1.11", 40000, 25, SYN, 7, b"")
DATA_PACKET = ip_tcp("10.0.0.10", "10.0.1.11", 40000, 25, PSH | ACK, 8, b"EHLO x\r\n")


@pytest.mark.parametrize(
    ("linktype", "frame"),
    [(LINKTYPE_ETHERNET, ethernet), (LINKTYPE_LINUX_SLL, sll), (LINKTYPE_RAW, lambda p: p)],
    ids=["ethernet", "linux-cooked", "raw-ip"],
)
@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian", "big-endian"])
def test_segments_of_each_link_type_and_byte_order(linktype: int, frame, order: str) -> None:  # type: ignore[no-untyped-def]
    data = pcap([(100.25, frame(SYN_PACKET)), (100.5, frame(DATA_PACKET))], linktype, order)
    first, second = read_segments(data)
    assert (first.source, first.destination) == (IPv4Address("10.0.0.10"), IPv4Address("10.0.1.11"))
    assert (first.source_port, first.destination_port) == (40000, 25)
    assert first.has(SYN)
    assert not first.has(ACK)
    assert first.time == pytest.approx(100.25)
    assert second.payload == len(b"EHLO x\r\n")
    assert second.sequence == 8


def test_other_protocols_and_truncated_frames_are_skipped() -> None:
    arp = ethernet(b"\x00" * 28, ethertype=0x0806)
    udp = bytearray(SYN_PACKET)
    udp[9] = 17
    frames = [(1.0, arp), (2.0, ethernet(bytes(udp))), (3.0, ethernet(SYN_PACKET[:30])),
              (4.0, ethernet(SYN_PACKET))]  # fmt: skip
    [segment] = read_segments(pcap(frames, LINKTYPE_ETHERNET))
    assert segment.time == 4.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter than its 24-byte header"),
        (b"\x0a\x0d\x0d\x0a" + b"\x00" * 40, "pcapng"),
        (pcap([], 228), "link type 228 is not supported"),
    ],
    ids=["empty", "pcapng", "unknown-link-type"],
)
def test_files_it_cannot_read_say_why(data: bytes, message: str) -> None:
    with pytest.raises(PcapError, match=message):
        read_segments(data)
