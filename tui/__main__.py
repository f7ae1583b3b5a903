"""`python -m tui [options]`: the same as `smtplab tui [options]`."""

from __future__ import annotations

import sys

from lab.cli import main

if __name__ == "__main__":
    sys.exit(main(["tui", *sys.argv[1:]]))
