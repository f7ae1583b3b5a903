"""smtp-lab's Textual front end: a scenario library, briefings, and a diagnosis workbench.

Start it with `smtplab tui`; build it in code (tests, textual-serve) with
`tui.app.make_app`. Importing this package imports nothing heavy: Textual is
loaded by `tui.app` only.
"""
