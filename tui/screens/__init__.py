"""The TUI's screens, one per module: library, briefing, workbench, help, training."""
