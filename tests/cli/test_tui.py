"""`smtplab tui`: arguments reach the app; an unknown case is one line, before any screen."""

from __future__ import annotations

import pytest

from lab import cli


def test_tui_passes_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr("tui.app.run", lambda *args: calls.append(args) or 0)
    status = cli.main(["tui", "--backend", "local", "--scenario", "blocked-port-25", "--training"])
    assert status == 0
    assert calls == [("blocked-port-25", "local", True)]


def test_tui_unknown_scenario_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["tui", "--scenario", "no-such-case"]) == 2
    err = capsys.readouterr().err
    assert "unknown scenario 'no-such-case'" in err
    assert "Traceback" not in err


def test_tui_serve_passes_the_options_on(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[tuple[object, ...]] = []

    def fake_serve(argv: list[str], *, host: str, port: int) -> int:
        served.append((argv, host, port))
        return 0

    monkeypatch.setattr("tui.app.serve", fake_serve)
    assert cli.main(["tui", "--serve", "--port", "8123", "--training"]) == 0
    assert served == [(["--training"], "localhost", 8123)]
