"""`smtplab tui`: arguments reach the app; an unknown case is one line, before any screen."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import cli


def test_tui_passes_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr("tui.app.run", lambda *args, **options: calls.append((args, options)) or 0)
    argv = ["tui", "--backend", "local", "--scenario", "blocked-port-25", "--training"]
    argv += ["--trainee", "ann", "--training-dir", "/tmp/class"]
    status = cli.main([*argv, "--cases", "happy-path,relay-denied"])
    assert status == 0
    assert calls == [
        (
            ("blocked-port-25", "local", True),
            {
                "training_dir": Path("/tmp/class"),
                "trainee": "ann",
                "course": ("happy-path", "relay-denied"),
            },
        )
    ]


def test_tui_unknown_scenario_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["tui", "--scenario", "no-such-case"]) == 2
    err = capsys.readouterr().err
    assert "unknown scenario 'no-such-case'" in err
    assert "Traceback" not in err


def test_tui_serve_passes_the_options_on(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[tuple[object, ...]] = []

    def fake_serve(argv: list[str], *, host: str, port: int, public_url: str | None) -> int:
        served.append((argv, host, port, public_url))
        return 0

    monkeypatch.setattr("tui.app.serve", fake_serve)
    assert cli.main(["tui", "--serve", "--port", "8123", "--training"]) == 0
    assert served == [(["--training"], "localhost", 8123, None)]
    served.clear()
    argv = ["tui", "--serve", "--host", "0.0.0.0", "--training", "--cases", "happy-path"]
    argv += ["--public-url", "http://room.example:8000", "--training-dir", "/tmp/class"]
    assert cli.main(argv) == 0
    assert served == [
        (
            ["--training", "--training-dir", "/tmp/class", "--cases", "happy-path"],
            "0.0.0.0",
            8000,
            "http://room.example:8000",
        )
    ]


def test_tui_training_options_are_checked_before_any_screen(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["tui", "--trainee", "ann"]) == 2
    assert "--trainee needs --training" in capsys.readouterr().err
    assert cli.main(["tui", "--training", "--serve", "--trainee", "ann"]) == 2
    assert "each browser asks" in capsys.readouterr().err
    assert cli.main(["tui", "--training", "--cases", "happy-path,nope-nope"]) == 2
    assert "--cases: unknown scenario 'nope-nope'" in capsys.readouterr().err


def test_served_page_points_at_a_reachable_address() -> None:
    import socket

    from tui.app import page_url

    assert page_url("localhost", 8000) == "http://localhost:8000"
    assert page_url("0.0.0.0", 8000) != "http://0.0.0.0:8000"
    assert page_url("0.0.0.0", 8000).endswith(":8000")
    assert socket.gethostname().split(".")[0] in page_url("0.0.0.0", 8000)
    assert page_url("0.0.0.0", 8000, "https://class.example/") == "https://class.example"
