"""The emulated network's account of what crossed a router (local backend): one record per
connection attempt, with the fate the topology decided and how long the client waited.
The local backend has no packets to capture; these records are its wire view."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from lab.wire.flows import Flow, Outcome


@dataclass
class WireRecord:
    """One connection attempt through `router`."""

    router: str
    client: IPv4Address  # the client's address on the router's inside
    server: IPv4Address
    port: int
    outcome: Outcome
    reason: str
    started: float = field(default_factory=time.time)
    ended: float | None = None

    def finish(self, outcome: Outcome | None = None) -> None:
        """The attempt is over (connected, timed out, refused); `outcome` overrides."""
        self.ended = time.time()
        if outcome is not None:
            self.outcome = outcome

    def flow(self) -> Flow:
        """The record as a flow, for the same summary a capture gives."""
        return Flow(
            client=self.client,
            client_port=0,
            server=self.server,
            server_port=self.port,
            first=self.started,
            last=self.ended if self.ended is not None else time.time(),
            syns=None,
            note=self.reason,
            decided=self.outcome,
        )


@dataclass
class WireLog:
    """Every record of an emulated network, in order; bounded so a long-lived lab under a
    load test does not grow without end (the oldest go first)."""

    limit: int = 10_000
    records: list[WireRecord] = field(default_factory=list)

    def add(self, record: WireRecord) -> WireRecord:
        """Keep `record` (and return it, to be finished later)."""
        self.records.append(record)
        if len(self.records) > self.limit:
            del self.records[: len(self.records) - self.limit]
        return record

    def since(self, mark: float, router: str) -> list[WireRecord]:
        """Records of `router` that began at or after `mark` (a `time.time()` value)."""
        return [r for r in self.records if r.router == router and r.started >= mark]
