"""Human-readable output for runs and verifications (rich renderables, no logic)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from lab.scenario.model import Outcome
from lab.smtp.transcript import MARKERS

if TYPE_CHECKING:
    from lab.runs import RunReport
    from lab.runtime.base import Endpoint
    from lab.scenario.model import MailSettings, Scenario
    from lab.smtp.transcript import Transcript
    from lab.verify import Verification

_DIRECTION_STYLE = {"C": "cyan", "S": "green", "*": "dim"}
_GOOD = {Outcome.DELIVERED}


def settings_line(settings: MailSettings) -> str:
    """The mail program's settings on one line, password never shown."""
    auth = f"auth {settings.auth.mechanism} as {settings.auth.user}" if settings.auth else "no auth"
    return (
        f"{settings.server}:{settings.port}, security {settings.security}, {auth}, "
        f"from {settings.sender} to {', '.join(settings.to)}"
    )


def transcript(lines: Transcript) -> Text:
    """The SMTP transcript, client and server lines coloured, codes bold."""
    text = Text()
    for line in lines.lines:
        text.append(f"{line.at:8.3f} ", style="dim")
        text.append(f"{MARKERS[line.direction]} ", style=_DIRECTION_STYLE[str(line.direction)])
        body = line.text
        if line.direction == "S" and body[:3].isdigit():
            style = "bold green" if body[0] in "23" else "bold red"
            text.append(body[:3], style=style)
            text.append(body[3:] + "\n")
        else:
            text.append(body + "\n")
    return text


def outcome_line(report: RunReport) -> Text:
    """`Outcome: connect-timeout at connect — connect timeout to …`."""
    style = "bold green" if report.outcome in _GOOD else "bold red"
    text = Text("Outcome: ")
    text.append(str(report.outcome), style=style)
    if report.stage:
        text.append(f" at {report.stage}")
    codes = " ".join(str(c) for c in (report.code, report.enhanced) if c)
    if codes:
        text.append(f" [{codes}]", style="bold")
    text.append(f" — {report.text}")
    return text


def run_report(scenario: Scenario, report: RunReport) -> RenderableType:
    """A scenario run: what was configured, the transcript, and what became of the mail."""
    header = Text()
    header.append(f"{scenario.id}", style="bold")
    header.append(f" — {scenario.title}  ")
    header.append(f"[{report.backend} backend]", style="dim")
    parts: list[RenderableType] = [
        header,
        Text(f"Mail program: {settings_line(report.settings)}"),
        Text(""),
        transcript(report.send.transcript),
    ]
    for fate in report.recipients:
        detail = f"{fate.address}: {fate.fate}"
        if fate.node:
            detail += f" ({fate.node})"
        if fate.status:
            detail += f", DSN status {fate.status}"
        if fate.diagnostic:
            detail += f", {fate.diagnostic}"
        parts.append(Text(detail))
    parts.append(outcome_line(report))
    return Group(*parts)


def verification_table(results: list[Verification]) -> Table:
    """One row per verified scenario."""
    table = Table(title="smtplab verify", show_lines=False)
    table.add_column("scenario")
    table.add_column("outcome")
    table.add_column("codes")
    table.add_column("fix")
    table.add_column("result")
    for result in results:
        report = result.report
        codes = " ".join(str(c) for c in (report.code, report.enhanced) if c)
        fix = str(result.fix_report.outcome) if result.fix_report else "-"
        verdict = Text("pass", style="green") if result.passed else Text("FAIL", style="bold red")
        table.add_row(result.scenario, str(report.outcome), codes, fix, verdict)
    return table


def endpoints_table(endpoints: list[Endpoint]) -> Table:
    """Where a developer's own application can connect."""
    table = Table(title="Endpoints (as seen from the customer's network)")
    table.add_column("node")
    table.add_column("lab address")
    table.add_column("connect to")
    table.add_column("what happens")
    for endpoint in endpoints:
        table.add_row(
            endpoint.node,
            f"{endpoint.lab_address}:{endpoint.lab_port}",
            f"{endpoint.host}:{endpoint.port}",
            endpoint.note,
        )
    return table
