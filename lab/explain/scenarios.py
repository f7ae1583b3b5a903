"""Which lab scenario reproduces a catalog entry: the one whose `expect.diagnosis` names it.

Reads the scenario catalog (files on disk), once per process.
"""

from __future__ import annotations

import functools

from lab.catalog import load_catalog


@functools.cache
def reproducing_scenarios() -> dict[str, str]:
    """Catalog entry id -> the id of the first scenario (by name) that expects it."""
    scenarios, _ = load_catalog()
    found: dict[str, str] = {}
    for scenario in scenarios:
        diagnosis = scenario.expect.diagnosis
        if diagnosis and diagnosis not in found:
            found[diagnosis] = scenario.id
    return found


def scenario_for(entry_id: str) -> str | None:
    """The scenario that reproduces `entry_id`, or None when the lab has none."""
    return reproducing_scenarios().get(entry_id)
