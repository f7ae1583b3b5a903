"""`smtplab list` and `smtplab validate`: the scenario catalog as a table or JSON, and
scenario files checked without starting anything."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from lab.catalog import broken_summary, load_catalog, scenario_paths
from lab.cli.common import WIDE_TABLE, add_command, err, fitted_table, out
from lab.config import settings
from lab.errors import ScenarioError, UsageError
from lab.scenario.loader import load_scenario

if TYPE_CHECKING:
    from lab.cli.common import Commands


def add_parsers(commands: Commands) -> None:
    """Register `list` and `validate`."""
    sub = add_command(commands, "list", cmd_list, "List the scenarios in the catalog.")
    sub.add_argument("--json", action="store_true", help="machine-readable output")

    sub = add_command(
        commands,
        "validate",
        cmd_validate,
        "Check scenario files (a directory: its *.yaml files); all of the catalog by default.",
    )
    sub.add_argument("paths", nargs="*", metavar="PATH|DIR|ID")


def cmd_list(args: argparse.Namespace) -> int:
    """`smtplab list`: a broken file is listed as broken, with its first problem; the others
    are listed as usual (`validate` is the command that fails on a broken file)."""
    scenarios, errors = load_catalog()
    broken = [broken_summary(error) for error in errors]
    if args.json:
        rows: list[dict[str, object]] = [
            {
                "id": s.id,
                "title": s.title,
                "level": str(s.level),
                "tags": s.tags,
                "outcome": str(s.expect.outcome),
            }
            for s in scenarios
        ]
        rows.extend({"id": stem, "broken": True, "error": text} for stem, text in broken)
        out.print_json(json.dumps(rows))
    else:
        from rich.text import Text

        wide = out.width >= WIDE_TABLE
        columns = ["id", "title", "level", *(["expected", "tags"] if wide else [])]
        table = fitted_table(f"Scenarios in {settings.scenarios_dir}", columns)
        for s in scenarios:
            more = [str(s.expect.outcome), ", ".join(s.tags)] if wide else []
            cells = (s.id, s.title, str(s.level), *more)
            table.add_row(*(Text(cell) for cell in cells))  # a title is not markup
        for stem, text in broken:
            blank = ["-", ""] if wide else []
            table.add_row(Text(stem), Text(f"broken: {text}", style="red"), "-", *blank)
        out.print(table)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """`smtplab validate [PATH...]`."""
    paths = scenario_paths(args.paths)
    if not paths:
        raise UsageError(f"no scenario files in {settings.scenarios_dir}")
    failed = 0
    for path in paths:
        try:
            load_scenario(path)
        except ScenarioError as error:
            failed += 1
            for problem in error.problems:
                err.print(str(problem), markup=False)
        else:
            out.print(f"ok  {path}", markup=False)
    return 2 if failed else 0
