"""`smtplab`'s entry point: the top-level parser and `main`, which runs the chosen
command and turns every lab error into one message on stderr and an exit code (2 for
bad input), never a traceback. Each command group registers its own subcommands."""

from __future__ import annotations

import argparse

from lab import __version__
from lab.cli import (
    authoring,
    capture,
    diagnose,
    explain,
    export,
    image,
    labs,
    runs,
    scenarios,
    training,
    tui,
)
from lab.cli.common import Handler, err
from lab.errors import LabError, ScenarioError

# In this order in `smtplab --help`.
COMMAND_GROUPS = (
    scenarios,
    authoring,
    runs,
    labs,
    capture,
    export,
    image,
    diagnose,
    explain,
    tui,
    training,
)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `smtplab` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    handler: Handler = args.handler
    try:
        return handler(args)
    except ScenarioError as error:
        for problem in error.problems:
            err.print(str(problem), markup=False)
        return error.exit_code
    except LabError as error:
        err.print(f"smtplab: {error}", markup=False)
        return error.exit_code
    except KeyboardInterrupt:
        err.print("smtplab: interrupted")
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The `smtplab` parser with every command group's subcommands."""
    parser = argparse.ArgumentParser(
        prog="smtplab",
        description="Reproduce, diagnose and test SMTP failures in a lab of real servers.",
    )
    parser.add_argument("--version", action="version", version=f"smtplab {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.add_parsers(commands)
    return parser
