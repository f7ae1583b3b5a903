"""The answer to `smtplab explain`, as data and as words (pure).

`answer` turns the ranked candidates into plain data: per cause its id, title,
score, evidence, the stage it failed at, what to ask the customer, the remedy and
the lab scenario that reproduces it; and what the text was recognised to say.
`as_text` words the same for a terminal. An unknown text names no cause.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lab.diagnosis.catalog import UNKNOWN, render
from lab.explain.match import Candidate
from lab.explain.parse import Recognised

# What the remedy templates may use from a text alone: nothing of the customer's settings.
_NO_FACTS: dict[str, Any] = {}


def remedy_of(candidate: Candidate) -> str:
    """The remedy in words: the signature's, else the entry's where it needs no facts."""
    if candidate.signature.remedy:
        return candidate.signature.remedy
    text = render(candidate.entry.remedy.text, _NO_FACTS)
    return text if UNKNOWN not in text else candidate.entry.explanation


def answer(
    recognised: Recognised,
    candidates: list[Candidate],
    scenario_for: Callable[[str], str | None] = lambda entry_id: None,
) -> dict[str, Any]:
    """`{"candidates": [...], "recognised": {...}}`, best first; no candidates when unknown."""
    return {
        "candidates": [
            {
                "id": candidate.entry.id,
                "title": candidate.entry.title,
                "score": candidate.score,
                "evidence": candidate.evidence,
                "stage": str(candidate.signature.stage),
                "ask": candidate.signature.ask,
                "remedy": remedy_of(candidate),
                "scenario": scenario_for(candidate.entry.id),
            }
            for candidate in candidates
        ],
        "recognised": recognised.to_json(),
    }


def _recognised_lines(recognised: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for reply in recognised["replies"][:3]:
        enhanced = f" {reply['enhanced']}" if reply["enhanced"] else ""
        lines.append(f"  reply      {reply['code']}{enhanced} {reply['text'][:100]}")
    for label, key in (
        ("codes", "codes"),
        ("enhanced", "enhanced"),
        ("errors", "errors"),
        ("written by", "sources"),
        ("ports", "ports"),
    ):
        if recognised[key]:
            lines.append(f"  {label:<10} {', '.join(str(item) for item in recognised[key])}")
    if recognised["stage"]:
        lines.append(f"  stage      {recognised['stage']}")
    for name, value in recognised["dsn"].items():
        lines.append(f"  dsn        {name}: {value[:100]}")
    return lines or ["  nothing: no reply code, status code, error name or stage word"]


def as_text(data: dict[str, Any]) -> str:
    """The answer for a terminal: the causes with their evidence, or what was recognised."""
    recognised = _recognised_lines(data["recognised"])
    candidates = data["candidates"]
    if not candidates:
        return "\n".join(["Unknown: this text matches no known cause.", "Recognised:", *recognised])
    lines: list[str] = []
    for rank, candidate in enumerate(candidates, 1):
        lines.append(
            f"{rank}. {candidate['title']}  [{candidate['id']}]  score {candidate['score']:.2f}"
        )
        lines.append(f"   why:       {'; '.join(candidate['evidence'])}")
        lines.append(f"   stage:     {candidate['stage']}")
        if rank == 1:
            lines.append(f"   ask:       {candidate['ask']}")
            lines.append(f"   remedy:    {candidate['remedy']}")
        if candidate["scenario"]:
            lines.append(f"   reproduce: smtplab tui --scenario {candidate['scenario']}")
        lines.append("")
    lines += ["Recognised:", *recognised]
    return "\n".join(lines)
