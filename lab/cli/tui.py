"""`smtplab tui`: open the training TUI in this terminal or serve it in a browser.

Textual is imported only when the command runs: the rest of the CLI works without it.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from lab.catalog import load
from lab.cli.common import add_backend_option, add_command
from lab.errors import UsageError

if TYPE_CHECKING:
    from lab.cli.common import Commands


def add_parsers(commands: Commands) -> None:
    """Register `tui`."""
    sub = add_command(
        commands, "tui", cmd_tui, "Open the training TUI: cases, diagnosis stepper, fixes."
    )
    add_backend_option(sub)
    sub.add_argument("--scenario", metavar="ID", help="open this case's briefing directly")
    sub.add_argument("--training", action="store_true", help="pick a cause before the verdict")
    sub.add_argument("--serve", action="store_true", help="serve it in a browser (textual-serve)")
    sub.add_argument("--host", default="localhost", help="with --serve: address to listen on")
    sub.add_argument("--port", type=int, default=8000, help="with --serve: port (default 8000)")


def cmd_tui(args: argparse.Namespace) -> int:
    """`smtplab tui [--backend B] [--scenario ID] [--training] [--serve [--port N]]`."""
    try:
        import tui.app  # imported here: the rest of the CLI runs without Textual
    except ImportError as error:
        raise UsageError(f"the TUI needs Textual ({error}): pip install smtp-lab") from error

    if args.scenario:
        load(args.scenario)  # an unknown id is one line on stderr, before any screen opens
    if args.serve:
        passed = ["--backend", args.backend] if args.backend else []
        passed += ["--scenario", args.scenario] if args.scenario else []
        passed += ["--training"] if args.training else []
        return tui.app.serve(passed, host=args.host, port=args.port)
    return tui.app.run(args.scenario, args.backend, args.training)
