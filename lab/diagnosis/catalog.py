"""The fault catalog: known SMTP faults as data (`faults.yaml`), and a small pure matcher.

An entry says which facts identify a fault (`match`), what the root cause is,
how to explain it to the customer, how to confirm it by hand, the remedy
(in words, and as a `MailSettingsPatch` template) and its references. The
file is validated with pydantic when it is loaded: a bad entry (unknown
operator, broken regular expression, unknown fact section, a settings key the
patch does not have) fails loudly, naming the entry.

`match(facts)` is a pure function: the entries whose pattern holds, most
specific first. Templates (`render`) fill `{path}` placeholders from the facts;
`{path|default}` gives the words to use when the fact is missing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lab.errors import LabError
from lab.scenario.model import HopKind, MailSettingsPatch

CATALOG_FILE = "faults.yaml"
# The top-level sections of the facts (see `lab.diagnosis.planner`); the remedy context
# adds `account` and `suggest`.
FACT_SECTIONS = frozenset(
    "settings resolve ports banner ehlo tls auth mail rcpt data delivery relay recipient "  # noqa: SIM905
    "problem outcome".split()
)
TEMPLATE_SECTIONS = FACT_SECTIONS | {"account", "suggest", "hop"}
OPERATORS = frozenset({"re", "present", "gte", "lte", "gt", "lt", "not"})
COMBINATORS = frozenset({"any", "all", "not"})
UNKNOWN = "(unknown)"

_PATH = re.compile(r"^[a-z_][a-z0-9_]*(?:\.[A-Za-z0-9_-]+)*$")
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)(?:\|([^{}]*))?\}")
_MISSING = object()
Scalar = str | int | float | bool | None


class CatalogError(LabError):
    """The fault catalog file is invalid."""


# --- validation of patterns ------------------------------------------------------------------


def _check_condition(condition: Any, where: str) -> None:
    if isinstance(condition, dict):
        if not condition:
            raise ValueError(f"{where}: an empty operator block")
        for operator, argument in condition.items():
            if operator not in OPERATORS:
                allowed = ", ".join(sorted(OPERATORS))
                raise ValueError(f"{where}: unknown operator {operator!r}; allowed: {allowed}")
            if operator == "re":
                if not isinstance(argument, str):
                    raise ValueError(f"{where}: 're' needs a string")
                try:
                    re.compile(argument)
                except re.error as error:
                    raise ValueError(
                        f"{where}: bad regular expression {argument!r}: {error}"
                    ) from None
            elif operator == "present":
                if not isinstance(argument, bool):
                    raise ValueError(f"{where}: 'present' needs true or false")
            elif operator == "not":
                _check_condition(argument, f"{where}.not")
            elif isinstance(argument, bool) or not isinstance(argument, int | float):
                raise ValueError(f"{where}: {operator!r} needs a number")
        return
    if isinstance(condition, list):
        if not condition:
            raise ValueError(f"{where}: an empty list never matches")
        for item in condition:
            if isinstance(item, dict | list):
                raise ValueError(f"{where}: a list holds plain values only")
        return
    if not isinstance(condition, Scalar):
        raise ValueError(f"{where}: unsupported condition {condition!r}")


def check_pattern(pattern: Any, where: str = "match") -> None:
    """Raise ValueError when `pattern` is not a valid match pattern."""
    if not isinstance(pattern, dict) or not pattern:
        raise ValueError(f"{where}: a pattern is a non-empty mapping of fact paths")
    for key, condition in pattern.items():
        if key in ("any", "all"):
            if not isinstance(condition, list) or not condition:
                raise ValueError(f"{where}.{key}: needs a non-empty list of patterns")
            for index, sub in enumerate(condition):
                check_pattern(sub, f"{where}.{key}[{index}]")
        elif key == "not":
            check_pattern(condition, f"{where}.not")
        else:
            if not isinstance(key, str) or not _PATH.match(key):
                raise ValueError(f"{where}: {key!r} is not a fact path")
            section = key.split(".", 1)[0]
            if section not in FACT_SECTIONS:
                raise ValueError(
                    f"{where}: {key!r}: unknown fact section {section!r}; "
                    f"known: {', '.join(sorted(FACT_SECTIONS))}"
                )
            _check_condition(condition, f"{where}.{key}")


def _check_template(text: str, where: str) -> None:
    for match in _PLACEHOLDER.finditer(text):
        section = match.group(1).split(".", 1)[0]
        if section not in TEMPLATE_SECTIONS:
            raise ValueError(
                f"{where}: placeholder {{{match.group(1)}}}: unknown section {section!r}"
            )
    stray = _PLACEHOLDER.sub("", text)
    if "{" in stray or "}" in stray:
        raise ValueError(f"{where}: unbalanced or malformed placeholder")


def _walk_templates(value: Any, where: str) -> None:
    if isinstance(value, str):
        _check_template(value, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk_templates(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk_templates(item, f"{where}[{index}]")


_PATCH_KEYS = frozenset(MailSettingsPatch.model_fields) | {"from"}


class RemedySpec(BaseModel):
    """The remedy of an entry: words, and a settings correction as a template."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    settings: dict[str, Any] = {}
    optional: dict[str, Any] = {}
    acts: str | None = None  # who must act (a template), when no setting fixes it

    @field_validator("settings", "optional")
    @classmethod
    def _patch_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = set(value) - _PATCH_KEYS
        if unknown:
            raise ValueError(
                f"not a mail settings field: {', '.join(sorted(unknown))}; "
                f"allowed: {', '.join(sorted(_PATCH_KEYS))}"
            )
        _walk_templates(value, "settings")
        return value


