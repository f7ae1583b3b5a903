"""How slow runtime work (image builds, lab start-up) reports progress: one line per step.

Callers that show nothing pass nothing and get `say_nothing`; the CLI passes a
printer, the TUI a message poster.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]  # receives one line per slow step


def say_nothing(message: str) -> None:
    """The default `Progress`: report nothing."""
    del message
