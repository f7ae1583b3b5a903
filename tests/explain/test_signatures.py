"""The signatures file: validated against the catalog, complete, and its answers honest."""

from __future__ import annotations

import pytest

from lab.diagnosis.catalog import UNKNOWN, CatalogError, load_catalog
from lab.explain import explain
from lab.explain.match import NAMED_AT, Candidate
from lab.explain.report import answer, remedy_of
from lab.explain.signatures import load_signatures, parse_signatures

# Entries no error text points to: the verdict when everything works, and the catch-all.
WITHOUT_SIGNATURE = {"healthy", "unclassified"}


def test_every_catalog_entry_has_a_signature() -> None:
    catalog = {entry.id for entry in load_catalog().entries}
    assert catalog - set(load_signatures()) == WITHOUT_SIGNATURE


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("no-such-entry: {stage: auth, ask: x}", "no-such-entry: not a catalog entry"),
        ("relay-denied: {stage: auth, ask: x, patterns: ['(']}", "bad regular expression"),
        ("relay-denied: {stage: auth, ask: x, codes: [5.7]}", "not an enhanced status code"),
        ("relay-denied: {stage: lunch, ask: x}", "relay-denied: stage"),
        ("relay-denied: {stage: auth, ask: x, colour: red}", "relay-denied: colour"),
        ("- a list", "a mapping of catalog entry ids"),
    ],
)
def test_a_bad_signature_file_names_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_signatures(text, load_catalog(), "sig.yaml")
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("sig.yaml: ")


def test_every_remedy_reads_without_facts() -> None:
    signatures = load_signatures()
    for entry in load_catalog().entries:
        if entry.id in signatures:
            text = remedy_of(Candidate(entry, signatures[entry.id], NAMED_AT))
            assert text, entry.id
            assert UNKNOWN not in text, entry.id


@pytest.mark.parametrize(
    "text", ["my email doesn't work", "550", "Error: something went wrong (code 42)"]
)
def test_a_text_without_a_known_signal_names_nothing(text: str) -> None:
    recognised, candidates = explain(text)
    assert candidates == []
    assert answer(recognised, candidates)["candidates"] == []


def test_the_evidence_says_which_words_and_codes() -> None:
    _, candidates = explain("550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown")
    best = candidates[0]
    assert best.entry.id == "unknown-user"
    assert 'words "User unknown"' in best.evidence
    assert "enhanced status 5.1.1" in best.evidence
    assert 0 < best.score < 1
    assert [c.raw for c in candidates] == sorted((c.raw for c in candidates), reverse=True)
