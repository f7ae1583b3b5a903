"""The error hierarchy: every error a user can cause has a message fit to print."""

from __future__ import annotations

from dataclasses import dataclass


class LabError(Exception):
    """Base of every error smtp-lab reports to a user instead of a traceback."""

    exit_code = 1


class ScenarioError(LabError):
    """A scenario file cannot be used; carries one problem per line."""

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
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
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


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