class Entry(BaseModel):
    """One known fault."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    severity: Literal["fail", "warn", "info", "ok"] = "fail"
    specificity: int = Field(ge=0, le=100)
    match: dict[str, Any]
    cause: str
    explanation: str
    confirm: str
    remedy: RemedySpec
    references: list[str] = []
    hop: HopKind | None = None  # where the fault lies when the failed step alone does not say

    @field_validator("match")
    @classmethod
    def _valid_pattern(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_pattern(value)
        return value

    @field_validator("cause", "explanation", "confirm")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        _check_template(value, "text")
        return value

    @property
    def weight(self) -> int:
        """How many conditions the pattern has: the tie-breaker between equal specificities."""
        return _count(self.match)


class Catalog(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entries: list[Entry]

    @field_validator("entries")
    @classmethod
    def _unique_ids(cls, entries: list[Entry]) -> list[Entry]:
        seen: set[str] = set()
        for entry in entries:
            if entry.id in seen:
                raise ValueError(f"duplicate entry id {entry.id!r}")
            seen.add(entry.id)
        return entries

    def get(self, entry_id: str) -> Entry:
        """The entry with this id.

        Raises:
            KeyError: no such entry.
        """
        for entry in self.entries:
            if entry.id == entry_id:
                return entry
        raise KeyError(entry_id)


def _count(pattern: Mapping[str, Any]) -> int:
    total = 0
    for key, condition in pattern.items():
        if key in ("any", "all"):
            total += max((_count(sub) for sub in condition), default=0)
        elif key == "not":
            total += _count(condition)
        else:
            total += 1
    return total


# --- loading ---------------------------------------------------------------------------------


def parse_catalog(text: str, source: str = CATALOG_FILE) -> Catalog:
    """Validate catalog YAML text.

    Raises:
        CatalogError: with one line per problem: source, entry (index and id), key, message.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CatalogError(f"{source}: not valid YAML: {error}") from None
    try:
        return Catalog.model_validate(data)
    except ValidationError as error:
        lines = []
        entries = data.get("entries") if isinstance(data, dict) else None
        for problem in error.errors():
            location = list(problem["loc"])
            where = ".".join(str(part) for part in location)
            if len(location) >= 2 and location[0] == "entries" and isinstance(location[1], int):
                index = location[1]
                entry_id = "?"
                if isinstance(entries, list) and index < len(entries):
                    raw = entries[index]
                    entry_id = raw.get("id", "?") if isinstance(raw, dict) else "?"
                rest = ".".join(str(part) for part in location[2:])
                where = f"entry {index} ({entry_id}): {rest}"
            lines.append(f"{source}: {where}: {problem['msg']}")
        raise CatalogError("\n".join(lines)) from None


@functools.cache
def load_catalog() -> Catalog:
    """The packaged catalog, validated once per process.

    Raises:
        CatalogError: the packaged file is invalid (a bug: the tests load it).
    """
    text = resources.files("lab.diagnosis").joinpath(CATALOG_FILE).read_text(encoding="utf-8")
    return parse_catalog(text)


# --- matching (pure) -----------------------------------------------------------------------------


