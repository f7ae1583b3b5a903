"""Snapshots of the main screens at 120x40 and 80x24 (pytest-textual-snapshot).

Deterministic by construction: a pinned catalog for the library, the
scenario's own files for the briefing, and for the workbench a hand-made
engine (fixed steps, no timings rendered) so nothing depends on clocks,
temporary paths, random ports or which probe finishes first.
Update after an intended change with `pytest tests/tui --snapshot-update`.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from textual.pilot import Pilot

from tests.tui.helpers import idle_engine, scripted_engine, wait_for
from tui.app import make_app
from tui.screens.briefing import BriefingScreen
from tui.screens.workbench import WorkbenchScreen

SIZE = (120, 40)
SnapCompare = Callable[..., bool]

pytestmark = pytest.mark.usefixtures("pinned_catalog")


@pytest.fixture(params=[SIZE, (80, 24)], ids=["120x40", "80x24"])
def size(request: pytest.FixtureRequest) -> tuple[int, int]:
    """Both terminal sizes: a roomy one, and the smallest a trainee's terminal has."""
    size: tuple[int, int] = request.param
    return size


def test_library(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    """The library: id, title, level (and tags where they fit) of each case."""
    assert snap_compare(make_app(backend="local"), terminal_size=size)


def test_library_filtered(snap_compare: SnapCompare) -> None:
    """Typing on the list filters it."""
    assert snap_compare(make_app(backend="local"), press=list("port-25"), terminal_size=SIZE)


def test_briefing(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    """Ticket, mail program settings, topology and Start lab."""

    async def open_case(pilot: Pilot[None]) -> None:
        await pilot.press(*"blocked")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, BriefingScreen))

    assert snap_compare(make_app(backend="local"), run_before=open_case, terminal_size=size)


async def _to_workbench(pilot: Pilot[None]) -> None:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, BriefingScreen))
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, WorkbenchScreen))
    await pilot.pause()


def test_workbench(snap_compare: SnapCompare) -> None:
    """The workbench as the lab comes up: form, topology, stepper waiting for n."""
    app = make_app("blocked-port-25", "local", False, diagnose=idle_engine)
    assert snap_compare(app, run_before=_to_workbench, terminal_size=SIZE)


def test_workbench_verdict(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    """Stepped to the verdict: the failing step, the ISP marked, the remedy.

    At 80x24 the settings and topology are tabs; the diagnosis and verdict stay in view."""

    async def to_verdict(pilot: Pilot[None]) -> None:
        await _to_workbench(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, WorkbenchScreen)
        for _ in range(4):
            await pilot.press("n")
            await wait_for(pilot, lambda: not screen.want_next)
        assert screen.diagnosis is not None
        await pilot.press("up")  # back to the failing step: its detail and transcript show
        await pilot.pause()

    app = make_app("blocked-port-25", "local", False, diagnose=scripted_engine, show_timings=False)
    assert snap_compare(app, run_before=to_verdict, terminal_size=size)
