"""Ranking the catalog's entries against what a text says, with the evidence (pure).

Each signature scores the recognised text: a phrase that names the fault is strong
evidence (the first one found counts 3, each further one 1), an enhanced status
code counts 3 shared among the entries that claim it (5.7.139 is one entry's,
5.7.1 is many entries'), a basic reply code, a hint word and the stage agreeing are
weak evidence. A cause is only *named* when the best score reaches `NAMED_AT`: one
distinctive phrase or code. Below that, `rank` returns nothing and the caller says
it does not know, showing only what it recognised.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lab.diagnosis.catalog import Catalog, Entry, load_catalog
from lab.explain.parse import Recognised
from lab.explain.signatures import Signature, load_signatures

NAMED_AT = 2.5
SHOWN_AT = 1.0
SHOWN = 5
PHRASE_FIRST, PHRASE_MORE, PHRASE_CAP = 3.0, 1.0, 6.0
CODE_WEIGHT = 3.0
REPLY_WEIGHT = 0.5
HINT_WEIGHT, HINT_CAP = 0.5, 1.5
STAGE_WEIGHT = 0.5
# A bounce written by a server of the recipient's domain: as strong as a naming phrase.
RECIPIENT_SIDE_WEIGHT = 3.0


@dataclass(frozen=True)
class Candidate:
    """A catalog entry that fits the text, with why."""

    entry: Entry
    signature: Signature
    raw: float
    evidence: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        """The evidence as a number between 0 and 1 (1 - e^(-raw/4)), for display."""
        return round(1.0 - math.exp(-self.raw / 4.0), 2)


def _code_weights(signatures: Mapping[str, Signature]) -> dict[str, float]:
    claims = Counter(code for signature in signatures.values() for code in signature.codes)
    return {code: CODE_WEIGHT / count for code, count in claims.items()}


def evaluate(
    recognised: Recognised,
    entry: Entry,
    signature: Signature,
    code_weights: Mapping[str, float],
) -> Candidate:
    """How well one entry's signature fits the recognised text."""
    raw = 0.0
    evidence: list[str] = []
    if signature.recipient_side:
        if recognised.recipient_side_bounce is None:
            return Candidate(entry, signature, 0.0, [])
        raw += RECIPIENT_SIDE_WEIGHT
        evidence.append(f"bounce written by {recognised.recipient_side_bounce}")
    patterns, hints = signature.compiled
    phrases = 0.0
    for pattern in patterns:
        found = pattern.search(recognised.flat)
        if found:
            phrases += PHRASE_MORE if phrases else PHRASE_FIRST
            evidence.append(f'words "{found.group(0)}"')
    raw += min(phrases, PHRASE_CAP)
    for code in signature.codes:
        if code in recognised.enhanced:
            raw += code_weights.get(code, CODE_WEIGHT)
            evidence.append(f"enhanced status {code}")
    for reply in signature.replies:
        if reply in recognised.codes:
            raw += REPLY_WEIGHT
            evidence.append(f"reply code {reply}")
    weak = 0.0
    for hint in hints:
        found = hint.search(recognised.flat)
        if found:
            weak += HINT_WEIGHT
            evidence.append(f'hint "{found.group(0)}"')
    raw += min(weak, HINT_CAP)
    if raw and recognised.stage == str(signature.stage):
        raw += STAGE_WEIGHT
        evidence.append(f"stage {recognised.stage}")
    return Candidate(entry, signature, round(raw, 3), evidence)


def rank(
    recognised: Recognised,
    *,
    catalog: Catalog | None = None,
    signatures: Mapping[str, Signature] | None = None,
) -> list[Candidate]:
    """The entries that fit, best first; empty when none reaches `NAMED_AT`.

    Ties go to the catalog's more specific entry (its `specificity`), then to its id.
    """
    catalog = catalog or load_catalog()
    signatures = signatures if signatures is not None else load_signatures()
    weights = _code_weights(signatures)
    scored = [
        evaluate(recognised, entry, signatures[entry.id], weights)
        for entry in catalog.entries
        if entry.id in signatures
    ]
    scored.sort(key=lambda c: (-c.raw, -c.entry.specificity, c.entry.id))
    if not scored or scored[0].raw < NAMED_AT:
        return []
    return [candidate for candidate in scored if candidate.raw >= SHOWN_AT][:SHOWN]


def summary(candidates: list[Candidate]) -> dict[str, Any]:
    """The ids and scores, best first (for logs and tests)."""
    return {candidate.entry.id: candidate.score for candidate in candidates}
