"""Diagnosis output: stepwise for people (rich), JSON for machines, Markdown for tickets.

Rendering only: everything shown comes from the `Step`s and the `Diagnosis`
the engine yielded. Passwords never appear (the transcript is masked by the
SMTP session, remedy settings here).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from lab.diagnosis.events import (
    Diagnosis,
    Probe,
    Status,
    Step,
    describe_hop,
    describe_settings,
    to_json,
)
from lab.scenario.model import MailSettings
from lab.smtp.transcript import MARKERS

# swaks's exit codes by stage (2 connect, 21 banner, 22 HELO, 23 MAIL, 24 RCPT, 25 DATA,
# 28 AUTH, 29 TLS); DNS and what happens after the hand-off have none there.
EXIT_CODES: dict[Probe, int] = {
    Probe.RESOLVE: 20,
    Probe.PORTS: 2,
    Probe.BANNER: 21,
    Probe.EHLO: 22,
    Probe.MAIL: 23,
    Probe.RCPT: 24,
    Probe.DATA: 25,
    Probe.AUTH: 28,
    Probe.STARTTLS: 29,
    Probe.DELIVERY: 30,
}
_ICONS = {
    Status.OK: ("✔", "bold green"),
    Status.WARN: ("!", "bold yellow"),
    Status.FAIL: ("✘", "bold red"),
    Status.SKIPPED: ("·", "dim"),
    Status.INFO: ("i", "cyan"),
}
_DIRECTION_STYLE = {"C": "cyan", "S": "green", "*": "dim"}
MAX_TRANSCRIPT_LINES = 24


def exit_code(diagnosis: Diagnosis) -> int:
    """0 when the message went through (warnings included), else the failed stage's code."""
    if diagnosis.failed_probe is None:
        return 0
    return EXIT_CODES.get(diagnosis.failed_probe, 1)


def failed_at(diagnosis: Diagnosis) -> str:
    """Where it failed: `delivery, hop smart host relay.isp.net[…]:25`, else step (node)."""
    where = str(diagnosis.failed_probe)
    if diagnosis.hop is not None:
        return f"{where}, hop {describe_hop(diagnosis.hop)}"
    return where + (f" ({diagnosis.node})" if diagnosis.node else "")


def settings_line(settings: MailSettings) -> str:
    """The mail program's settings on one line, password never shown."""
    auth = "no login"
    if settings.auth is not None:
        auth = f"login {settings.auth.user} ({settings.auth.mechanism})"
    return (
        f"{settings.server}:{settings.port}, security {settings.security}, {auth}, "
        f"from {settings.sender} to {', '.join(settings.to)}"
    )


def _masked_settings(settings: MailSettings) -> dict[str, Any]:
    data = settings.model_dump(mode="json", by_alias=True)
    if data.get("auth"):
        data["auth"]["password"] = "****"
    return data


# --- rich ----------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def transcript_text(step: Step, limit: int = MAX_TRANSCRIPT_LINES) -> Text:
    """The step's transcript lines, client and server coloured, codes bold."""
    text = Text()
    lines = step.transcript
    shown = lines if len(lines) <= limit else (*lines[: limit - 4], *lines[-3:])
    for index, line in enumerate(shown):
        if len(lines) > limit and index == limit - 4:
            text.append(f"      … {len(lines) - limit + 1} more lines\n", style="dim")
        direction = str(line.direction)
        text.append(f"    {line.at:7.3f} ", style="dim")
        text.append(f"{MARKERS[line.direction]} ", style=_DIRECTION_STYLE[direction])
        body = line.text
        if direction == "S" and body[:3].isdigit():
            text.append(body[:3], style="bold green" if body[0] in "23" else "bold red")
            text.append(body[3:] + "\n")
        else:
            text.append(body + "\n", style="dim" if direction == "*" else "")
    text.rstrip()  # the next line of the step starts on its own
    return text


def step_renderable(step: Step, *, transcript: bool = True) -> RenderableType:
    """One step: status, title, timing, what was tried, the transcript, what it proves."""
    icon, style = _ICONS[step.status]
    head = Text()
    head.append(f"{icon} ", style=style)
    head.append(step.title, style="bold" if step.status is not Status.SKIPPED else "dim")
    if step.status is not Status.SKIPPED:
        head.append(f"  {_duration(step.duration)}", style="dim")
    if step.node:
        head.append(f"  [{step.node}]", style="dim")
    if step.status is Status.SKIPPED:
        return head
    parts: list[RenderableType] = [head]
    parts.append(Text(f"    tried:  {step.tried}", style="dim"))
    if transcript and step.transcript:
        parts.append(transcript_text(step))
    proves = Text("    proves: ")
    proves.append(step.proves, style=style if step.status is Status.FAIL else "")
    parts.append(proves)
    return Group(*parts)


