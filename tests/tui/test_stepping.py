"""The step feed and the topology marks, without Textual: one reveal per `n`, stale runs dropped."""

from __future__ import annotations

import pytest

from lab.diagnosis.events import Diagnosis, Probe, Status, Step
from tests.tui.helpers import VERDICT
from tui.stepping import StepFeed, step_marks
from tui.topology_art import Mark


def step(status: Status, node: str | None = None, probe: Probe = Probe.PORTS) -> Step:
    return Step(probe, status, f"{probe} {status}", "tried", {}, "proves", node=node)


def statuses(taken: list[Step] | Diagnosis) -> list[Status]:
    """The statuses of the steps `StepFeed.take` handed out at once."""
    assert isinstance(taken, list), taken
    return [step.status for step in taken]


class TestStepFeed:
    def test_a_stale_run_is_dropped(self) -> None:
        feed = StepFeed()
        old = feed.restart()
        new = feed.restart()
        assert new == old + 1
        assert not feed.add(step(Status.OK), old)
        assert not feed.pending
        assert not feed.add(step(Status.OK), new)
        assert len(feed.pending) == 1

    def test_a_waiting_trainee_gets_the_event_at_once(self) -> None:
        feed = StepFeed()
        run = feed.restart()
        feed.waiting = True
        assert feed.add(step(Status.OK), run), "reveal now"
        assert not feed.waiting
        assert not feed.add(step(Status.OK), run), "nobody waits for the second"

    def test_skipped_steps_after_a_failure_come_with_it(self) -> None:
        feed = StepFeed()
        run = feed.restart()
        events = [step(Status.SKIPPED), step(Status.SKIPPED), step(Status.OK), VERDICT]
        for event in [step(Status.FAIL), *events]:
            feed.add(event, run)
        assert statuses(feed.take()) == [Status.FAIL]
        assert statuses(feed.take()) == [Status.SKIPPED, Status.SKIPPED]
        assert not feed.verdict_next
        assert statuses(feed.take()) == [Status.OK]
        assert feed.verdict_next
        assert feed.take() is VERDICT
        assert not feed.pending

    @pytest.mark.parametrize(
        ("waiting", "error", "starved"),
        [
            (False, None, False),  # nobody waits
            (True, None, True),  # the trainee waits for an event that will never come
            (True, "engine crashed", False),  # said as the failure instead
        ],
    )
    def test_finish(self, waiting: bool, error: str | None, starved: bool) -> None:
        feed = StepFeed()
        feed.restart()
        feed.waiting = waiting
        assert feed.finish(error) is starved
        assert (feed.done, feed.error, feed.waiting) == (True, error, False)

    def test_restart_forgets_the_run(self) -> None:
        feed = StepFeed()
        run = feed.restart()
        feed.add(step(Status.OK), run)
        feed.waiting = True
        feed.finish("boom")
        feed.restart()
        assert (list(feed.pending), feed.done, feed.error, feed.waiting) == ([], False, None, False)


@pytest.mark.parametrize(
    ("steps", "selected", "failed_node", "marks"),
    [
        # OK steps leave no mark; failures and warnings stay
        ([step(Status.OK, "dns"), step(Status.FAIL, "isp")], None, None, {"isp": Mark.FAIL}),
        ([step(Status.WARN, "mx")], None, None, {"mx": Mark.WARN}),
        # the selected step's node shows, even when OK, but never over a failure
        ([step(Status.OK, "dns")], step(Status.OK, "dns"), None, {"dns": Mark.OK}),
        ([step(Status.FAIL, "isp")], step(Status.OK, "isp"), None, {"isp": Mark.FAIL}),
        # skipped and node-less steps mark nothing
        ([step(Status.SKIPPED, "mx"), step(Status.FAIL)], None, None, {}),
        # the verdict's node is the failure
        ([step(Status.WARN, "isp")], None, "isp", {"isp": Mark.FAIL}),
    ],
)
def test_step_marks(
    steps: list[Step], selected: Step | None, failed_node: str | None, marks: dict[str, Mark]
) -> None:
    assert step_marks(steps, selected, failed_node) == marks
