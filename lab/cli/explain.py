"""`smtplab explain`: from an error text a customer pasted to the catalog's causes.

The text comes from the argument, a file (`--file bounce.eml`) or standard input
(`-`). Exit 0 when a cause is named, 3 when the text matches none (it then shows
what it recognised), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lab.cli.common import add_command, out
from lab.errors import UsageError

if TYPE_CHECKING:
    from lab.cli.common import Commands

EXIT_UNKNOWN = 3
MAX_BYTES = 5_000_000


def add_parsers(commands: Commands) -> None:
    """Register `explain`."""
    sub = add_command(
        commands,
        "explain",
        cmd_explain,
        "From a pasted error text (reply, bounce, log line, exception) to ranked causes.",
    )
    sub.add_argument("text", nargs="?", metavar="TEXT", help="the error text, or - for stdin")
    sub.add_argument("--file", type=Path, metavar="F", help="read the text from a file (.eml, log)")
    sub.add_argument("--json", action="store_true", help="machine-readable output")


def read_text(args: argparse.Namespace) -> str:
    """The text to explain, from exactly one of TEXT, --file, or - (stdin).

    Raises:
        UsageError: none or two sources, an unreadable file, or an empty text.
    """
    if args.file is not None and args.text is not None:
        raise UsageError("explain: give the text or --file F, not both")
    if args.file is not None:
        try:
            raw: bytes = args.file.read_bytes()[:MAX_BYTES]
        except OSError as error:
            raise UsageError(f"explain: cannot read {args.file}: {error.strerror}") from None
        text: str = raw.decode("utf-8", errors="replace")
    elif args.text == "-":
        text = sys.stdin.read(MAX_BYTES)
    elif args.text is not None:
        text = str(args.text)
    else:
        raise UsageError("explain: give the error text, --file F, or - to read standard input")
    if not text.strip():
        raise UsageError("explain: the text is empty")
    return text


def cmd_explain(args: argparse.Namespace) -> int:
    """`smtplab explain TEXT | --file F | - [--json]`."""
    from lab.explain import explain
    from lab.explain.report import answer, as_text
    from lab.explain.scenarios import scenario_for

    recognised, candidates = explain(read_text(args))
    data = answer(recognised, candidates, scenario_for)
    if args.json:
        out.print(json.dumps(data, indent=2), markup=False, soft_wrap=True)
    else:
        out.print(as_text(data), markup=False, soft_wrap=True)
    return 0 if candidates else EXIT_UNKNOWN
