"""Sending from the workbench: the send job, the verdict's fix applied to settings, the outcome.

`post_send` runs in the workbench's worker: it sends once with the mail
program's settings, follows the message to delivery or bounce, and posts the
report with what crossed the customer's router (or one line saying why nothing
could be sent). `apply_remedy` turns
the verdict's remedy into the settings to re-send with, and `outcome_text` is
how a send's fate reads in the transcript, the status bar and the verdict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from lab.errors import LabError
from lab.scenario.model import MailSettings, MailSettingsPatch, Outcome
from tui.messages import SendFailed, SendFinished

if TYPE_CHECKING:
    from textual.message_pump import MessagePump

    from lab.diagnosis.events import Diagnosis
    from lab.runs import RunReport
    from lab.runtime.base import Lab

_GOOD = {Outcome.DELIVERED}


async def post_send(target: MessagePump, lab: Lab, settings: MailSettings, fix: bool) -> None:
    """Send once and follow the message to its fate; post the report to `target`.

    Args:
        target: receives `SendFinished`, or `SendFailed` with the message to show.
        lab: the running lab.
        settings: the mail program's settings.
        fix: the send is "apply fix and re-send" (said again in `SendFinished`).
    """
    from lab.runs import run_once
    from lab.wire.capture import customer_capture

    try:
        async with customer_capture(lab) as capture:
            report = await run_once(lab, settings)
    except LabError as error:
        target.post_message(SendFailed(str(error)))
    except Exception as error:
        target.log.error("send failed", error)
        target.post_message(SendFailed(f"{type(error).__name__}: {error}"))
    else:
        flows = capture.flows if capture is not None else None
        target.post_message(SendFinished(report, fix=fix, flows=flows))


def apply_remedy(diagnosis: Diagnosis, base: MailSettings) -> MailSettings:
    """`base` with the verdict's remedy settings applied.

    Raises:
        ValueError: the remedy does not apply to these settings.
    """
    return MailSettingsPatch.model_validate(diagnosis.remedy.settings).apply(base)


def outcome_text(report: RunReport) -> Text:
    """`✓ delivered — delivered to bob@example.net on mx` or the failure, coloured."""
    good = report.outcome in _GOOD
    text = Text()
    text.append("✓ " if good else "✗ ", style="bold green" if good else "bold red")
    text.append(str(report.outcome), style="bold green" if good else "bold red")
    if report.stage and not good:
        text.append(f" at {report.stage}")
    codes = " ".join(str(code) for code in (report.code, report.enhanced) if code)
    if codes and not good:
        text.append(f" [{codes}]", style="bold")
    text.append(f" — {report.text}")
    return text
