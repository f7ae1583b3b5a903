"""Read scenario files: YAML text -> `Scenario`, every problem as `file:line: key: what`.

The YAML is composed into nodes first so that each key path keeps the line it
came from; pydantic's and the reference checker's complaints are then mapped
back to those lines.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from lab.errors import Problem, ScenarioError
from lab.scenario.checks import reference_problems
from lab.scenario.model import Scenario
from lab.scenario.repair import repaired, repaired_data
from lab.scenario.yamltree import KeyPath, MappingKey, compose, dotted, read_scenario_text


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate one scenario file.

    Raises:
        ScenarioError: with one `Problem` per thing wrong, each naming file and line.
    """
    path = Path(path)
    text = read_scenario_text(path)
    return parse_scenario(text, str(path), default_id=path.stem)


def parse_scenario(
    text: str, filename: str = "<scenario>", default_id: str | None = None
) -> Scenario:
    """Validate scenario YAML text; `default_id` fills a missing `id`."""
    data, lines = compose(text, filename)
    if not isinstance(data, dict):
        raise ScenarioError([Problem(filename, 1, "", "a scenario file must be a mapping of keys")])
    if default_id is not None:
        data.setdefault("id", default_id)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as error:
        problems = [_problem(filename, lines, data, detail) for detail in error.errors()]
        raise ScenarioError(_unique(problems)) from None
    references = reference_problems(scenario)
    if references:
        raise ScenarioError(
            [
                Problem(filename, _line_of(lines, path), dotted(path), message)
                for path, message in references
            ]
        )
    if scenario.expect.repair:
        _check_repair(scenario, filename, lines)
    return scenario


def _check_repair(scenario: Scenario, filename: str, lines: dict[KeyPath, int]) -> None:
    """The repaired world must be a valid scenario too; its problems point into the repair."""
    repair: KeyPath = ("expect", "repair")

    def in_repair(path: KeyPath) -> KeyPath:
        # nodes.relay.routing... in the repaired scenario is expect.repair.relay.routing...
        if path[:1] == ("nodes",) and len(path) > 1 and path[1] in scenario.expect.repair:
            return (*repair, *path[1:])
        return repair

    def problem(path: KeyPath, message: str) -> Problem:
        where = in_repair(path)
        return Problem(filename, _line_of(lines, where), dotted(where), f"repaired: {message}")

    try:
        fixed = repaired(scenario)
    except KeyError as error:
        name = str(error.args[0])
        where = (*repair, name)
        nodes = ", ".join(scenario.nodes)
        message = f"no node named {name!r} to repair; nodes: {nodes}"
        raise ScenarioError(
            [Problem(filename, _line_of(lines, where), dotted(where), message)]
        ) from None
    except ValidationError as error:
        data = repaired_data(scenario)
        found = []
        for detail in error.errors():
            path = _data_path(data, detail["loc"])
            found.append(problem(path, _message(detail, path, data)))
        raise ScenarioError(_unique(found)) from None
    references = reference_problems(fixed)
    if references:
        raise ScenarioError([problem(path, message) for path, message in references])


# --- pydantic errors -> problems -------------------------------------------------------------


def _problem(filename: str, lines: dict[KeyPath, int], data: Any, detail: ErrorDetails) -> Problem:
    path = _data_path(data, detail["loc"])
    message = _message(detail, path, data)
    return Problem(filename, _line_of(lines, path), dotted(path), message)


def _data_path(data: Any, loc: tuple[str | int, ...]) -> KeyPath:
    """The key path in the file for a pydantic error location.

    pydantic inserts union tags ('relay') and validator names that the file has
    not, and reports integer keys (router ports) as strings.
    """
    path: list[str | int] = []
    current = data
    for part in loc:
        if isinstance(current, dict) and part not in current:
            if current.get("kind") == part or str(part).startswith("function-"):
                continue
            part = next((key for key in current if str(key) == str(part)), part)
        is_key = isinstance(current, dict) and isinstance(part, int)
        path.append(MappingKey(part) if is_key else part)
        current = current.get(part) if isinstance(current, dict) else _index(current, part)
    return tuple(path)


def _index(value: Any, part: str | int) -> Any:
    if isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
        return value[part]
    return None


def _message(detail: ErrorDetails, path: KeyPath, data: Any) -> str:
    kind = detail["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(data, path[:-1])
        hint = f"; allowed here: {', '.join(allowed)}" if allowed else ""
        return f"unknown key {path[-1]!r}{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        return f"unknown node kind; allowed: {detail.get('ctx', {}).get('expected_tags', '')}"
    if kind == "union_tag_not_found":
        return "every node needs a 'kind': router, dns, relay, mx or client"
    message = detail["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    value = detail.get("input")
    if kind not in ("model_type", "dict_type", "list_type") and not isinstance(value, dict | list):
        message = f"{message} (got {_shown(value)})"
    return message[0].lower() + message[1:]


def _shown(value: Any) -> str:
    """A value as the file gave it, shortened: a 200 KB string must not fill the screen."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _allowed_keys(data: Any, parent: KeyPath) -> list[str]:
    """Field names (as written in files) of the model that validates the mapping at `parent`."""
    annotation: Any = Scenario
    current = data
    for part in parent:
        current = current.get(part) if isinstance(current, dict) else _index(current, part)
        annotation = _child_annotation(annotation, part, current)
        if annotation is None:
            return []
    model = _model_for(annotation, current)
    if model is None:
        return []
    return sorted((field.alias or name) for name, field in model.model_fields.items())


def _child_annotation(annotation: Any, part: str | int, value: Any) -> Any:
    """The type that validates the value found under key `part` of a value of `annotation`."""
    model = _model_for(annotation, value)
    if model is not None:
        field = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        return field.annotation if field else None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin is list and args:
        return args[0]
    return None


def _model_for(annotation: Any, value: Any) -> type[BaseModel] | None:
    """The model class among `annotation` (a class, Optional, Annotated or union) for `value`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (dict, list):
        return None
    candidates = [_model_for(arg, value) for arg in typing.get_args(annotation)]
    models = [model for model in candidates if model is not None]
    if len(models) > 1 and isinstance(value, dict):
        # a tagged union: pick the member whose `kind` literal matches the value
        for model in models:
            kind = model.model_fields.get("kind")
            if kind is not None and value.get("kind") in typing.get_args(kind.annotation):
                return model
        return None
    return models[0] if models else None


def _line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: dict[tuple[int | None, str], Problem] = {}
    for problem in problems:
        seen.setdefault((problem.line, problem.key), problem)
    return list(seen.values())
