"""The scenario catalog: find scenario files by id or path."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from lab.config import settings
from lab.errors import ScenarioError, UnknownScenario
from lab.scenario.loader import load_scenario
from lab.scenario.model import Scenario


def scenario_files(directory: Path | None = None) -> list[Path]:
    """Every `*.yaml` scenario in the catalog directory, sorted by name."""
    directory = directory or settings.scenarios_dir
    return sorted(directory.glob("*.yaml"))


def find_scenario(reference: str, directory: Path | None = None) -> Path:
    """The file for an id ("blocked-port-25") or a path to a scenario file.

    Raises:
        UnknownScenario: neither a file nor an id in the catalog.
    """
    path = Path(reference)
    if path.suffix in (".yaml", ".yml") or path.exists():
        # A FIFO or a device is the loader's to refuse, with its reason.
        if not path.exists():
            raise UnknownScenario(f"{reference}: no such scenario file")
        return path
    directory = directory or settings.scenarios_dir
    candidate = directory / f"{reference}.yaml"
    if candidate.is_file():
        return candidate
    names = [p.stem for p in scenario_files(directory)]
    close = difflib.get_close_matches(reference, names, n=1, cutoff=0.6)
    if close:
        raise UnknownScenario(f"unknown scenario {reference!r}; did you mean {close[0]!r}?")
    known = ", ".join(names) or "none"
    raise UnknownScenario(f"unknown scenario {reference!r}; known: {known}")


SCENARIO_SUFFIXES = (".yaml", ".yml")


def scenario_paths(references: list[str]) -> list[Path]:
    """The files that `references` name: a directory stands for its `*.yaml` files, ids and
    files for themselves; none at all for the whole catalog.

    Raises:
        UnknownScenario: an unknown id or file, or a directory without scenario files.
    """
    if not references:
        return scenario_files()
    paths: list[Path] = []
    for reference in references:
        path = Path(reference)
        if path.suffix in SCENARIO_SUFFIXES and os.path.lexists(path) and not path.is_file():
            # Named as a file but not one (a directory, a FIFO, a dangling or looping
            # symlink): the loader says which, as `file: what`.
            paths.append(path)
        elif path.is_dir():
            found = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            if not found:
                raise UnknownScenario(f"{reference}: no scenario files (*.yaml) in this directory")
            paths += found
        else:
            paths.append(find_scenario(reference))
    return paths


def load(reference: str) -> Scenario:
    """Find and load a scenario by id or path."""
    return load_scenario(find_scenario(reference))


def load_catalog(directory: Path | None = None) -> tuple[list[Scenario], list[ScenarioError]]:
    """Every valid scenario, and the errors of the invalid ones."""
    scenarios: list[Scenario] = []
    errors: list[ScenarioError] = []
    for path in scenario_files(directory):
        try:
            scenarios.append(load_scenario(path))
        except ScenarioError as error:
            errors.append(error)
    return scenarios, errors


def broken_summary(error: ScenarioError) -> tuple[str, str]:
    """A broken catalog file as (the id it would have had, "first problem (+N more)")."""
    first = error.problems[0]
    more = f" (+{len(error.problems) - 1} more)" if len(error.problems) > 1 else ""
    return Path(first.file).stem, f"{first}{more}"
