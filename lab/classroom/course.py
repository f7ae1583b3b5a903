"""A course: the trainer's ordered list of cases, from `--cases a,b,c` or a small YAML file.

The file is deliberately tiny:

    title: Mail delivery, week 1
    cases: [happy-path, blocked-port-25, bad-recipient]

Every id must name a scenario of the catalog; a mistake is one line naming the
file and the id (with a "did you mean"), never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from lab.catalog import find_scenario
from lab.errors import UnknownScenario, UsageError


@dataclass(frozen=True)
class Course:
    """Cases in the order the trainer wants them worked."""

    cases: tuple[str, ...]
    title: str = ""


def _checked(ids: list[str], where: str) -> tuple[str, ...]:
    if not ids:
        raise UsageError(f"{where}: a course needs at least one case")
    seen: list[str] = []
    for case in ids:
        try:
            find_scenario(case)
        except UnknownScenario as error:
            raise UsageError(f"{where}: {error}") from error
        if case in seen:
            raise UsageError(f"{where}: {case!r} is listed twice")
        seen.append(case)
    return tuple(seen)


def parse_cases(text: str) -> Course:
    """`a,b,c` (from `--cases`) as a course."""
    ids = [part.strip() for part in text.split(",") if part.strip()]
    return Course(_checked(ids, "--cases"))


def load_course(path: Path) -> Course:
    """A course file: `cases` (a list of scenario ids) and an optional `title`."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"{path}: cannot read the course: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise UsageError(f"{path}: not valid YAML: {error}".splitlines()[0]) from error
    if isinstance(data, list):
        data = {"cases": data}
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise UsageError(f"{path}: cases: expected a list of scenario ids")
    unknown = sorted(set(data) - {"cases", "title"})
    if unknown:
        raise UsageError(f"{path}: {unknown[0]}: unknown key (a course has cases and title)")
    cases = [str(case) for case in data["cases"]]
    return Course(_checked(cases, str(path)), str(data.get("title") or ""))


def course_option(cases: str | None, course_file: str | None) -> Course | None:
    """The course given on the command line (`--cases` or `--course FILE`), if any."""
    if cases and course_file:
        raise UsageError("give either --cases or --course, not both")
    if cases:
        return parse_cases(cases)
    if course_file:
        return load_course(Path(course_file))
    return None


__all__ = ["Course", "course_option", "load_course", "parse_cases"]
