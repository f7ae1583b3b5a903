"""What the screens need from the app, as small protocols, so that no screen imports `tui.app`.

The app (`tui.app.SmtpLabApp`) owns the running lab, the training session and
the changes of screen. It hands each screen it builds a reference to itself,
typed as the narrow host that screen needs: mypy checks the app against each
protocol where the screen is built, and the screens depend on this module
only, which keeps `tui/` free of import cycles (tests/tui/test_import_graph.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lab.diagnosis.events import Diagnosis, Step
    from lab.runtime.base import Lab
    from lab.scenario.model import MailSettings, Scenario
    from tui.training import Choice, TrainingSession

Diagnose = Callable[["Lab", "MailSettings"], AsyncIterator["Step | Diagnosis"]]
Progress = Callable[[str], None]


class LibraryHost(Protocol):
    """What the library shows (backend, training score) and where Enter leads."""

    @property
    def backend_label(self) -> str:
        """The backend labs will run on, as the user would name it."""
        ...

    @property
    def training(self) -> TrainingSession | None:
        """The training session; None outside training mode."""
        ...

    @property
    def course(self) -> tuple[str, ...]:
        """The trainer's cases in order; empty: the whole catalog by level."""
        ...

    def open_briefing(self, scenario: Scenario) -> None:
        """Show a case's ticket and topology."""
        ...

    def open_explain(self) -> None:
        """Show the "paste an error" screen."""
        ...


class BriefingHost(Protocol):
    """The briefing starts the lab through the app, which owns it."""

    @property
    def backend_label(self) -> str:
        """The backend labs will run on, as the user would name it."""
        ...

    @property
    def training(self) -> TrainingSession | None:
        """The training session (its briefings hide the faults); None outside training mode."""
        ...

    async def bring_up(self, scenario: Scenario, progress: Progress | None = None) -> Lab:
        """Take any running lab down, then start `scenario`'s."""
        ...

    def open_workbench(self, scenario: Scenario, lab: Lab) -> None:
        """Replace the briefing with the workbench of the lab that just came up."""
        ...


class WorkbenchHost(Protocol):
    """The engine, the clock and the training session the workbench works with."""

    @property
    def diagnose(self) -> Diagnose:
        """The diagnosis engine."""
        ...

    @property
    def clock(self) -> Callable[[], float]:
        """Monotonic seconds, for timing cases."""
        ...

    @property
    def show_timings(self) -> bool:
        """False renders no durations (stable snapshots)."""
        ...

    @property
    def training(self) -> TrainingSession | None:
        """The training session; None outside training mode."""
        ...

    def cause_choices(
        self, scenario: Scenario, expected: str, diagnosis: Diagnosis
    ) -> list[Choice]:
        """The short list the trainee picks from: the right cause and look-alikes."""
        ...

    def close_workbench(self) -> None:
        """Back to the library; the lab goes down in the background."""
        ...

    async def bring_up(self, scenario: Scenario, progress: Progress | None = None) -> Lab:
        """Take any running lab down, then start `scenario`'s (the repaired case's)."""
        ...

    def open_workbench(self, scenario: Scenario, lab: Lab) -> None:
        """Replace this workbench with one for the lab that just came up."""
        ...
