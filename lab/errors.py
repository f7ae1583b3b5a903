"""The error hierarchy: every error a user can cause has a message fit to print."""

from __future__ import annotations

from dataclasses import dataclass

# A broken file can have thousands of problems; the first ones are what a person fixes.
MAX_PROBLEMS = 20


class LabError(Exception):
    """Base of every error smtp-lab reports to a user instead of a traceback."""

    exit_code = 1


class ScenarioError(LabError):
    """A scenario file cannot be used; carries one problem per line."""

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        if len(problems) > MAX_PROBLEMS:
            rest = len(problems) - MAX_PROBLEMS
            problems = [
                *problems[:MAX_PROBLEMS],
                Problem(problems[0].file, None, "", f"... and {rest} more problems"),
            ]
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a scenario file: where, which key, what."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        """One line, whatever the file holds: control characters escaped, long parts cut."""
        file, key, message = _one_line(self.file, 200), _one_line(self.key, 120), self.message
        where = f"{file}:{self.line}" if self.line else file
        message = _one_line(message, 400)
        return f"{where}: {key}: {message}" if key else f"{where}: {message}"


def _one_line(text: str, limit: int) -> str:
    """`text` with line breaks and other control characters escaped, at most `limit` long."""
    if text.isprintable() and len(text) <= limit:
        return text
    shown = "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


class UnknownScenario(LabError):
    """No scenario of that id in the catalog and no such file."""

    exit_code = 2


class UsageError(LabError):
    """A command-line argument that cannot be honoured."""

    exit_code = 2


class BackendUnavailable(LabError):
    """The requested runtime backend cannot run here (e.g. no Docker engine)."""

    exit_code = 3


class LabStartError(LabError):
    """A lab did not come up: a node failed its readiness check."""

    exit_code = 3


class NoSuchLab(LabError):
    """No running lab with that id."""

    exit_code = 2
