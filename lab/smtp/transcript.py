"""What was said on an SMTP connection, line by line, with timings and secrets masked."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


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
