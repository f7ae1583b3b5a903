"""The TUI's widgets, one per module; each renders data it is given and holds no lab logic."""
