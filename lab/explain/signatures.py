"""The text signatures of the catalog's entries (`signatures.yaml`), validated.

Each catalog entry of `lab/diagnosis/faults.yaml` says which *facts* of a diagnosis
identify it; its signature here says which *words and codes* of a pasted error text
point to it, where the session stopped, and what to ask the customer. The file is
checked when it is loaded: an id the catalog does not have, a broken regular
expression, a malformed status code or an unknown stage fails loudly, naming it.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lab.diagnosis.catalog import Catalog, CatalogError, load_catalog
from lab.scenario.vocabulary import Stage

SIGNATURES_FILE = "signatures.yaml"
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")


class Signature(BaseModel):
    """How a text points to one entry (see the file's header for each field)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: Stage
    ask: str
    patterns: list[str] = []
    hints: list[str] = []
    codes: list[str] = []
    replies: list[int] = []
    remedy: str | None = None
    recipient_side: bool = Field(
        default=False,
        description="Fits only a bounce written by a server of the recipient's own domain "
        "(its Reporting-MTA), which took the message first: then that counts as strong "
        "evidence.",
    )

    @field_validator("patterns", "hints")
    @classmethod
    def _regular_expressions(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"bad regular expression {pattern!r}: {error}") from None
        return value

    @field_validator("codes", mode="before")
    @classmethod
    def _status_codes(cls, value: Any) -> list[str]:
        codes = [str(code) for code in value or []]
        for code in codes:
            if not _ENHANCED.match(code):
                raise ValueError(f"{code!r} is not an enhanced status code (class.subject.detail)")
        return codes

    @functools.cached_property
    def compiled(self) -> tuple[tuple[re.Pattern[str], ...], tuple[re.Pattern[str], ...]]:
        """The patterns and the hints, compiled case-insensitively."""
        return (
            tuple(re.compile(pattern, re.IGNORECASE) for pattern in self.patterns),
            tuple(re.compile(hint, re.IGNORECASE) for hint in self.hints),
        )


def parse_signatures(
    text: str, catalog: Catalog, source: str = SIGNATURES_FILE
) -> dict[str, Signature]:
    """Validate signature YAML against `catalog`.

    Raises:
        CatalogError: one line per problem: source, entry id, field, message.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CatalogError(f"{source}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"{source}: a mapping of catalog entry ids to signatures")
    known = {entry.id for entry in catalog.entries}
    problems: list[str] = []
    signatures: dict[str, Signature] = {}
    for entry_id, raw in data.items():
        if entry_id not in known:
            problems.append(f"{source}: {entry_id}: not a catalog entry")
            continue
        try:
            signatures[entry_id] = Signature.model_validate(raw)
        except ValidationError as error:
            for problem in error.errors():
                where = ".".join(str(part) for part in problem["loc"])
                problems.append(f"{source}: {entry_id}: {where}: {problem['msg']}")
    if problems:
        raise CatalogError("\n".join(problems))
    return signatures


@functools.cache
def load_signatures() -> dict[str, Signature]:
    """The packaged signatures, validated once per process."""
    text = resources.files("lab.explain").joinpath(SIGNATURES_FILE).read_text(encoding="utf-8")
    return parse_signatures(text, load_catalog())
