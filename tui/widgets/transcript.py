"""The SMTP transcript: client and server lines told apart, reply codes coloured, timings.

It renders `TranscriptLine`s as the lab recorded them (secrets are masked
before they ever reach a transcript) plus, for a whole send, the time each
stage took.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from lab.smtp.transcript import MARKERS, Direction, TranscriptLine

STAGES_PER_LINE = 4
_DIRECTION_STYLES = {
    Direction.CLIENT: "bold cyan",
    Direction.SERVER: "bold green",
    Direction.NOTE: "dim",
}


def reply_style(code: str) -> str:
    """Colour of a reply code: 2xx/3xx fine, 4xx temporary, 5xx permanent."""
    return {"2": "bold green", "3": "bold cyan", "4": "bold yellow", "5": "bold red"}.get(
        code[:1], "bold"
    )


def timing(seconds: float) -> str:
    """A fixed-width time: `  0.012s`."""
    return f"{seconds:7.3f}s"


def transcript_text(
    lines: Sequence[TranscriptLine],
    *,
    timings: bool = True,
    stages: Mapping[str, float] | None = None,
) -> Text:
    """The transcript as styled text; `stages` adds a per-stage timing line at the end."""
    text = Text()
    for line in lines:
        if timings:
            text.append(f"{timing(line.at)} ", style="dim")
        text.append(f"{MARKERS[line.direction]} ", style=_DIRECTION_STYLES[line.direction])
        body = line.text
        if line.direction is Direction.SERVER and body[:3].isdigit():
            text.append(body[:3], style=reply_style(body))
            text.append(body[3:])
        elif line.direction is Direction.CLIENT:
            text.append(body, style="cyan")
        else:
            text.append(body, style="italic dim" if line.direction is Direction.NOTE else "")
        text.append("\n")
    if stages:
        # Several short lines: the transcript does not wrap (long lines scroll sideways).
        parts = [f"{stage} {timing(seconds).strip()}" for stage, seconds in stages.items()]
        for start in range(0, len(parts), STAGES_PER_LINE):
            text.append("stages: " if start == 0 else "        ", style="bold")
            text.append(" · ".join(parts[start : start + STAGES_PER_LINE]), style="dim")
            text.append("\n")
    return text


class TranscriptView(VerticalScroll):
    """A titled, scrollable transcript; `show` replaces what is shown."""

    DEFAULT_CSS = """
    TranscriptView {
        height: 1fr;
    }
    TranscriptView > #transcript-title {
        text-style: bold;
        color: $text-muted;
    }
    TranscriptView > #transcript-body {
        width: auto;
        min-width: 100%;
    }
    """

    def __init__(
        self,
        placeholder: str = "No transcript yet.",
        *,
        name: str | None = None,
        id: str | None = None,  # noqa: A002 (Textual's own parameter name)
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._placeholder = placeholder
        self.lines: tuple[TranscriptLine, ...] = ()
        self.title = ""

    def compose(self) -> ComposeResult:
        yield Static("", id="transcript-title")
        yield Static(Text(self._placeholder, style="dim"), id="transcript-body")

    def show(
        self,
        title: str,
        lines: Sequence[TranscriptLine],
        *,
        stages: Mapping[str, float] | None = None,
        footer: Text | str | None = None,
    ) -> None:
        """Show `lines` under `title`, scrolled to the end (the last reply matters most)."""
        self.title = title
        self.lines = tuple(lines)
        self.query_one("#transcript-title", Static).update(title)
        body = transcript_text(lines, stages=stages) if lines else Text("(no SMTP dialogue)", "dim")
        if footer:
            body.append_text(footer if isinstance(footer, Text) else Text(footer))
        self.query_one("#transcript-body", Static).update(body)
        self.call_after_refresh(self.scroll_end, animate=False)

    def show_note(self, title: str, note: str) -> None:
        """Show a message instead of a transcript (e.g. while sending)."""
        self.title = title
        self.lines = ()
        self.query_one("#transcript-title", Static).update(title)
        self.query_one("#transcript-body", Static).update(Text(note, style="italic"))
