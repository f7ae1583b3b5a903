"""What every node program returns when started: where it listens, and how to stop it."""

from __future__ import annotations

from typing import Protocol


class RunningNode(Protocol):
    """A started node. `ports` maps each lab port to the port actually bound."""

    @property
    def ports(self) -> dict[int, int]:
        """Lab port -> bound port (equal in containers; ephemeral in the local backend)."""
        ...

    async def stop(self) -> None:
        """Close listeners and background tasks; idempotent."""
        ...
