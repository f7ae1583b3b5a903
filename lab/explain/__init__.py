"""`smtplab explain`: from an error text a customer pasted to the catalog's causes.

`parse` and `dsn` read the text (SMTP replies, status codes, DSN fields, log lines,
client error numbers, library exceptions); `signatures` holds the words and codes
of each catalog entry (`signatures.yaml`); `match` ranks the entries with their
evidence; `report` words the answer and `scenarios` finds the lab case that
reproduces each cause. Everything but `scenarios` is pure.
"""

from __future__ import annotations

from lab.explain.match import Candidate, rank
from lab.explain.parse import Recognised, recognise

__all__ = ["Candidate", "Recognised", "explain", "rank", "recognise"]


def explain(text: str) -> tuple[Recognised, list[Candidate]]:
    """What `text` says and the causes that fit it, best first (none when unknown)."""
    recognised = recognise(text)
    return recognised, rank(recognised)
