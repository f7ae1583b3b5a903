"""Servers that come back (`down: {until: 30m}`) on the local backend: when each is switched
on again, and the path verdict while it is still off. The docker backend plays the same
with a firewall its init script opens later (`lab.runtime.docker.commands`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from lab.topology import Action, Topology
from lab.topology.paths import Verdict


@dataclass
class Downtimes:
    """Node name -> the monotonic time it answers again."""

    until: dict[str, float] = field(default_factory=dict)

    def start(self, topology: Topology) -> None:
        """The lab is up: each server that comes back is off from now for its time."""
        now = time.monotonic()
        for name, node in topology.nodes.items():
            if node.back_after is not None:
                self.until[name] = now + node.back_after

    def apply(self, verdict: Verdict) -> Verdict:
        """`verdict`, or a drop while its target is still off (as a switched-off host)."""
        target = verdict.target
        if target is not None and time.monotonic() < self.until.get(target, 0.0):
            return replace(verdict, action=Action.DROP, reason=f"{target} is switched off")
        return verdict
