"""`smtplab`: the command-line front end. Parses arguments, calls the lab, prints.

No lab logic lives here: `entry` holds `main` and the top-level parser, `common` what
the command groups share, and one module per group (`scenarios`, `runs`, `labs`,
`image`, `diagnose`, `tui`) registers and runs its commands.
"""

from lab.catalog import find_scenario
from lab.cli.entry import main

__all__ = ["find_scenario", "main"]
