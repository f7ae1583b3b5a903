"""The scenario schema reference, generated from the pydantic models: one section per
model reachable from `Scenario`, one row per key with its type, default, meaning and an
example taken from the catalog (the first scenario that sets it). `smtplab schema
--markdown` prints it; docs/scenario-schema.md is its output, checked by a test to be
current."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Iterator
from enum import Enum
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from lab.scenario.model import Scenario
from lab.units import parse_duration, parse_size

EXAMPLE_WIDTH = 70
Examples = dict[tuple[type[BaseModel], str], Any]


def models(root: type[BaseModel] = Scenario) -> list[type[BaseModel]]:
    """Every model reachable from `root`, breadth first, each once."""
    found: list[type[BaseModel]] = [root]
    for model in found:
        for field in model.model_fields.values():
            for inner in _models_in(field.annotation):
                if inner not in found:
                    found.append(inner)
    return found


def catalog_examples(scenarios: Iterable[Scenario]) -> Examples:
    """For each (model, key) the first value a catalog scenario sets explicitly."""
    examples: Examples = {}
    for scenario in scenarios:
        for instance in _instances(scenario):
            model = type(instance)
            for name in instance.model_fields_set:
                key = (model, name)
                if key not in examples:
                    examples[key] = getattr(instance, name)
    return examples


def markdown(examples: Examples) -> str:
    """The reference as a Markdown document."""
    lines = [
        "# Scenario file reference",
        "",
        "Generated from the schema (`lab/scenario/`) by `smtplab schema --markdown`; do not edit",
        "by hand. A scenario file is YAML; an unknown key is an error. Durations are written",
        "`30s`, `15m`, `4h`, `2d` (or seconds as a number), sizes `512`, `10KB`, `25MB`.",
        "Examples come from the scenarios in the catalog.",
        "",
    ]
    for model in models():
        lines += [f"## {model.__name__}", ""]
        doc = (model.__doc__ or "").strip()
        if doc:
            lines += [" ".join(doc.split()), ""]
        lines += ["| key | type | default | meaning | example |", "|---|---|---|---|---|"]
        for name, field in model.model_fields.items():
            cells = [
                f"`{field.alias or name}`",
                _type_name(field.annotation, field.metadata),
                _default(field),
                " ".join((field.description or "").split()),
                _example(examples[(model, name)], null="`null`")
                if (model, name) in examples
                else _example(_fallback(field)),
            ]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for argument in typing.get_args(annotation):
        yield from _models_in(argument)


def _instances(value: Any) -> Iterator[BaseModel]:
    if isinstance(value, BaseModel):
        yield value
        for name in type(value).model_fields:
            yield from _instances(getattr(value, name))
    elif isinstance(value, dict):
        for inner in value.values():
            yield from _instances(inner)
    elif isinstance(value, list | tuple):
        for inner in value:
            yield from _instances(inner)


def _type_name(annotation: Any, metadata: list[Any]) -> str:
    for item in metadata:
        function = getattr(item, "func", None)
        if function is parse_duration:
            return "duration"
        if function is parse_size:
            return "size"
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(arguments[0], list(arguments[1:]))
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(argument, []) for argument in arguments if argument is not type(None)]
        optional = " or null" if type(None) in arguments else ""
        return " | ".join(names) + optional
    if origin is list:
        return f"list of {_type_name(arguments[0], [])}"
    if origin is dict:
        return f"map of {_type_name(arguments[0], [])} to {_type_name(arguments[1], [])}"
    if origin is typing.Literal:
        return " | ".join(f"`{argument}`" for argument in arguments)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "one of " + ", ".join(f"`{member.value}`" for member in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    default = field.default
    if default is PydanticUndefined and field.default_factory is not None:
        return "(computed)"
    return _example(default)


def _fallback(field: FieldInfo) -> Any:
    """An example for a key no catalog scenario sets: its default, else one by type."""
    if not field.is_required() and field.default not in (None, PydanticUndefined):
        return field.default
    return _TYPE_EXAMPLES.get(_type_name(field.annotation, field.metadata))


# Examples for the few optional keys the catalog never sets and that default to null.
_TYPE_EXAMPLES: dict[str, Any] = {
    "IPv4Network or null": "10.99.0.0/24",
    "str or null": "mail.example.com",
    "int or null": 550,
    "duration or null": "15m",
    "size or null": "10MB",
}


def _example(value: Any, null: str = "—") -> str:
    if value is None:
        return null
    plain = _plain(value)
    if isinstance(plain, str) and "\n" in plain:
        plain = plain.strip().splitlines()[0] + " …"
    text = yaml.safe_dump(plain, default_flow_style=True, width=10_000, sort_keys=False).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    if len(text) > EXAMPLE_WIDTH:
        text = text[: EXAMPLE_WIDTH - 1] + "…"
    return f"`{text}`"


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_unset=True)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, int | float | str | bool):
        return value
    return str(value)
