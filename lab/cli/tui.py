"""`smtplab tui`: open the training TUI in this terminal or serve it in a browser.

Textual is imported only when the command runs: the rest of the CLI works without it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from lab.catalog import load
from lab.classroom.course import course_option
from lab.cli.common import add_backend_option, add_command
from lab.cli.training import add_course_options
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
    sub.add_argument("--trainee", metavar="NAME", help="training: who is answering (else asked)")
    sub.add_argument(
        "--training-dir",
        metavar="DIR",
        help="training: where score files go (default: the state directory's training/)",
    )
    add_course_options(sub)
    sub.add_argument("--serve", action="store_true", help="serve it in a browser (textual-serve)")
    sub.add_argument("--host", default="localhost", help="with --serve: address to listen on")
    sub.add_argument("--port", type=int, default=8000, help="with --serve: port (default 8000)")
    sub.add_argument(
        "--public-url",
        metavar="URL",
        help="with --serve: the address browsers use (default http://<this host's name>:PORT "
        "when listening on 0.0.0.0)",
    )


def cmd_tui(args: argparse.Namespace) -> int:
    """`smtplab tui [--backend B] [--scenario ID] [--training] [--serve [--port N]]`."""
    try:
        import tui.app  # imported here: the rest of the CLI runs without Textual
    except ImportError as error:
        raise UsageError(f"the TUI needs Textual ({error}): pip install smtp-lab") from error

    if args.scenario:
        load(args.scenario)  # an unknown id is one line on stderr, before any screen opens
    course = course_option(args.cases, args.course)  # bad ids: one line, before any screen
    training_only = [
        option
        for option, value in (("--trainee", args.trainee), ("--training-dir", args.training_dir))
        if value
    ]
    if training_only and not args.training:
        raise UsageError(f"{training_only[0]} needs --training")
    if args.serve:
        if args.trainee:
            raise UsageError("--trainee names one trainee; under --serve each browser asks")
        passed = ["--backend", args.backend] if args.backend else []
        passed += ["--scenario", args.scenario] if args.scenario else []
        passed += ["--training"] if args.training else []
        if args.training_dir:
            passed += ["--training-dir", str(Path(args.training_dir).resolve())]
        passed += ["--cases", ",".join(course.cases)] if course else []
        return tui.app.serve(passed, host=args.host, port=args.port, public_url=args.public_url)
    return tui.app.run(
        args.scenario,
        args.backend,
        args.training,
        training_dir=Path(args.training_dir) if args.training_dir else None,
        trainee=args.trainee,
        course=course.cases if course else (),
    )
