"""A reader for the classic pcap files tcpdump writes: decisions without I/O, bytes in,
TCP/IPv4 segments out. Only what a summary of SMTP connections needs is decoded;
other packets (ARP, UDP, IPv6) are skipped, never an error."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

# Link-layer header types (tcpdump.org/linktypes.html) and the offset of the IP header.
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
_LINK_HEADER = {LINKTYPE_ETHERNET: 14, LINKTYPE_RAW: 0, LINKTYPE_LINUX_SLL: 16,
                LINKTYPE_LINUX_SLL2: 20}  # fmt: skip
_ETHERTYPE_IPV4 = 0x0800
_PROTO_TCP = 6

# TCP flag bits.
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


class PcapError(ValueError):
    """Not a pcap file this reader knows (pcapng, truncated header, unknown link type)."""


@dataclass(frozen=True)
class Segment:
    """One TCP segment as captured."""

    time: float  # seconds since the epoch
    source: IPv4Address
    source_port: int
    destination: IPv4Address
    destination_port: int
    flags: int
    sequence: int
    payload: int  # bytes of TCP payload

    def has(self, flag: int) -> bool:
        """Whether `flag` (e.g. `SYN`) is set."""
        return bool(self.flags & flag)


def read_segments(data: bytes) -> list[Segment]:
    """Every TCP/IPv4 segment in a pcap file's bytes, in capture order.

    Raises:
        PcapError: the bytes are not a classic pcap file with a supported link type.
    """
    return list(_segments(data))


def _segments(data: bytes) -> Iterator[Segment]:
    if len(data) < 24:
        raise PcapError("not a pcap file: shorter than its 24-byte header")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        order = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        order = ">"
    else:
        raise PcapError("not a classic pcap file (pcapng and others are not read)")
    nanoseconds = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(order + "I", data[20:24])[0] & 0x0FFFFFFF
    if linktype not in _LINK_HEADER:
        raise PcapError(f"link type {linktype} is not supported")
    record = struct.Struct(order + "IIII")
    offset = 24
    while offset + record.size <= len(data):
        seconds, fraction, captured, _original = record.unpack_from(data, offset)
        offset += record.size
        frame = data[offset : offset + captured]
        offset += captured
        stamp = seconds + fraction / (1e9 if nanoseconds else 1e6)
        segment = _decode(frame, linktype, stamp)
        if segment is not None:
            yield segment


def _decode(frame: bytes, linktype: int, stamp: float) -> Segment | None:
    """The TCP segment in one frame, or None for anything else or a truncated frame."""
    if _ethertype(frame, linktype) != _ETHERTYPE_IPV4:
        return None
    ip = frame[_LINK_HEADER[linktype] :]
    if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != _PROTO_TCP:
        return None
    ip_header = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    tcp = ip[ip_header:]
    if len(tcp) < 20:
        return None
    source_port, destination_port, sequence = struct.unpack("!HHI", tcp[:8])
    tcp_header = (tcp[12] >> 4) * 4
    return Segment(
        time=stamp,
        source=IPv4Address(ip[12:16]),
        source_port=source_port,
        destination=IPv4Address(ip[16:20]),
        destination_port=destination_port,
        flags=tcp[13],
        sequence=sequence,
        payload=max(0, total - ip_header - tcp_header),
    )


def _ethertype(frame: bytes, linktype: int) -> int | None:
    """The protocol carried by a frame (0x0800 for IPv4), None when the frame is too short."""
    if linktype == LINKTYPE_RAW:
        return _ETHERTYPE_IPV4 if frame[:1] and frame[0] >> 4 == 4 else None
    where = {LINKTYPE_ETHERNET: 12, LINKTYPE_LINUX_SLL: 14, LINKTYPE_LINUX_SLL2: 0}[linktype]
    if len(frame) < where + 2:
        return None
    value: int = struct.unpack("!H", frame[where : where + 2])[0]
    return value
