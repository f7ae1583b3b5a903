"""Stepping through a diagnosis: the engine's job, the buffer of its events, the nodes they mark.

The engine probes as fast as it can while the trainee reveals one step per
`n`. `post_diagnosis` runs the engine in the workbench's worker and posts
every event (and at the end what crossed the customer's router meanwhile);
`StepFeed` holds them back until asked for, numbers the runs (so events of a
run replaced by "diagnose again" are dropped) and remembers whether the engine
has ended and whether the trainee is waiting for it. `step_marks` says which
topology nodes the revealed steps point at, `step_ports` which ports a step
probed. Only the job touches Textual, and only to post messages.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from lab.diagnosis.events import Diagnosis, Status, Step
from lab.errors import LabError
from tui.messages import DiagnosisEvent, DiagnosisFinished
from tui.topology_art import Mark

if TYPE_CHECKING:
    from textual.message_pump import MessagePump

    from lab.runtime.base import Lab
    from lab.scenario.model import MailSettings
    from tui.host import Diagnose

_STATUS_MARKS = {Status.FAIL: Mark.FAIL, Status.WARN: Mark.WARN, Status.OK: Mark.OK}


async def post_diagnosis(
    target: MessagePump, diagnose: Diagnose, lab: Lab, settings: MailSettings, run: int
) -> None:
    """Iterate the engine, posting each step and the verdict to `target` as they come.

    The end is always posted too (`DiagnosisFinished`), with one line saying
    what went wrong when the engine failed: the app goes on.
    """
    from lab.wire.capture import customer_capture

    try:
        async with customer_capture(lab) as capture:
            async for event in diagnose(lab, settings):
                target.post_message(DiagnosisEvent(event, run))
    except LabError as error:
        target.post_message(DiagnosisFinished(run, str(error)))
    except Exception as error:  # shown in the stepper; the app goes on
        target.log.error("diagnosis failed", error)
        target.post_message(DiagnosisFinished(run, f"{type(error).__name__}: {error}"))
    else:
        flows = capture.flows if capture is not None else None
        target.post_message(DiagnosisFinished(run, flows=flows))


class StepFeed:
    """The current diagnosis run's events, buffered until the trainee reveals them."""

    def __init__(self) -> None:
        self.run = 0  # diagnosis runs; events of an older run are dropped
        self.pending: deque[Step | Diagnosis] = deque()
        self.done = False  # the engine's iterator ended
        self.error: str | None = None  # why it ended badly
        self.waiting = False  # the trainee asked for the next event before it came

    def restart(self) -> int:
        """Forget the current run; the number of the new one."""
        self.run += 1
        self.pending.clear()
        self.done = False
        self.error = None
        self.waiting = False
        return self.run

    def add(self, event: Step | Diagnosis, run: int) -> bool:
        """Buffer an event of `run`; True when the trainee is waiting for it: reveal it now."""
        if run != self.run:
            return False
        self.pending.append(event)
        if self.waiting:
            self.waiting = False
            return True
        return False

    def finish(self, error: str | None) -> bool:
        """The current run's engine ended; True when the waiting trainee gets nothing more."""
        self.done = True
        self.error = error
        starved = self.waiting and not self.pending
        if error is not None or starved:
            self.waiting = False
        return starved and error is None

    def take(self) -> list[Step] | Diagnosis:
        """The next event to reveal: the verdict, or a step with the skipped steps after it.

        Steps not reached after a failure say nothing new: they are shown with
        it, at once.
        """
        event = self.pending.popleft()
        if isinstance(event, Diagnosis):
            return event
        steps = [event]
        while (
            event.status is Status.SKIPPED
            and self.pending
            and isinstance(self.pending[0], Step)
            and self.pending[0].status is Status.SKIPPED
        ):
            event = self.pending.popleft()
            assert isinstance(event, Step)
            steps.append(event)
        return steps

    @property
    def verdict_next(self) -> bool:
        """The next event to reveal is the verdict."""
        return bool(self.pending) and isinstance(self.pending[0], Diagnosis)


def step_marks(
    steps: Iterable[Step], selected: Step | None = None, failed_node: str | None = None
) -> dict[str, Mark]:
    """Topology marks: failures and warnings of revealed steps, the selected step's node too.

    Args:
        steps: the revealed steps.
        selected: the step under the stepper's cursor (its node is marked even when OK).
        failed_node: the verdict's node, marked as the failure once the verdict shows.
    """
    marks: dict[str, Mark] = {}
    for step in steps:
        mark = _STATUS_MARKS.get(step.status)
        if step.node and mark is not None and mark is not Mark.OK:
            marks[step.node] = mark
    if selected is not None and selected.node and selected.node not in marks:
        mark = _STATUS_MARKS.get(selected.status)
        if mark is not None:
            marks[selected.node] = mark
    if failed_node:
        marks[failed_node] = Mark.FAIL
    return marks


def step_ports(step: Step) -> set[int]:
    """The TCP ports a step probed (its evidence says), for the wire view to pick out."""
    evidence = step.evidence
    if isinstance(evidence.get("by_port"), dict):
        return {int(port) for port in evidence["by_port"]}
    port = evidence.get("port")
    return {port} if isinstance(port, int) else set()
