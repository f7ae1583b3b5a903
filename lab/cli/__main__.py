"""`python -m lab.cli`: the `smtplab` command, as the TUI's browser server and tests run it."""

import sys

from lab.cli.entry import main

if __name__ == "__main__":
    sys.exit(main())
