"""What was said on an SMTP connection, line by line, with timings and secrets masked.

Also how text is made fit for a transcript line: control characters escaped
and seconds written as people read them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class Direction(StrEnum):
    """Who wrote a transcript line."""

    CLIENT = "C"
    SERVER = "S"
    NOTE = "*"  # an event that is not a protocol line: connected, TLS established, timeout


# swaks-like prefixes shown before each line
MARKERS = {Direction.CLIENT: "C:", Direction.SERVER: "S:", Direction.NOTE: "**"}


@dataclass(frozen=True)
class TranscriptLine:
    """One line: seconds since the session started, who, and the text (already masked)."""

    at: float
    direction: Direction
    text: str

    def render(self) -> str:
        """swaks-like: `  0.012 S: 220 mail.example.com ESMTP`."""
        return f"{self.at:8.3f} {MARKERS[self.direction]} {self.text}"


@dataclass
class Transcript:
    """The ordered lines of one session."""

    lines: list[TranscriptLine] = field(default_factory=list)

    def render(self) -> str:
        """All lines, one per row."""
        return "\n".join(line.render() for line in self.lines)

    def to_json(self) -> list[dict[str, object]]:
        """Plain data for `--json` output and result files."""
        return [
            {"at": round(line.at, 4), "dir": str(line.direction), "text": line.text}
            for line in self.lines
        ]


def printable(text: str) -> str:
    """Control characters escaped, so that junk cannot garble a terminal or the TUI."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group(0)):02x}", text)


def format_seconds(seconds: float) -> str:
    """Seconds as people read them in a transcript: 3.0, 0.3, 0.25."""
    return f"{seconds:.1f}" if round(seconds, 1) == seconds else f"{seconds:g}"
