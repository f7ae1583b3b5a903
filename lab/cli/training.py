"""`smtplab training report DIR`: the class table from the trainees' session files,
as a terminal table, Markdown for a handout, CSV for a spreadsheet or JSON for scripts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from lab.classroom.course import course_option
from lab.classroom.report import collect, rows, to_csv, to_json, to_markdown
from lab.cli.common import add_command, err, out

if TYPE_CHECKING:
    from lab.cli.common import Commands


def add_course_options(sub: argparse.ArgumentParser) -> None:
    """`--cases a,b,c` and `--course FILE`: the trainer's ordered list of cases."""
    sub.add_argument("--cases", metavar="A,B,C", help="a course: these cases, in this order")
    sub.add_argument(
        "--course", metavar="FILE", help="a course file (YAML: title, cases: [ids in order])"
    )


def add_parsers(commands: Commands) -> None:
    """Register `training report`."""
    training = commands.add_parser(
        "training", help="Training for a class: collect the trainees' scores."
    )
    groups = training.add_subparsers(title="training commands", metavar="COMMAND")
    sub = add_command(
        groups, "report", cmd_report, "The class table: each trainee's first answer per case."
    )
    sub.add_argument("directory", metavar="DIR", help="where the session files were saved")
    add_course_options(sub)
    form = sub.add_mutually_exclusive_group()
    form.add_argument("--csv", action="store_true", help="CSV, one row per trainee")
    form.add_argument("--json", action="store_true", help="machine-readable output")
    form.add_argument("--markdown", action="store_true", help="a Markdown table for a handout")
    training.set_defaults(handler=lambda _args: _usage(training))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_usage()
    return 2


def cmd_report(args: argparse.Namespace) -> int:
    """`smtplab training report DIR [--cases A,B | --course F] [--csv|--json|--markdown]`."""
    course = course_option(args.cases, args.course)
    report = collect(Path(args.directory), course.cases if course else ())
    if args.json:
        out.print_json(json.dumps(to_json(report)))
    elif args.csv:
        print(to_csv(report), end="")
    elif args.markdown:
        print(to_markdown(report), end="")
    else:
        from rich.table import Table

        header, *body = rows(report)
        table = Table(title=f"Class results ({len(report.trainees)} trainees, first answers)")
        for column in header:
            table.add_column(column, no_wrap=True)
        for row in body:
            table.add_row(*row)
        out.print(table)
    for problem in report.skipped:
        err.print(f"smtplab: skipped {problem}", markup=False)
    return 0
