"""TCP flows from captured segments: who opened, whether anyone answered, how many bytes
went each way, retransmissions and resets. Decisions without I/O; the wording of each
outcome is what a trainee should read off a capture ("3 SYNs, no answer")."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address

from lab.wire.pcap import ACK, RST, SYN, Segment


class Outcome(StrEnum):
    """What became of a connection attempt, as seen on the wire."""

    UNANSWERED = "unanswered"  # SYNs and nothing back: a filter dropped them
    REFUSED = "refused"  # the SYN was answered by a reset
    UNREACHABLE = "unreachable"  # no route: the connect failed at once (local records)
    ESTABLISHED = "established"
    RESET = "reset"  # established, then cut by a reset
    UNKNOWN = "unknown"  # the capture began after the handshake


@dataclass
class Flow:
    """One TCP connection between a client and a server port."""

    client: IPv4Address
    client_port: int
    server: IPv4Address
    server_port: int
    first: float
    last: float
    syns: int | None = 0  # None where the count is not known (emulated network)
    answered: bool = False  # a SYN-ACK came back
    server_resets: int = 0
    client_resets: int = 0
    bytes_up: int = 0  # client to server, TCP payload
    bytes_down: int = 0
    retransmissions: int = 0
    note: str = ""  # who decided, where known (the emulated network names the router)
    decided: Outcome | None = None  # set where no segments exist (emulated network records)
    _seen: set[tuple[bool, int, int]] = field(default_factory=set, repr=False)

    @property
    def outcome(self) -> Outcome:
        """The connection's fate, from the segments seen."""
        if self.decided is not None:
            return self.decided
        if self.answered:
            return (
                Outcome.RESET if self.server_resets or self.client_resets else (Outcome.ESTABLISHED)
            )
        if self.server_resets:
            return Outcome.REFUSED
        if self.syns:
            return Outcome.UNANSWERED
        return Outcome.UNKNOWN

    def describe(self) -> str:
        """One line a person reads: who to whom, and what the wire showed."""
        client = f"{self.client}:{self.client_port}" if self.client_port else str(self.client)
        head = f"{client} -> {self.server}:{self.server_port}"
        span = self.last - self.first
        outcome = self.outcome
        if self.decided is not None:
            what = _DECIDED_WORDS[outcome].format(span=span)
        elif outcome is Outcome.UNANSWERED:
            what = f"{self.syns} SYN{'s' if self.syns != 1 else ''}, no answer in {span:.1f} s"
        elif outcome is Outcome.REFUSED:
            what = "SYN answered by RST: refused"
        elif outcome is Outcome.UNKNOWN:
            what = "mid-connection (the capture began after the handshake)"
        else:
            what = f"connected; {self.bytes_up} bytes up, {self.bytes_down} bytes down"
            if outcome is Outcome.RESET:
                side = "server side" if self.server_resets else "client"
                what += f"; reset by the {side}"
            if self.retransmissions:
                what += f"; {self.retransmissions} retransmitted"
        return f"{head}  {what}" + (f"  ({self.note})" if self.note else "")


# What the emulated network knows of a connection: its fate and how long the client waited,
# not the segments (the kernel's own SYN retransmissions on loopback are not observed).
_DECIDED_WORDS = {
    Outcome.UNANSWERED: "no answer: dropped, the client gave up after {span:.1f} s",
    Outcome.REFUSED: "refused with a reset",
    Outcome.UNREACHABLE: "no route: the connect failed at once",
    Outcome.ESTABLISHED: "connected, {span:.1f} s",
    Outcome.RESET: "connected, then reset",
    Outcome.UNKNOWN: "unknown",
}


def flows_from_segments(segments: Iterable[Segment]) -> list[Flow]:
    """Group segments into flows, oriented by who sent the first SYN, in order of first sight."""
    flows: dict[tuple[IPv4Address, int, IPv4Address, int], Flow] = {}
    for segment in segments:
        forward = (segment.source, segment.source_port, segment.destination,
                   segment.destination_port)  # fmt: skip
        backward = (forward[2], forward[3], forward[0], forward[1])
        if forward in flows:
            _add(flows[forward], segment, from_client=True)
        elif backward in flows:
            _add(flows[backward], segment, from_client=False)
        else:
            # Without a SYN to tell, the lower port is taken as the server's.
            opener = segment.has(SYN) and not segment.has(ACK)
            from_client = opener or segment.source_port > segment.destination_port
            key = forward if from_client else backward
            flows[key] = Flow(*key, first=segment.time, last=segment.time)
            _add(flows[key], segment, from_client=from_client)
    return list(flows.values())


def _add(flow: Flow, segment: Segment, *, from_client: bool) -> None:
    flow.last = max(flow.last, segment.time)
    if segment.has(SYN):
        if from_client and not segment.has(ACK):
            flow.syns = (flow.syns or 0) + 1
        elif not from_client and segment.has(ACK):
            flow.answered = True
        return
    if segment.has(RST):
        if from_client:
            flow.client_resets += 1
        else:
            flow.server_resets += 1
        return
    if segment.payload:
        mark = (from_client, segment.sequence, segment.payload)
        if mark in flow._seen:
            flow.retransmissions += 1
            return
        flow._seen.add(mark)
        if from_client:
            flow.bytes_up += segment.payload
        else:
            flow.bytes_down += segment.payload
