"""SMTP replies as data: `SmtpReply`, reply-line parsing, RFC 3463 codes and EHLO keywords.

Pure functions and values, no I/O: the session reads lines off the wire and
hands them here. A line that is not `NNN[ -]text` with a 2xx-5xx code raises
`MalformedReply`, so that a web server or a TLS port is never taken for SMTP.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lab.smtp.errors import MalformedReply

_REPLY_LINE = re.compile(r"(?P<code>[2-5][0-5]\d)(?:(?P<sep>[ -])(?P<text>.*))?", re.DOTALL)
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")


@dataclass(frozen=True)
class SmtpReply:
    """A complete server reply: the code, the text of each line, the RFC 3463 code if any.

    `lines` holds the text after `NNN-`/`NNN ` of every line, enhanced code
    included, exactly as the server sent it (control characters escaped).
    """

    code: int
    lines: list[str]
    enhanced: str | None = None

    @classmethod
    def parse(cls, raw_lines: Sequence[str]) -> SmtpReply:
        """A reply from its wire lines (without CRLF).

        Raises:
            MalformedReply: a line is not `NNN[ -]text`, codes differ between
                lines, or a continuation line ends the reply.
        """
        if not raw_lines:
            raise MalformedReply(None, "empty reply", "")
        code: int | None = None
        texts: list[str] = []
        for index, raw in enumerate(raw_lines):
            line_code, final, text = parse_reply_line(raw)
            if code is not None and line_code != code:
                raise MalformedReply(None, f"reply code changed from {code} to {line_code}", raw)
            if final != (index == len(raw_lines) - 1):
                raise MalformedReply(None, "continuation and final lines out of order", raw)
            code = line_code
            texts.append(text)
        assert code is not None
        return cls(code, texts, _enhanced_code(code, texts[0]))

    @property
    def text(self) -> str:
        """The text of all lines, joined by newlines (enhanced code included)."""
        return "\n".join(self.lines)

    @property
    def message(self) -> str:
        """The text of all lines on one line, without the enhanced codes: for people."""
        parts = [_ENHANCED.sub("", line, count=1).strip() for line in self.lines]
        return " ".join(part for part in parts if part)

    @property
    def is_positive(self) -> bool:
        """2xx: the command succeeded."""
        return 200 <= self.code < 300

    @property
    def is_intermediate(self) -> bool:
        """3xx: the server waits for more (354 after DATA, 334 during AUTH)."""
        return 300 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        """4xx: refused for now; trying again later may work."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """5xx: refused; the same command will fail again."""
        return 500 <= self.code < 600

    @property
    def is_error(self) -> bool:
        """4xx or 5xx."""
        return self.code >= 400

    def wire_lines(self) -> list[str]:
        """The reply as it was on the wire, one string per line, without CRLF."""
        last = len(self.lines) - 1
        return [
            f"{self.code}{' ' if i == last else '-'}{text}" for i, text in enumerate(self.lines)
        ]

    def __str__(self) -> str:
        return f"{self.code} {' '.join(self.lines)}".rstrip()

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {"code": self.code, "enhanced": self.enhanced, "lines": list(self.lines)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SmtpReply:
        """The reverse of `to_json`."""
        return cls(int(data["code"]), [str(line) for line in data["lines"]], data.get("enhanced"))


def parse_reply_line(line: str) -> tuple[int, bool, str]:
    """`(code, is_final, text)` of one reply line such as `250-SIZE 10240000`.

    Raises:
        MalformedReply: not an SMTP reply line (the code must be 2xx-5xx).
    """
    match = _REPLY_LINE.fullmatch(line)
    if match is None:
        raise MalformedReply(None, f"not an SMTP reply: {line[:80]!r}", line)
    return int(match["code"]), match["sep"] != "-", match["text"] or ""


def _enhanced_code(code: int, first_line: str) -> str | None:
    """The RFC 3463 code opening the first line, if its class agrees with the basic code."""
    match = _ENHANCED.match(first_line)
    if match is None or int(match.group(1)) != code // 100:
        return None
    return match.group(0)


def parse_extensions(reply: SmtpReply) -> dict[str, str]:
    """EHLO keywords and their parameters: `{"SIZE": "10240000", "STARTTLS": ""}`.

    The first line is the server's greeting. Old servers advertise `AUTH=LOGIN`
    (a Microsoft-era variant); it is merged into `AUTH` when no plain `AUTH` line exists.
    """
    extensions: dict[str, str] = {}
    legacy_auth: list[str] = []
    for line in reply.lines[1:]:
        parts = line.strip().split(None, 1)
        if not parts:
            continue
        keyword = parts[0].upper()
        params = parts[1].strip() if len(parts) > 1 else ""
        if keyword.startswith("AUTH="):
            legacy_auth.append(" ".join(filter(None, (keyword[5:], params))))
            continue
        extensions[keyword] = params
    if legacy_auth and "AUTH" not in extensions:
        extensions["AUTH"] = " ".join(legacy_auth)
    return extensions