def lookup(facts: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path; `_MISSING` when any part is absent.

    A numeric part indexes a list ("ports.open.0").
    """
    value: Any = facts
    for part in path.split("."):
        if isinstance(value, Mapping):
            if part not in value:
                return _MISSING
            value = value[part]
        elif isinstance(value, list) and part.isdigit():
            index = int(part)
            if index >= len(value):
                return _MISSING
            value = value[index]
        else:
            return _MISSING
    return value


def _present(value: Any) -> bool:
    if value is _MISSING or value is None:
        return False
    if isinstance(value, str | list | dict | tuple):
        return len(value) > 0
    return True


def _equal(expected: Any, value: Any) -> bool:
    # True == 1 in Python; a fact's "true" must not match a code of 1, nor the reverse.
    if isinstance(expected, bool) or isinstance(value, bool):
        return isinstance(expected, bool) and isinstance(value, bool) and expected == value
    return bool(expected == value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def check(condition: Any, value: Any) -> bool:
    """Whether one fact value satisfies one condition (see the module docstring)."""
    if isinstance(condition, dict):
        for operator, argument in condition.items():
            if operator == "present":
                if _present(value) != argument:
                    return False
            elif operator == "not":
                if check(argument, value):
                    return False
            elif operator == "re":
                texts = value if isinstance(value, list) else [value]
                pattern = re.compile(argument, re.IGNORECASE)
                if not any(isinstance(text, str) and pattern.search(text) for text in texts):
                    return False
            else:
                number = _number(value)
                if number is None:
                    return False
                limit = float(argument)
                ok = {
                    "gte": number >= limit,
                    "lte": number <= limit,
                    "gt": number > limit,
                    "lt": number < limit,
                }[operator]
                if not ok:
                    return False
        return True
    if value is _MISSING:
        value = None
    if isinstance(condition, list):
        if isinstance(value, list):
            return any(_equal(option, item) for option in condition for item in value)
        return any(_equal(option, value) for option in condition)
    if isinstance(value, list):
        return any(_equal(condition, item) for item in value)
    return _equal(condition, value)


def matches(pattern: Mapping[str, Any], facts: Mapping[str, Any]) -> bool:
    """Whether every condition of `pattern` holds for `facts`."""
    for key, condition in pattern.items():
        if key == "any":
            if not any(matches(sub, facts) for sub in condition):
                return False
        elif key == "all":
            if not all(matches(sub, facts) for sub in condition):
                return False
        elif key == "not":
            if matches(condition, facts):
                return False
        elif not check(condition, lookup(facts, key)):
            return False
    return True


def match(facts: Mapping[str, Any], catalog: Catalog | None = None) -> list[Entry]:
    """Every entry whose pattern holds, most specific first (then most conditions, then id)."""
    entries = (catalog or load_catalog()).entries
    found = [entry for entry in entries if matches(entry.match, facts)]
    return sorted(found, key=lambda entry: (-entry.specificity, -entry.weight, entry.id))


# --- templates -------------------------------------------------------------------------------


def format_value(value: Any) -> str:
    """A fact as words: lists joined, floats short, booleans as yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 10 else f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(format_value(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{key} {format_value(item)}" for key, item in value.items())
    return str(value)


def render(template: str, context: Mapping[str, Any]) -> str:
    """`template` with each `{path}` filled in; `{path|default}` when it may be missing.

    A missing fact without a default shows as "(unknown)" (the catalog tests
    check that no rendered text of a matched entry contains it).
    """

    def fill(found: re.Match[str]) -> str:
        value = lookup(context, found.group(1))
        if _present(value):
            return format_value(value)
        if found.group(2) is None:
            return UNKNOWN
        # `{a|b|words}`: the first of the paths that is present, else the last option as words.
        options = found.group(2).split("|")
        for option in options:
            if _PATH.match(option) and _present(other := lookup(context, option)):
                return format_value(other)
        return options[-1]

    return _PLACEHOLDER.sub(fill, template)


class _Unresolved(Exception):
    """A settings template refers to a fact that is not there."""


def _settings_value(template: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole is not None:
            # `{a|b}`: the first path present (words are no setting, so no last resort).
            for path in [whole.group(1), *(whole.group(2) or "").split("|")]:
                if _PATH.match(path) and _present(value := lookup(context, path)):
                    return value
            raise _Unresolved(whole.group(1))
        for found in _PLACEHOLDER.finditer(template):
            if not _present(lookup(context, found.group(1))):
                raise _Unresolved(found.group(1))
        return render(template, context)
    if isinstance(template, dict):
        return {key: _settings_value(item, context) for key, item in template.items()}
    if isinstance(template, list):
        return [_settings_value(item, context) for item in template]
    return template


def settings_placeholders(spec: RemedySpec) -> list[str]:
    """The fact paths a remedy's (required) settings correction is made of, in order."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.extend(match.group(1) for match in _PLACEHOLDER.finditer(value))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(spec.settings)
    return list(dict.fromkeys(found))


def render_settings(spec: RemedySpec, context: Mapping[str, Any]) -> dict[str, Any]:
    """The settings correction: empty when a required placeholder cannot be filled."""
    try:
        settings: dict[str, Any] = _settings_value(spec.settings, context)
    except _Unresolved:
        return {}
    for key, template in spec.optional.items():
        try:
            settings[key] = _settings_value(template, context)
        except _Unresolved:
            continue
    return settings


def references(entries: Sequence[Entry]) -> list[str]:
    """Every reference of `entries`, once."""
    return list(dict.fromkeys(ref for entry in entries for ref in entry.references))
