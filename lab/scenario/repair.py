"""`expect.repair`: the scenario as it is once the one who must act has changed the servers.

Some faults are not the customer's to fix (a relay without its smart host login, a
partner relay that is down): no mail-program setting makes them deliver, so the proof
of the remedy is the same world with the servers changed. A repair names nodes and the
fields to change; they are merged into the scenario's own and the result validated as
a scenario of its own, so a repair can only describe a world the schema accepts.
"""

from __future__ import annotations

from typing import Any

from lab.scenario.model import Scenario


def repaired(scenario: Scenario) -> Scenario:
    """`scenario` with its `expect.repair` applied (and no repair left to apply).

    Raises:
        KeyError: the repair names a node the scenario has not.
        pydantic.ValidationError: the repaired scenario is not a valid one.
    """
    return Scenario.model_validate(repaired_data(scenario))


def repaired_data(scenario: Scenario) -> dict[str, Any]:
    """The repaired scenario as data, before validation (for error messages).

    Raises:
        KeyError: the repair names a node the scenario has not.
    """
    data = scenario.model_dump(by_alias=True, exclude_unset=True)
    patch = data["expect"].pop("repair", {})
    for name, fields in patch.items():
        if name not in data["nodes"]:
            raise KeyError(name)
        data["nodes"][name] = merged(data["nodes"][name], fields)
    return data


def merged(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """`base` with `change` laid over it: mappings merge key by key, anything else replaces."""
    result = dict(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result
