"""Node programs: one real server (or client) per role, driven by a generated config file.

Run as `python -m lab.nodes <role> <config.json>` in a container, or started
in-process by the local backend through the same `start` functions.
"""
