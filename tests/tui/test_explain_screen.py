"""The "paste an error" screen with Pilot: library → ctrl+e → paste → ctrl+r → causes → ctrl+o."""

from __future__ import annotations

from textual.widgets import Static, TextArea

from tests.tui.helpers import text_of
from tui.app import make_app
from tui.screens.briefing import BriefingScreen
from tui.screens.explain import PROMPT, ExplainScreen
from tui.screens.library import LibraryScreen

SIZE = (120, 40)
BOUNCE_LINE = "550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown"


def shown(screen: ExplainScreen) -> str:
    return text_of(screen.query_one("#explanation", Static)).strip()


async def test_paste_explain_and_open_the_reproducing_case() -> None:
    app = make_app(backend="local")
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, LibraryScreen)
        await pilot.press("ctrl+e")
        screen = app.screen
        assert isinstance(screen, ExplainScreen)
        await pilot.press("ctrl+r")  # nothing pasted yet: the prompt stays
        assert shown(screen) == PROMPT

        screen.query_one("#error-text", TextArea).insert(BOUNCE_LINE)
        await pilot.press("ctrl+r")
        text = shown(screen)
        assert text.startswith("1. The recipient's mailbox does not exist  [unknown-user]")
        assert "reproduce: smtplab tui --scenario bad-recipient" in text
        assert screen.result is not None
        assert screen.result["candidates"][0]["scenario"] == "bad-recipient"

        await pilot.press("ctrl+o")
        await pilot.pause()
        assert isinstance(app.screen, BriefingScreen)
        assert app.screen.scenario.id == "bad-recipient"
    assert app.lab is None, "explaining starts no lab"


async def test_an_unknown_text_names_nothing_and_escape_goes_back() -> None:
    app = make_app(backend="local")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+e")
        screen = app.screen
        assert isinstance(screen, ExplainScreen)
        screen.query_one("#error-text", TextArea).insert("the printer says 550")
        await pilot.press("ctrl+r")
        assert shown(screen).startswith("Unknown: this text matches no known cause.")
        await pilot.press("ctrl+o")  # no case to open: a notification, same screen
        await pilot.pause()
        assert app.screen is screen
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, LibraryScreen)
