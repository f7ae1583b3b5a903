"""Flows from segments: the outcome a trainee should read off the wire."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from lab.wire.flows import Outcome, flows_from_segments
from lab.wire.pcap import ACK, FIN, PSH, RST, SYN, Segment

CLIENT, SERVER = IPv4Address("10.0.0.10"), IPv4Address("10.0.1.11")


def up(time: float, flags: int, seq: int = 0, payload: int = 0, port: int = 40000) -> Segment:
    return Segment(time, CLIENT, port, SERVER, 25, flags, seq, payload)


def down(time: float, flags: int, seq: int = 0, payload: int = 0, port: int = 40000) -> Segment:
    return Segment(time, SERVER, 25, CLIENT, port, flags, seq, payload)


HANDSHAKE = [up(0.0, SYN), down(0.001, SYN | ACK), up(0.002, ACK)]


@pytest.mark.parametrize(
    ("segments", "outcome", "words"),
    [
        ([up(0.0, SYN), up(1.0, SYN), up(3.0, SYN)], Outcome.UNANSWERED,
         "3 SYNs, no answer in 3.0 s"),
        ([up(0.0, SYN), down(0.001, RST | ACK)], Outcome.REFUSED, "SYN answered by RST: refused"),
        ([*HANDSHAKE, down(0.01, PSH | ACK, 1, 30), up(0.02, PSH | ACK, 1, 10),
          up(0.03, FIN | ACK, 11)], Outcome.ESTABLISHED,
         "connected; 10 bytes up, 30 bytes down"),
        ([*HANDSHAKE, up(0.01, PSH | ACK, 1, 1000), up(0.2, PSH | ACK, 1, 1000),
          down(0.3, RST)], Outcome.RESET,
         "connected; 1000 bytes up, 0 bytes down; reset by the server side; 1 retransmitted"),
        ([down(0.0, PSH | ACK, 5, 20)], Outcome.UNKNOWN, "capture began after the handshake"),
    ],
    ids=["dropped", "refused", "established", "reset-mid-data", "mid-connection"],
)  # fmt: skip
def test_outcome_and_wording(segments: list[Segment], outcome: Outcome, words: str) -> None:
    [flow] = flows_from_segments(segments)
    assert (flow.client, flow.server, flow.server_port) == (CLIENT, SERVER, 25)
    assert flow.outcome is outcome
    assert words in flow.describe()


def test_connections_are_told_apart_by_client_port_in_order_of_first_sight() -> None:
    segments = [
        up(0.0, SYN, port=40001),
        up(0.1, SYN, port=40002),
        down(0.2, RST | ACK, port=40002),
    ]
    first, second = flows_from_segments(segments)
    assert (first.client_port, first.outcome) == (40001, Outcome.UNANSWERED)
    assert (second.client_port, second.outcome) == (40002, Outcome.REFUSED)