def diagnosis_renderable(diagnosis: Diagnosis) -> RenderableType:
    """The verdict: root cause, explanation, remedy, fix verification, references."""
    icon, style = _ICONS[diagnosis.severity]
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    table.add_row("Root cause", diagnosis.cause)
    table.add_row("For the customer", diagnosis.explanation)
    remedy = diagnosis.remedy.text
    if diagnosis.remedy.settings:
        remedy += f"\nSettings: {describe_settings(diagnosis.remedy.settings)}"
    table.add_row("Remedy", remedy)
    table.add_row("Confirm by hand", diagnosis.confirm)
    if diagnosis.fix_verified is not None:
        verdict = Text("yes, " if diagnosis.fix_verified else "NO, ")
        verdict.stylize("bold green" if diagnosis.fix_verified else "bold red")
        verdict.append(diagnosis.fix_outcome or "")
        table.add_row("Fix verified", verdict)
    else:
        untested = diagnosis.fix_outcome or "no settings change to test"
        table.add_row("Fix verified", Text(untested, style="dim"))
    if diagnosis.failed_probe is not None:
        table.add_row("Failed at", f"{failed_at(diagnosis)}; exit code {exit_code(diagnosis)}")
    if diagnosis.references:
        table.add_row("References", "; ".join(diagnosis.references))
    if diagnosis.alternatives:
        table.add_row("Also matched", ", ".join(diagnosis.alternatives))
    title = Text()
    title.append(f"{icon} ", style=style)
    title.append(f"{diagnosis.title}  ", style="bold")
    title.append(f"[{diagnosis.entry}]", style="dim")
    return Panel(table, title=title, title_align="left", border_style=style)


def human(steps: Sequence[Step], diagnosis: Diagnosis) -> RenderableType:
    """The whole report for a terminal."""
    return Group(
        *(step_renderable(step) for step in steps), Text(""), diagnosis_renderable(diagnosis)
    )


# --- JSON ----------------------------------------------------------------------------------


def to_json_report(
    steps: Sequence[Step],
    diagnosis: Diagnosis,
    *,
    target: str = "",
    settings: MailSettings | None = None,
) -> dict[str, Any]:
    """Plain data: `diagnosis` is the catalog id; `steps`, `remedy`, `fix_verified` and more."""
    verdict = to_json(diagnosis)
    return {
        "diagnosis": diagnosis.entry,
        "title": diagnosis.title,
        "severity": str(diagnosis.severity),
        "outcome": diagnosis.outcome,
        "failed_probe": str(diagnosis.failed_probe) if diagnosis.failed_probe else None,
        "node": diagnosis.node,
        "hop": verdict["hop"],
        "exit_code": exit_code(diagnosis),
        "cause": diagnosis.cause,
        "explanation": diagnosis.explanation,
        "confirm": diagnosis.confirm,
        "remedy": verdict["remedy"],
        "fix_verified": diagnosis.fix_verified,
        "fix_outcome": diagnosis.fix_outcome,
        "references": list(diagnosis.references),
        "alternatives": list(diagnosis.alternatives),
        "target": target,
        "settings": _masked_settings(settings) if settings else None,
        "duration": diagnosis.duration,
        "steps": [_step_json(step) for step in steps],
    }


def _step_json(step: Step) -> dict[str, Any]:
    data = to_json(step)
    data["probe"] = str(step.probe)
    data["status"] = str(step.status)
    return data


# --- Markdown --------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(
    steps: Sequence[Step],
    diagnosis: Diagnosis,
    *,
    target: str = "",
    settings: MailSettings | None = None,
) -> str:
    """A report to paste into a support ticket."""
    icon = {Status.OK: "✅", Status.INFO: "ℹ️", Status.WARN: "⚠️", Status.FAIL: "❌"}.get(  # noqa: RUF001
        diagnosis.severity, ""
    )
    lines = [f"## {icon} SMTP diagnosis: {diagnosis.title} (`{diagnosis.entry}`)", ""]
    if target:
        lines.append(f"- **Diagnosed:** {target}")
    if settings is not None:
        lines.append(f"- **Mail program settings:** {settings_line(settings)}")
    where = failed_at(diagnosis) if diagnosis.failed_probe is not None else "—"
    lines.append(f"- **Outcome:** {diagnosis.outcome or '—'}; failed at: {where}")
    if diagnosis.fix_verified is None:
        fix = diagnosis.fix_outcome or "not tested (no settings change)"
    else:
        fix = ("yes" if diagnosis.fix_verified else "**no**") + f" — {diagnosis.fix_outcome}"
    lines += [f"- **Fix verified:** {fix}", ""]
    lines += ["### Root cause", "", diagnosis.cause, ""]
    lines += ["### What to tell the customer", "", diagnosis.explanation, ""]
    lines += ["### Remedy", "", diagnosis.remedy.text, ""]
    if diagnosis.remedy.settings:
        lines += [f"Settings: {describe_settings(diagnosis.remedy.settings)}", ""]
    lines += ["### How to confirm", "", f"`{diagnosis.confirm}`", ""]
    lines += [
        "### Steps",
        "",
        "| # | Step | Result | Time | What it proves |",
        "|---|------|--------|------|----------------|",
    ]
    for number, step in enumerate(steps, 1):
        lines.append(
            f"| {number} | {_cell(step.title)} | {step.status} | "
            f"{_duration(step.duration) if step.status is not Status.SKIPPED else ''} | "
            f"{_cell(step.proves)} |"
        )
    lines.append("")
    failing = next(
        (s for s in steps if s.status is Status.FAIL and s.probe is not Probe.FIX and s.transcript),
        None,
    )
    if failing is not None:
        lines += [f"### Transcript: {failing.title}", "", "```text"]
        lines += [line.render() for line in failing.transcript]
        lines += ["```", ""]
    if diagnosis.references:
        lines += ["### References", ""]
        lines += [f"- {reference}" for reference in diagnosis.references]
        lines.append("")
    if diagnosis.alternatives:
        lines += [f"_Also consistent with: {', '.join(diagnosis.alternatives)}._", ""]
    return "\n".join(lines)
